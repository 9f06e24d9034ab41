"""ecs-sim driven by the current official SDK, alibabacloud_ecs20140526 on alibabacloud_tea_openapi:
ACS3-HMAC-SHA256 (the default) and HMAC-SHA1 (signature_algorithm='v2')."""

import json

import pytest
from alibabacloud_ecs20140526 import models as m
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config

from conftest import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    REGION,
    STS_ACCESS_KEY_ID,
    STS_ACCESS_KEY_SECRET,
    STS_TOKEN,
)

SIGNATURE_METHODS = {"v3": "ACS3-HMAC-SHA256", "v2": "HMAC-SHA1"}


def make_client(sim, algorithm, access_key_id=ACCESS_KEY_ID, secret=ACCESS_KEY_SECRET, token=None):
    config = Config(
        access_key_id=access_key_id,
        access_key_secret=secret,
        security_token=token,
        region_id=REGION,
        endpoint=sim.host_port,
        protocol="http",
    )
    if algorithm == "v2":
        config.signature_algorithm = "v2"
    return Client(config)


@pytest.fixture(params=["v3", "v2"])
def algorithm(request):
    return request.param


@pytest.fixture
def client(sim, algorithm):
    return make_client(sim, algorithm)


def error_of(call):
    with pytest.raises(ClientException) as caught:
        call()
    return caught.value


def describe(client, ids):
    request = m.DescribeInstancesRequest(region_id=REGION, instance_ids=json.dumps(ids))
    return client.describe_instances(request).body


def test_describe_returns_seeded_instances_with_their_attributes(sim, client, algorithm):
    sim.seed(
        {"instanceId": "i-tea00000001", "status": "Running", "zoneId": "cn-hangzhou-h",
         "deletionProtection": True, "lockReasons": ["security"], "instanceName": "web-1"},
        {"instanceId": "i-tea00000002", "status": "Stopped", "chargeType": "PrePaid"},
        {"instanceId": "i-tea00000003", "regionId": "cn-beijing"},
    )
    body = describe(client, ["i-tea00000001", "i-tea00000002", "i-tea00000003", "i-unknown0001"])
    assert body.total_count == 2
    by_id = {i.instance_id: i for i in body.instances.instance}
    assert set(by_id) == {"i-tea00000001", "i-tea00000002"}
    first = by_id["i-tea00000001"]
    assert (first.status, first.zone_id, first.instance_name) == ("Running", "cn-hangzhou-h", "web-1")
    assert first.deletion_protection is True
    assert [lock.lock_reason for lock in first.operation_locks.lock_reason] == ["security"]
    assert by_id["i-tea00000002"].instance_charge_type == "PrePaid"
    assert body.request_id

    only_unknown = describe(client, ["i-unknown0001"])
    assert only_unknown.total_count == 0 and only_unknown.instances.instance == []

    call = sim.calls("DescribeInstances")[-1]
    assert call["signatureMethod"] == SIGNATURE_METHODS[algorithm]
    assert call["accessKeyId"] == ACCESS_KEY_ID and call["httpStatus"] == 200


def test_status_filter_and_pages(sim, client):
    sim.seed(*[{"instanceId": f"i-page{n:07d}", "status": "Stopped" if n % 2 else "Running"} for n in range(25)])
    stopped = client.describe_instances(
        m.DescribeInstancesRequest(region_id=REGION, status="Stopped", page_size=100)
    ).body
    assert stopped.total_count == 12
    assert all(i.status == "Stopped" for i in stopped.instances.instance)

    seen = []
    for page in (1, 2, 3):
        body = client.describe_instances(
            m.DescribeInstancesRequest(region_id=REGION, page_number=page, page_size=10)
        ).body
        assert (body.total_count, body.page_number, body.page_size) == (25, page, 10)
        seen += [i.instance_id for i in body.instances.instance]
    assert seen == sorted(f"i-page{n:07d}" for n in range(25))

    token_pages, token = [], None
    while True:
        body = client.describe_instances(
            m.DescribeInstancesRequest(region_id=REGION, max_results=10, next_token=token)
        ).body
        token_pages.append([i.instance_id for i in body.instances.instance])
        token = body.next_token
        if not token:
            break
    assert [len(p) for p in token_pages] == [10, 10, 5]
    assert sum(token_pages, []) == seen


