"""ecs-sim's STS and metadata server driven by the official credentials library
(alibabacloud_credentials, credentials-python) and the official STS SDK: AssumeRole (RAM role ARN
provider), AssumeRoleWithOIDC (OIDC role ARN provider), the ECS RAM role provider against the
metadata server (token handshake, hardened mode), the credentials URI provider; then ECS calls
signed with the obtained temporary credentials through the ECS SDK.

How the library is pointed at the simulator:
- STS: `sts_endpoint='127.0.0.1:PORT'`. The library always uses https for STS, so the simulator
  serves TLS on the same port and writes its CA with --tls-ca-out; SSL_CERT_FILE makes the
  library's SSL context (ssl.create_default_context) trust it.
- Metadata: the library's host is fixed (100.100.100.200, http); `HttpOptions(proxy=...)` sends
  its requests through the simulator as an HTTP proxy (absolute-form request lines).
- Credentials URI: `uri='http://127.0.0.1:PORT/credentials-uri'`.
"""

import base64
import json
import os
import time
from pathlib import Path

import pytest
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_credentials.http import HttpOptions
from alibabacloud_credentials.provider import (
    EcsRamRoleCredentialsProvider,
    OIDCRoleArnCredentialsProvider,
    RamRoleArnCredentialsProvider,
    StaticAKCredentialsProvider,
    StaticSTSCredentialsProvider,
    URLCredentialsProvider,
)
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from conftest import REGION, REPO_ROOT, start_sim, stop_sim

FIXTURES = REPO_ROOT / "ecs-sim" / "tests" / "fixtures"
ISSUER_KEY = FIXTURES / "test-only-oidc-issuer.key"
OTHER_KEY = FIXTURES / "test-only-other-issuer.key"

ACCOUNT_A = "1111111111111111"
ACCOUNT_B = "2222222222222222"
OPERATOR = f"acs:ram::{ACCOUNT_B}:role/operator"
KEYED = f"acs:ram::{ACCOUNT_B}:role/keyed"
RRSA = f"acs:ram::{ACCOUNT_B}:role/rrsa"
INSTANCE_ROLE_NAME = "EcsInstanceRole"
INSTANCE_ROLE = f"acs:ram::{ACCOUNT_B}:role/{INSTANCE_ROLE_NAME}"
PROVIDER = f"acs:ram::{ACCOUNT_B}:oidc-provider/ack-rrsa-test"
ISSUER = "https://oidc.test.invalid/clusters/c1"
AUDIENCE = "sts.aliyuncs.com"
SUBJECT = "system:serviceaccount:ns1:controller"

ALICE = ("alice", "alice-secret")
CAROL = ("carol", "carol-secret")

CONFIG = {
    "accounts": [
        {"accessKeyId": "alice", "accessKeySecret": "alice-secret", "accountId": ACCOUNT_A},
        {"accessKeyId": "bob", "accessKeySecret": "bob-secret", "accountId": ACCOUNT_B},
        {"accessKeyId": "carol", "accessKeySecret": "carol-secret", "accountId": "3333333333333333"},
    ],
    "roles": [
        {"arn": OPERATOR, "trustedAccountIds": [ACCOUNT_A]},
        {"arn": KEYED, "trustedAccessKeyIds": ["carol"], "externalId": "ext-123"},
        {"arn": RRSA, "trustedOidcProviders": [{"providerArn": PROVIDER, "subjects": [SUBJECT]}]},
        {"arn": INSTANCE_ROLE},
    ],
    "oidcProviders": [
        {"arn": PROVIDER, "issuerUrl": ISSUER, "clientIds": [AUDIENCE],
         "publicKeyFiles": [str(FIXTURES / "test-only-oidc-issuer.pub")]},
    ],
    "metadata": {"roleArn": INSTANCE_ROLE},
}

INSTANCES = [
    {"instanceId": "i-ownedbyalice", "owner": "alice"},
    {"instanceId": "i-ownedbybob01", "owner": "bob"},
    {"instanceId": "i-ownedbyacctb", "owner": ACCOUNT_B},
    {"instanceId": "i-sharedshared"},
]
# What keys of the role account (B) see; alice's own keys see i-ownedbyalice instead.
ROLE_ACCOUNT_VIEW = ["i-ownedbyacctb", "i-ownedbybob01", "i-sharedshared"]


