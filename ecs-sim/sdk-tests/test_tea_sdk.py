"""ecs-sim driven by the current official SDK, alibabacloud_ecs20140526 on alibabacloud_tea_openapi:
ACS3-HMAC-SHA256 (the default) and HMAC-SHA1 (signature_algorithm='v2'); instances, tags and
regions."""

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


# --- tags and regions ---


def tag_instances(client, ids, tags, region=REGION):
    request = m.TagResourcesRequest(
        region_id=region,
        resource_type="instance",
        resource_id=ids,
        tag=[m.TagResourcesRequestTag(key=k, value=v) for k, v in tags],
    )
    return client.tag_resources(request)


def list_tags(client, **kwargs):
    tags = kwargs.pop("tags", None)
    request = m.ListTagResourcesRequest(region_id=REGION, resource_type="instance", **kwargs)
    if tags is not None:
        request.tag = [m.ListTagResourcesRequestTag(key=k, value=v) for k, v in tags]
    return client.list_tag_resources(request).body


def entries(body):
    return [(e.resource_id, e.resource_type, e.tag_key, e.tag_value) for e in body.tag_resources.tag_resource]


def test_tag_list_describe_and_untag(sim, client, algorithm):
    sim.seed({"instanceId": "i-teatag00001"}, {"instanceId": "i-teatag00002", "tags": {"team": "b"}})
    response = tag_instances(
        client, ["i-teatag00001"], [("ecs.alicloud.dev/owner", "ns/web"), ("ecs.alicloud.dev/owner-uid", "")]
    )
    assert response.status_code == 200 and response.body.request_id
    call = sim.calls("TagResources")[-1]
    assert call["signatureMethod"] == SIGNATURE_METHODS[algorithm] and call["httpStatus"] == 200
    assert call["params"]["Tag.2.Value"] == ""
    assert sim.instance("i-teatag00001")["tags"] == {"ecs.alicloud.dev/owner": "ns/web", "ecs.alicloud.dev/owner-uid": ""}

    # DescribeInstances carries the tags.
    instance = describe(client, ["i-teatag00001"]).instances.instance[0]
    assert [(t.tag_key, t.tag_value) for t in instance.tags.tag] == [
        ("ecs.alicloud.dev/owner", "ns/web"),
        ("ecs.alicloud.dev/owner-uid", ""),
    ]
    # Overwrite one key.
    tag_instances(client, ["i-teatag00001"], [("ecs.alicloud.dev/owner-uid", "uid-1")])

    by_id = list_tags(client, resource_id=["i-teatag00001", "i-teatag00002"])
    assert by_id.request_id and not by_id.next_token
    assert entries(by_id) == [
        ("i-teatag00001", "instance", "ecs.alicloud.dev/owner", "ns/web"),
        ("i-teatag00001", "instance", "ecs.alicloud.dev/owner-uid", "uid-1"),
        ("i-teatag00002", "instance", "team", "b"),
    ]
    by_tag = list_tags(client, tags=[("ecs.alicloud.dev/owner-uid", "uid-1")])
    assert {e[0] for e in entries(by_tag)} == {"i-teatag00001"}

    filtered = client.describe_instances(
        m.DescribeInstancesRequest(region_id=REGION, tag=[m.DescribeInstancesRequestTag(key="team", value="b")])
    ).body
    assert [i.instance_id for i in filtered.instances.instance] == ["i-teatag00002"]

    untagged = client.untag_resources(m.UntagResourcesRequest(
        region_id=REGION, resource_type="instance", resource_id=["i-teatag00001"], tag_key=["ecs.alicloud.dev/owner"]
    ))
    assert untagged.body.request_id
    assert sim.instance("i-teatag00001")["tags"] == {"ecs.alicloud.dev/owner-uid": "uid-1"}
    client.untag_resources(m.UntagResourcesRequest(
        region_id=REGION, resource_type="instance", resource_id=["i-teatag00001", "i-teatag00002"], all=True
    ))
    assert sim.calls("UntagResources")[-1]["params"]["All"] == "True"
    assert describe(client, ["i-teatag00001"]).instances.instance[0].tags.tag == []
    assert sim.instance("i-teatag00002")["tags"] == {}


def test_list_tag_resources_pages(sim, client):
    sim.seed(*[
        {"instanceId": f"i-teapage{n:05d}", "tags": {f"k{t:02d}": str(n) for t in range(20)}} for n in range(3)
    ])
    seen, token, pages = [], None, 0
    while True:
        body = list_tags(client, tags=[("k07", None)], next_token=token)
        seen += entries(body)
        pages += 1
        token = body.next_token
        if not token:
            break
    assert (pages, len(seen), len(set(seen))) == (2, 60, 60)