def test_stop_then_start_walk_through_the_transitions(sim, client):
    sim.seed({"instanceId": "i-tea00000010", "status": "Running"})
    assert client.stop_instance(m.StopInstanceRequest(instance_id="i-tea00000010", force_stop=True)).body.request_id
    assert describe(client, ["i-tea00000010"]).instances.instance[0].status == "Stopping"
    sim.wait_for("i-tea00000010", lambda i: i["status"] == "Stopped")
    assert describe(client, ["i-tea00000010"]).instances.instance[0].status == "Stopped"

    client.start_instance(m.StartInstanceRequest(instance_id="i-tea00000010"))
    assert describe(client, ["i-tea00000010"]).instances.instance[0].status == "Starting"
    sim.wait_for("i-tea00000010", lambda i: i["status"] == "Running")

    status = client.describe_instance_status(
        m.DescribeInstanceStatusRequest(region_id=REGION, instance_id=["i-tea00000010"])
    ).body
    assert [(s.instance_id, s.status) for s in status.instance_statuses.instance_status] == [
        ("i-tea00000010", "Running")
    ]


def test_delete_running_instance_is_refused_then_released_once_stopped(sim, client):
    sim.seed({"instanceId": "i-tea00000020", "status": "Running"})
    error = error_of(lambda: client.delete_instance(m.DeleteInstanceRequest(instance_id="i-tea00000020")))
    assert (error.code, error.status_code) == ("IncorrectInstanceStatus", 403)
    assert "The current status of the resource does not support this operation." in error.message
    assert error.data["Recommend"].startswith("https://")
    assert error.data["HostId"] == sim.host_port

    client.stop_instance(m.StopInstanceRequest(instance_id="i-tea00000020"))
    sim.wait_for("i-tea00000020", lambda i: i["status"] == "Stopped")
    response = client.delete_instance(m.DeleteInstanceRequest(instance_id="i-tea00000020"))
    assert response.status_code == 200 and response.body.request_id

    # Release is asynchronous: still visible for a while, then gone.
    lingering = describe(client, ["i-tea00000020"]).instances.instance
    assert [i.status for i in lingering] == ["Stopped"]
    sim.wait_for("i-tea00000020", lambda i: i is None)
    assert describe(client, ["i-tea00000020"]).total_count == 0


def test_force_delete_and_dry_run(sim, client):
    sim.seed({"instanceId": "i-tea00000030", "status": "Running"})
    dry = error_of(lambda: client.delete_instance(
        m.DeleteInstanceRequest(instance_id="i-tea00000030", force=True, dry_run=True)))
    assert (dry.code, dry.status_code) == ("DryRunOperation", 400)
    assert sim.instance("i-tea00000030")["released"] is False

    client.delete_instance(m.DeleteInstanceRequest(instance_id="i-tea00000030", force=True))
    assert sim.instance("i-tea00000030")["released"] is True
    call = sim.calls("DeleteInstance")[-1]
    assert call["params"]["Force"].lower() == "true" and call["httpStatus"] == 200


def test_unknown_and_malformed_instance_ids(client):
    missing = error_of(lambda: client.delete_instance(m.DeleteInstanceRequest(instance_id="i-doesnotexist1")))
    assert (missing.code, missing.status_code) == ("InvalidInstanceId.NotFound", 404)
    assert "The specified InstanceId does not exist." in missing.message
    malformed = error_of(lambda: client.stop_instance(m.StopInstanceRequest(instance_id="not-an-id")))
    assert (malformed.code, malformed.status_code) == ("InvalidParameter", 400)