def start_sts_sim(tmp_path_factory, *extra):
    """A simulator with CONFIG. Each simulator makes its own CA: it is added to the bundle that
    SSL_CERT_FILE names (read whenever the library makes a new SSL context, i.e. per endpoint)."""
    directory = tmp_path_factory.mktemp("ecs-sim-sts")
    accounts = directory / "accounts.json"
    accounts.write_text(json.dumps(CONFIG))
    ca = directory / "ca.pem"
    started = start_sim("--accounts-file", str(accounts), "--tls-ca-out", str(ca), *extra)
    bundle = Path(os.environ["SSL_CERT_FILE"])
    bundle.write_text(bundle.read_text() + ca.read_text())
    return started


@pytest.fixture(scope="module", autouse=True)
def trust_and_no_proxy(tmp_path_factory):
    """The library's https STS calls trust the simulators' CAs through SSL_CERT_FILE, and no
    proxy from the environment may catch them."""
    bundle = tmp_path_factory.mktemp("ca") / "bundle.pem"
    bundle.write_text("")
    saved = {name: os.environ.get(name) for name in
             ("SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}
    for name in saved:
        os.environ.pop(name, None)
    os.environ["SSL_CERT_FILE"] = str(bundle)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def sim(tmp_path_factory, trust_and_no_proxy):
    """Overrides conftest's simulator for this module: one with roles, an OIDC provider and a
    metadata role."""
    started = start_sts_sim(tmp_path_factory)
    try:
        yield started
    finally:
        stop_sim(started)


@pytest.fixture(autouse=True)
def seeded(sim):
    sim.seed(*INSTANCES)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def oidc_token(key_path: Path = ISSUER_KEY, **overrides) -> str:
    """An RS256 token as RRSA's kube-apiserver would issue for the service account."""
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": SUBJECT, "aud": [AUDIENCE], "iat": now, "exp": now + 600}
    claims.update(overrides)
    signing_input = (b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "."
                     + b64url(json.dumps(claims).encode()))
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def ecs_client(sim, provider, algorithm="v3") -> EcsClient:
    config = Config(credential=CredentialClient(provider=provider), region_id=REGION,
                    endpoint=sim.host_port, protocol="http")
    if algorithm == "v2":
        config.signature_algorithm = "v2"
    return EcsClient(config)


def visible_ids(client: EcsClient):
    body = client.describe_instances(ecs_models.DescribeInstancesRequest(region_id=REGION)).body
    return sorted(i.instance_id for i in body.instances.instance)


def static_sts(credentials) -> StaticSTSCredentialsProvider:
    """Fixed temporary credentials (no refresh)."""
    return StaticSTSCredentialsProvider(access_key_id=credentials.get_access_key_id(),
                                        access_key_secret=credentials.get_access_key_secret(),
                                        security_token=credentials.get_security_token())


def ram_role_arn(sim, key=ALICE, role=OPERATOR, **kwargs) -> RamRoleArnCredentialsProvider:
    return RamRoleArnCredentialsProvider(access_key_id=key[0], access_key_secret=key[1],
                                         role_arn=role, sts_endpoint=sim.host_port, **kwargs)


@pytest.mark.parametrize("algorithm", ["v3", "v2"])
def test_ram_role_arn_credentials_sign_ecs_calls(sim, algorithm):
    provider = ram_role_arn(sim, duration_seconds=1200, role_session_name="python-test")
    credentials = provider.get_credentials()
    assert credentials.get_access_key_id().startswith("STS.")
    assert credentials.get_security_token()
    assert credentials.get_provider_name() == "ram_role_arn/static_ak"
    # The library parsed Expiration (%Y-%m-%dT%H:%M:%SZ); 1200 s asked.
    assert 1195 <= credentials.get_expiration() - time.time() <= 1201

    # The ECS SDK signs with them (V3 or V1) and sees the role account's instances.
    assert visible_ids(ecs_client(sim, provider, algorithm)) == ROLE_ACCOUNT_VIEW
    assert visible_ids(ecs_client(sim, StaticAKCredentialsProvider(
        access_key_id=ALICE[0], access_key_secret=ALICE[1]), algorithm)) == [
        "i-ownedbyalice", "i-sharedshared"]

    (call,) = sim.calls("AssumeRole")
    assert call["product"] == "sts" and call["httpStatus"] == 200
    assert call["signatureMethod"] == "HMAC-SHA1" and call["accessKeyId"] == "alice"
    assert call["params"]["RoleSessionName"] == "python-test"
    assert call["params"]["DurationSeconds"] == "1200"


def test_ram_role_arn_refusals_reach_the_library(sim):
    with pytest.raises(CredentialException) as caught:
        ram_role_arn(sim, key=CAROL).get_credentials()
    assert "http_code: 403" in caught.value.message and "NoPermission" in caught.value.message
    with pytest.raises(CredentialException) as caught:
        ram_role_arn(sim, key=CAROL, role=KEYED, external_id="wrong").get_credentials()
    assert "NoPermission" in caught.value.message
    with pytest.raises(CredentialException) as caught:
        ram_role_arn(sim, role=f"acs:ram::{ACCOUNT_B}:role/missing").get_credentials()
    assert "http_code: 404" in caught.value.message
    assert "EntityNotExist.Role" in caught.value.message
    credentials = ram_role_arn(sim, key=CAROL, role=KEYED, external_id="ext-123").get_credentials()
    assert credentials.get_access_key_id().startswith("STS.")


def test_oidc_role_arn_credentials(sim, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(oidc_token())
    provider = OIDCRoleArnCredentialsProvider(role_arn=RRSA, oidc_provider_arn=PROVIDER,
                                              oidc_token_file_path=str(token_file),
                                              role_session_name="rrsa-python",
                                              sts_endpoint=sim.host_port)
    credentials = provider.get_credentials()
    assert credentials.get_access_key_id().startswith("STS.")
    assert credentials.get_provider_name() == "oidc_role_arn"
    assert visible_ids(ecs_client(sim, provider)) == ROLE_ACCOUNT_VIEW
    (call,) = sim.calls("AssumeRoleWithOIDC")
    assert call["accessKeyId"] is None and call["signatureMethod"] is None
    assert call["params"]["OIDCToken"] == "<redacted>"

    # Refusals: an expired token, a subject the role does not trust, a foreign signature.
    for token, code in [
        (oidc_token(exp=int(time.time()) - 5), "AuthenticationFail.OIDCToken.Expired"),
        (oidc_token(sub="system:serviceaccount:ns1:other"), "AuthenticationFail.NoPermission"),
        (oidc_token(OTHER_KEY), "AuthenticationFail.OIDCToken.InvalidSignature"),
        (oidc_token(aud=["other"]), "AuthenticationFail.OIDCToken.AudienceNotMatch"),
    ]:
        token_file.write_text(token)
        refused = OIDCRoleArnCredentialsProvider(role_arn=RRSA, oidc_provider_arn=PROVIDER,
                                                 oidc_token_file_path=str(token_file),
                                                 sts_endpoint=sim.host_port)
        with pytest.raises(CredentialException) as caught:
            refused.get_credentials()
        assert "http_code: 401" in caught.value.message, code
        assert code in caught.value.message


def metadata_provider(sim, **kwargs) -> EcsRamRoleCredentialsProvider:
    return EcsRamRoleCredentialsProvider(http_options=HttpOptions(proxy=sim.endpoint),
                                         async_update_enabled=False, **kwargs)


def test_ecs_ram_role_credentials_from_the_metadata_server(sim):
    provider = metadata_provider(sim)
    credentials = provider.get_credentials()
    assert credentials.get_access_key_id().startswith("STS.")
    assert credentials.get_provider_name() == "ecs_ram_role"
    assert credentials.get_expiration() > time.time() + 3600
    assert visible_ids(ecs_client(sim, provider)) == ROLE_ACCOUNT_VIEW

    # The hardened-mode handshake: a token first, then GETs that carry it (the role name was
    # listed because none was given).
    calls = [c for c in sim.calls() if c["product"] == "metadata"]
    assert [c["action"] for c in calls][:4] == [
        "MetadataToken", "MetadataRoleName", "MetadataToken", "MetadataCredentials"]
    assert all(c["httpStatus"] == 200 for c in calls)
    assert all(c["params"]["tokenPresent"] == "true"
               for c in calls if c["params"]["method"] == "GET")

    # A named role and IMDSv1 disabled: the token is mandatory on the client side too.
    named = metadata_provider(sim, role_name=INSTANCE_ROLE_NAME, disable_imds_v1=True)
    assert named.get_credentials().get_access_key_id() == credentials.get_access_key_id()

    # After a rotation the library gets the new credentials on its next refresh.
    rotated = sim.admin_ok("POST", "metadata/rotate")["accessKeyId"]
    assert metadata_provider(sim).get_credentials().get_access_key_id() == rotated


def test_ecs_ram_role_in_hardened_mode(sim, tmp_path_factory):
    hardened = start_sts_sim(tmp_path_factory, "--metadata-require-token")
    try:
        hardened.seed(*INSTANCES)
        provider = metadata_provider(hardened)
        assert visible_ids(ecs_client(hardened, provider)) == ROLE_ACCOUNT_VIEW
        gets = [c for c in hardened.calls() if c["product"] == "metadata"
                and c["params"]["method"] == "GET"]
        assert gets and all(c["params"]["tokenPresent"] == "true" and c["httpStatus"] == 200
                            for c in gets)
    finally:
        stop_sim(hardened)


def test_credentials_uri_provider(sim):
    provider = URLCredentialsProvider(uri=f"{sim.endpoint}/credentials-uri")
    credentials = provider.get_credentials()
    assert credentials.get_access_key_id().startswith("STS.")
    assert credentials.get_provider_name() == "credential_uri"
    assert visible_ids(ecs_client(sim, provider, "v2")) == ROLE_ACCOUNT_VIEW


@pytest.mark.parametrize("algorithm", ["v3", "v2"])
def test_sts_sdk_answers(sim, tmp_path, algorithm):
    """The STS SDK's typed models read every field of the simulator's answers."""
    def sts_client(provider):
        config = Config(credential=CredentialClient(provider=provider), region_id=REGION,
                        endpoint=sim.host_port, protocol="http")
        if algorithm == "v2":
            config.signature_algorithm = "v2"
        return StsClient(config)

    alice = StaticAKCredentialsProvider(access_key_id=ALICE[0], access_key_secret=ALICE[1])
    me = sts_client(alice).get_caller_identity().body
    assert (me.account_id, me.identity_type) == (ACCOUNT_A, "RAMUser")
    assert me.arn == f"acs:ram::{ACCOUNT_A}:user/alice" and me.user_id and me.request_id

    assumed = sts_client(alice).assume_role(sts_models.AssumeRoleRequest(
        role_arn=OPERATOR, role_session_name="sdk-session", duration_seconds=900)).body
    assert assumed.credentials.access_key_id.startswith("STS.")
    assert assumed.credentials.expiration.endswith("Z")
    assert assumed.assumed_role_user.arn == f"acs:ram::{ACCOUNT_B}:role/operator/sdk-session"
    role_id = assumed.assumed_role_user.assumed_role_id.split(":")[0]

    who = sts_client(ram_role_arn(sim)).get_caller_identity().body
    assert (who.account_id, who.identity_type, who.role_id) == (
        ACCOUNT_B, "AssumedRoleUser", role_id)
    assert who.arn.startswith(f"acs:ram::{ACCOUNT_B}:assumed-role/operator/")

    with pytest.raises(ClientException) as caught:
        sts_client(alice).assume_role(sts_models.AssumeRoleRequest(
            role_arn=OPERATOR, role_session_name="sdk-session", duration_seconds=100000))
    assert (caught.value.code, caught.value.status_code) == ("InvalidParameter.DurationSeconds", 400)

    # AssumeRoleWithOIDC is anonymous in the SDK too.
    oidc = sts_client(alice).assume_role_with_oidc(sts_models.AssumeRoleWithOIDCRequest(
        role_arn=RRSA, oidcprovider_arn=PROVIDER, oidctoken=oidc_token(),
        role_session_name="sdk-oidc")).body
    assert oidc.oidctoken_info.subject == SUBJECT
    assert oidc.oidctoken_info.issuer == ISSUER
    assert oidc.oidctoken_info.client_ids == AUDIENCE
    assert oidc.credentials.security_token


def test_expired_credentials_are_refused_and_the_library_refreshes(sim, tmp_path_factory):
    short = start_sts_sim(tmp_path_factory, "--sts-max-lifetime-secs", "2")
    try:
        short.seed(*INSTANCES)
        provider = ram_role_arn(short)
        first = provider.get_credentials()
        assert first.get_expiration() - time.time() <= 2
        fixed = static_sts(first)
        assert visible_ids(ecs_client(short, fixed)) == ROLE_ACCOUNT_VIEW
        time.sleep(3)
        with pytest.raises(ClientException) as caught:
            visible_ids(ecs_client(short, fixed))
        assert (caught.value.code, caught.value.status_code) == ("InvalidSecurityToken.Expired", 400)
        # The provider sees its credentials are stale and assumes the role again.
        assert visible_ids(ecs_client(short, provider)) == ROLE_ACCOUNT_VIEW
        assert provider.get_credentials().get_access_key_id() != first.get_access_key_id()
    finally:
        stop_sim(short)