@pytest.mark.parametrize(
    "ids, tags, code, status, message",
    [
        (["i-teaerr00001"], [("acs:reserved", "v")], "InvalidTagKey.Malformed", 400,
         "The specified Tag.n.Key is not valid."),
        (["i-teaerr00001"], [("k", "x" * 129)], "InvalidTagValue.Malformed", 400,
         "The specified Tag.n.Value is not valid."),
        (["i-teaerr00001"], [("k", "1"), ("k", "2")], "Duplicate.TagKey", 400,
         "The Tag.N.Key contain duplicate key."),
        (["i-teaerr00001"], [(f"k{n}", "") for n in range(21)], "NumberExceed.Tags", 400,
         "The Tags parameter's number is exceed , Valid : 20."),
        (["i-teaerr00001"], [("new", "")], "OperationDenied.QuotaExceed", 400,
         "The quota of tags on resource is beyond permitted range."),
        (["i-teaerr00001", "i-doesnotexist1"], [("k", "v")], "InvalidResourceId.NotFound", 404,
         "The specified ResourceIds are not found in our records."),
    ],
)
def test_tag_resources_errors(sim, client, ids, tags, code, status, message):
    sim.seed({"instanceId": "i-teaerr00001", "tags": {f"old{n}": "" for n in range(20)}})
    error = error_of(lambda: tag_instances(client, ids, tags))
    assert (error.code, error.status_code) == (code, status)
    assert message in error.message
    assert error.data["RequestId"] and error.data["Recommend"].startswith("https://")
    assert len(sim.instance("i-teaerr00001")["tags"]) == 20


def test_untag_and_list_errors(sim, client):
    sim.seed({"instanceId": "i-teaerr00002"})
    conflict = error_of(lambda: client.untag_resources(m.UntagResourcesRequest(
        region_id=REGION, resource_type="instance", resource_id=["i-teaerr00002"], tag_key=["k"], all=True
    )))
    assert (conflict.code, conflict.status_code) == ("Param.Conflict", 403)
    bad_type = error_of(lambda: client.untag_resources(m.UntagResourcesRequest(
        region_id=REGION, resource_type="spaceship", resource_id=["i-teaerr00002"], all=True
    )))
    assert (bad_type.code, bad_type.status_code) == ("InvalidResourceType.NotFound", 404)
    empty = error_of(lambda: client.list_tag_resources(
        m.ListTagResourcesRequest(region_id=REGION, resource_type="instance")
    ))
    assert (empty.code, empty.status_code) == ("BothEmpty.TagsAndResources", 403)


def test_unknown_region(sim, client):
    sim.seed({"instanceId": "i-tearegion01"})
    for call in (
        lambda: client.describe_instances(m.DescribeInstancesRequest(region_id="cn-atlantis")),
        lambda: client.describe_instance_status(m.DescribeInstanceStatusRequest(region_id="cn-atlantis")),
        lambda: tag_instances(client, ["i-tearegion01"], [("k", "v")], region="cn-atlantis"),
        lambda: client.untag_resources(m.UntagResourcesRequest(
            region_id="cn-atlantis", resource_type="instance", resource_id=["i-tearegion01"], all=True)),
        lambda: client.list_tag_resources(m.ListTagResourcesRequest(
            region_id="cn-atlantis", resource_type="instance", resource_id=["i-tearegion01"])),
    ):
        error = error_of(call)
        assert (error.code, error.status_code) == ("InvalidRegionId.NotFound", 404)
        assert "The specified RegionId does not exist." in error.message
    # A real region without instances: an empty list, not an error.
    elsewhere = client.describe_instances(m.DescribeInstancesRequest(region_id="ap-southeast-1")).body
    assert elsewhere.total_count == 0 and elsewhere.instances.instance == []
    not_there = error_of(lambda: tag_instances(client, ["i-tearegion01"], [("k", "v")], region="ap-southeast-1"))
    assert (not_there.code, not_there.status_code) == ("InvalidResourceId.NotFound", 404)


def test_forbidden_ram_fault_on_tag_resources(sim, client):
    sim.seed({"instanceId": "i-teafault001"})
    sim.admin_ok("PUT", "faults", {"rules": [
        {"action": "TagResources", "errorRate": 1.0, "errorCode": "Forbidden.RAM"}
    ]})
    error = error_of(lambda: tag_instances(client, ["i-teafault001"], [("k", "v")]))
    assert (error.code, error.status_code) == ("Forbidden.RAM", 403)
    assert sim.instance("i-teafault001")["tags"] == {}
    assert list_tags(client, resource_id=["i-teafault001"]).tag_resources.tag_resource == []