@pytest.mark.parametrize(
    "setup, code, status",
    [
        ({"status": "Pending"}, "IncorrectInstanceStatus.Initializing", 403),
        ({"lockReasons": ["security"]}, "InstanceLockedForSecurity", 403),
        ({"deletionProtection": True}, "InvalidOperation.DeletionProtection", 403),
        ({"chargeType": "PrePaid"}, "ChargeTypeViolation", 403),
        ({"routeEntry": True}, "DependencyViolation.RouteEntry", 400),
        ({"slbConfiguring": True}, "DependencyViolation.SLBConfiguring", 400),
    ],
)
def test_delete_error_setups(sim, client, setup, code, status):
    sim.seed({"instanceId": "i-tea00000040", "status": "Stopped", **setup})
    error = error_of(lambda: client.delete_instance(m.DeleteInstanceRequest(instance_id="i-tea00000040")))
    assert (error.code, error.status_code) == (code, status)


def test_expired_subscription_released_with_terminate_subscription(sim, client):
    sim.seed({"instanceId": "i-tea00000050", "status": "Stopped", "chargeType": "PrePaid", "expired": True})
    refused = error_of(lambda: client.delete_instance(m.DeleteInstanceRequest(instance_id="i-tea00000050")))
    assert refused.code == "ChargeTypeViolation"
    client.delete_instance(m.DeleteInstanceRequest(instance_id="i-tea00000050", terminate_subscription=True))
    assert sim.instance("i-tea00000050")["released"] is True


def test_wrong_secret_is_signature_does_not_match(sim, algorithm):
    client = make_client(sim, algorithm, secret="not-the-secret")
    error = error_of(lambda: describe(client, ["i-tea00000060"]))
    assert (error.code, error.status_code) == ("SignatureDoesNotMatch", 400)
    assert "server string to sign is:" in error.message


def test_unknown_access_key(sim, algorithm):
    client = make_client(sim, algorithm, access_key_id="nosuchkey")
    error = error_of(lambda: describe(client, ["i-tea00000060"]))
    assert (error.code, error.status_code) == ("InvalidAccessKeyId.NotFound", 404)


def test_sts_token(sim, algorithm):
    sim.seed({"instanceId": "i-tea00000070"})
    good = make_client(sim, algorithm, STS_ACCESS_KEY_ID, STS_ACCESS_KEY_SECRET, STS_TOKEN)
    assert describe(good, ["i-tea00000070"]).total_count == 1
    assert sim.calls("DescribeInstances")[-1]["accessKeyId"] == STS_ACCESS_KEY_ID

    wrong = make_client(sim, algorithm, STS_ACCESS_KEY_ID, STS_ACCESS_KEY_SECRET, "another-token")
    assert error_of(lambda: describe(wrong, ["i-tea00000070"])).code == "InvalidSecurityToken.MismatchWithAccessKey"
    missing = make_client(sim, algorithm, STS_ACCESS_KEY_ID, STS_ACCESS_KEY_SECRET)
    assert error_of(lambda: describe(missing, ["i-tea00000070"])).code == "MissingSecurityToken"


def test_owner_hides_instances_from_other_accounts(sim, algorithm):
    sim.seed({"instanceId": "i-tea00000080", "owner": STS_ACCESS_KEY_ID})
    assert describe(make_client(sim, algorithm), ["i-tea00000080"]).total_count == 0
    other = make_client(sim, algorithm, STS_ACCESS_KEY_ID, STS_ACCESS_KEY_SECRET, STS_TOKEN)
    assert describe(other, ["i-tea00000080"]).total_count == 1


def test_throttling_fault(sim, client):
    sim.admin_ok("PUT", "faults", {"rules": [{"action": "DescribeInstances", "throttleQps": 2}]})
    codes = []
    for _ in range(5):
        try:
            describe(client, ["i-tea00000090"])
            codes.append("ok")
        except ClientException as error:
            codes.append(error.code)
    assert codes[:2] == ["ok", "ok"] and "Throttling.User" in codes
