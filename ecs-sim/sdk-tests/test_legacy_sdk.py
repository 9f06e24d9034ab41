"""ecs-sim driven by the legacy official SDK, aliyun-python-sdk-core + aliyun-python-sdk-ecs
(HMAC-SHA1 RPC signing, parameters in the query string of a POST), in JSON and XML: instances,
tags and regions."""

import json
import warnings
import xml.etree.ElementTree as ET

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526.DeleteInstanceRequest import DeleteInstanceRequest
from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
from aliyunsdkecs.request.v20140526.DescribeInstanceStatusRequest import DescribeInstanceStatusRequest
from aliyunsdkecs.request.v20140526.ListTagResourcesRequest import ListTagResourcesRequest
from aliyunsdkecs.request.v20140526.StartInstanceRequest import StartInstanceRequest
from aliyunsdkecs.request.v20140526.StopInstanceRequest import StopInstanceRequest
from aliyunsdkecs.request.v20140526.TagResourcesRequest import TagResourcesRequest
from aliyunsdkecs.request.v20140526.UntagResourcesRequest import UntagResourcesRequest

from conftest import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    REGION,
    STS_ACCESS_KEY_ID,
    STS_ACCESS_KEY_SECRET,
    STS_TOKEN,
)


def make_client(sim, access_key_id=ACCESS_KEY_ID, secret=ACCESS_KEY_SECRET, token=None):
    if token is None:
        return AcsClient(access_key_id, secret, REGION, port=sim.port, auto_retry=False)
    credential = StsTokenCredential(access_key_id, secret, token)
    return AcsClient(region_id=REGION, credential=credential, port=sim.port, auto_retry=False)


def at_sim(sim, request):
    request.set_endpoint(sim.host)
    request.set_protocol_type("http")
    return request


def describe_request(sim, ids):
    request = at_sim(sim, DescribeInstancesRequest())
    request.set_InstanceIds(json.dumps(ids))
    return request


def delete_request(sim, instance_id, **flags):
    request = at_sim(sim, DeleteInstanceRequest())
    request.set_InstanceId(instance_id)
    for name, value in flags.items():
        getattr(request, f"set_{name}")(value)
    return request


def run(client, request):
    return json.loads(client.do_action_with_exception(request))


def server_error(client, request):
    with pytest.raises(ServerException) as caught:
        client.do_action_with_exception(request)
    return caught.value


@pytest.fixture
def client(sim):
    return make_client(sim)


def test_describe_json(sim, client):
    sim.seed({"instanceId": "i-legacy00001", "status": "Stopped"}, {"instanceId": "i-legacy00002"})
    body = run(client, describe_request(sim, ["i-legacy00001", "i-legacy00002", "i-unknown0001"]))
    assert body["TotalCount"] == 2
    assert {(i["InstanceId"], i["Status"]) for i in body["Instances"]["Instance"]} == {
        ("i-legacy00001", "Stopped"),
        ("i-legacy00002", "Running"),
    }
    call = sim.calls("DescribeInstances")[-1]
    assert call["signatureMethod"] == "HMAC-SHA1"
    # The legacy SDK adds RegionId and an empty SignatureType, both signed.
    assert call["params"]["RegionId"] == REGION and call["params"]["SignatureType"] == ""


def test_describe_xml_and_xml_errors(sim, client):
    sim.seed({"instanceId": "i-legacy00003", "status": "Stopped"})
    request = describe_request(sim, ["i-legacy00003"])
    request.set_accept_format("XML")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # do_action keeps the asked format
        root = ET.fromstring(client.do_action(request))
        assert root.tag == "DescribeInstancesResponse"
        assert root.findtext("TotalCount") == "1"
        assert [i.findtext("InstanceId") for i in root.findall("./Instances/Instance")] == ["i-legacy00003"]
        assert root.findtext("./Instances/Instance/Status") == "Stopped"
        assert root.findtext("RequestId")

        missing = delete_request(sim, "i-doesnotexist1")
        missing.set_accept_format("XML")
        error = ET.fromstring(client.do_action(missing))
    assert error.tag == "Error"
    assert error.findtext("Code") == "InvalidInstanceId.NotFound"
    assert error.findtext("Message") == "The specified InstanceId does not exist."
    assert error.findtext("HostId") == sim.host_port
    assert error.findtext("Recommend").startswith("https://")


def test_stop_start_and_describe_status(sim, client):
    sim.seed({"instanceId": "i-legacy00010"})
    stop = at_sim(sim, StopInstanceRequest())
    stop.set_InstanceId("i-legacy00010")
    stop.set_StoppedMode("StopCharging")
    assert run(client, stop)["RequestId"]
    sim.wait_for("i-legacy00010", lambda i: i["status"] == "Stopped")
    stopped = run(client, describe_request(sim, ["i-legacy00010"]))["Instances"]["Instance"][0]
    assert (stopped["Status"], stopped["StoppedMode"]) == ("Stopped", "StopCharging")

    again = server_error(client, stop)
    assert (again.get_error_code(), again.get_http_status()) == ("IncorrectInstanceStatus", 403)

    start = at_sim(sim, StartInstanceRequest())
    start.set_InstanceId("i-legacy00010")
    run(client, start)
    sim.wait_for("i-legacy00010", lambda i: i["status"] == "Running")

    status = at_sim(sim, DescribeInstanceStatusRequest())
    status.set_InstanceIds(["i-legacy00010"])
    body = run(client, status)
    assert body["InstanceStatuses"]["InstanceStatus"] == [{"InstanceId": "i-legacy00010", "Status": "Running"}]


def test_delete_running_fails_then_stopped_is_released(sim, client):
    sim.seed({"instanceId": "i-legacy00020", "status": "Running"})
    error = server_error(client, delete_request(sim, "i-legacy00020"))
    assert (error.get_error_code(), error.get_http_status()) == ("IncorrectInstanceStatus", 403)
    assert error.get_error_msg() == "The current status of the resource does not support this operation."

    sim.patch("i-legacy00020", status="Stopped")
    assert run(client, delete_request(sim, "i-legacy00020"))["RequestId"]
    assert sim.instance("i-legacy00020")["released"] is True
    gone = server_error(client, delete_request(sim, "i-legacy00020"))
    assert gone.get_error_code() == "InvalidInstanceId.NotFound"


def test_not_found_and_force(sim, client):
    error = server_error(client, delete_request(sim, "i-doesnotexist1"))
    assert (error.get_error_code(), error.get_http_status()) == ("InvalidInstanceId.NotFound", 404)

    sim.seed({"instanceId": "i-legacy00030", "status": "Running"})
    run(client, delete_request(sim, "i-legacy00030", Force=True, ForceStop=False))
    assert sim.instance("i-legacy00030")["released"] is True
    params = sim.calls("DeleteInstance")[-1]["params"]
    assert (params["Force"], params["ForceStop"]) == ("True", "False")


def test_wrong_secret(sim):
    client = make_client(sim, secret="not-the-secret")
    error = server_error(client, describe_request(sim, ["i-legacy00040"]))
    # The SDK compares the server's string to sign with its own; when they are equal (only the
    # secret differs) it reports InvalidAccessKeySecret instead of SignatureDoesNotMatch.
    assert error.get_error_code() == "InvalidAccessKeySecret"
    assert error.get_http_status() == 400
    call = sim.calls("DescribeInstances")[-1]
    assert (call["code"], call["httpStatus"]) == ("SignatureDoesNotMatch", 400)


def test_unknown_access_key(sim):
    error = server_error(make_client(sim, access_key_id="nosuchkey"), describe_request(sim, ["i-legacy00040"]))
    assert (error.get_error_code(), error.get_http_status()) == ("InvalidAccessKeyId.NotFound", 404)


def test_sts_token(sim):
    sim.seed({"instanceId": "i-legacy00050"})
    client = make_client(sim, STS_ACCESS_KEY_ID, STS_ACCESS_KEY_SECRET, STS_TOKEN)
    assert run(client, describe_request(sim, ["i-legacy00050"]))["TotalCount"] == 1
    wrong = make_client(sim, STS_ACCESS_KEY_ID, STS_ACCESS_KEY_SECRET, "another-token")
    error = server_error(wrong, describe_request(sim, ["i-legacy00050"]))
    assert error.get_error_code() == "InvalidSecurityToken.MismatchWithAccessKey"


def test_injected_service_unavailable(sim, client):
    sim.admin_ok("PUT", "faults", {"rules": [{"action": "DeleteInstance", "errorRate": 1.0}]})
    sim.seed({"instanceId": "i-legacy00060", "status": "Stopped"})
    error = server_error(client, delete_request(sim, "i-legacy00060"))
    assert (error.get_error_code(), error.get_http_status()) == ("ServiceUnavailable", 503)
    assert sim.instance("i-legacy00060")["released"] is False


# --- tags and regions ---


def tag_request(sim, ids, tags):
    request = at_sim(sim, TagResourcesRequest())
    request.set_ResourceType("instance")
    request.set_ResourceIds(ids)
    request.set_Tags([{"Key": k, "Value": v} for k, v in tags])
    return request


def test_tag_describe_list_untag(sim, client):
    sim.seed({"instanceId": "i-legtag00001"})
    assert run(client, tag_request(sim, ["i-legtag00001"], [("owner", "ns/a"), ("empty", "")]))["RequestId"]
    params = sim.calls("TagResources")[-1]["params"]
    assert (params["RegionId"], params["Tag.1.Key"], params["Tag.2.Value"]) == (REGION, "owner", "")

    instance = run(client, describe_request(sim, ["i-legtag00001"]))["Instances"]["Instance"][0]
    assert instance["Tags"]["Tag"] == [{"TagKey": "empty", "TagValue": ""}, {"TagKey": "owner", "TagValue": "ns/a"}]

    listing = at_sim(sim, ListTagResourcesRequest())
    listing.set_ResourceType("instance")
    listing.set_ResourceIds(["i-legtag00001"])
    body = run(client, listing)
    assert body["RequestId"] and body["NextToken"] == ""
    assert body["TagResources"]["TagResource"] == [
        {"ResourceId": "i-legtag00001", "ResourceType": "instance", "TagKey": "empty", "TagValue": ""},
        {"ResourceId": "i-legtag00001", "ResourceType": "instance", "TagKey": "owner", "TagValue": "ns/a"},
    ]

    untag = at_sim(sim, UntagResourcesRequest())
    untag.set_ResourceType("instance")
    untag.set_ResourceIds(["i-legtag00001"])
    untag.set_TagKeys(["owner"])
    assert run(client, untag)["RequestId"]
    assert sim.instance("i-legtag00001")["tags"] == {"empty": ""}
    untag_all = at_sim(sim, UntagResourcesRequest())
    untag_all.set_ResourceType("instance")
    untag_all.set_ResourceIds(["i-legtag00001"])
    untag_all.set_All(True)
    run(client, untag_all)
    assert sim.instance("i-legtag00001")["tags"] == {}


def test_tags_in_xml(sim, client):
    sim.seed({"instanceId": "i-legtag00002", "tags": {"team": "<a&b>"}})
    request = describe_request(sim, ["i-legtag00002"])
    request.set_accept_format("XML")
    listing = at_sim(sim, ListTagResourcesRequest())
    listing.set_ResourceType("instance")
    listing.set_Tags([{"Key": "team"}])
    listing.set_accept_format("XML")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        root = ET.fromstring(client.do_action(request))
        listed = ET.fromstring(client.do_action(listing))
    tags = root.findall("./Instances/Instance/Tags/Tag")
    assert [(t.findtext("TagKey"), t.findtext("TagValue")) for t in tags] == [("team", "<a&b>")]
    assert listed.tag == "ListTagResourcesResponse" and listed.findtext("RequestId")
    entries = listed.findall("./TagResources/TagResource")
    assert [(e.findtext("ResourceId"), e.findtext("TagKey"), e.findtext("TagValue")) for e in entries] == [
        ("i-legtag00002", "team", "<a&b>")
    ]


def test_tag_errors(sim, client):
    sim.seed({"instanceId": "i-legtag00003"})
    bad_key = server_error(client, tag_request(sim, ["i-legtag00003"], [("aliyun-owned", "v")]))
    assert (bad_key.get_error_code(), bad_key.get_http_status()) == ("InvalidTagKey.Malformed", 400)
    assert bad_key.get_error_msg() == "The specified Tag.n.Key is not valid."
    assert bad_key.get_request_id()
    missing = server_error(client, tag_request(sim, ["i-doesnotexist1"], [("k", "v")]))
    assert (missing.get_error_code(), missing.get_http_status()) == ("InvalidResourceId.NotFound", 404)
    assert missing.get_error_msg() == "The specified ResourceIds are not found in our records."

    sim.admin_ok("PUT", "faults", {"rules": [
        {"action": "UntagResources", "errorRate": 1.0, "errorCode": "Forbidden.RAM"}
    ]})
    untag = at_sim(sim, UntagResourcesRequest())
    untag.set_ResourceType("instance")
    untag.set_ResourceIds(["i-legtag00003"])
    untag.set_All(True)
    forbidden = server_error(client, untag)
    assert (forbidden.get_error_code(), forbidden.get_http_status()) == ("Forbidden.RAM", 403)


def test_unknown_region(sim):
    sim.seed({"instanceId": "i-legregion01"})
    client = AcsClient(ACCESS_KEY_ID, ACCESS_KEY_SECRET, "cn-atlantis", port=sim.port, auto_retry=False)
    error = server_error(client, describe_request(sim, ["i-legregion01"]))
    assert (error.get_error_code(), error.get_http_status()) == ("InvalidRegionId.NotFound", 404)
    assert error.get_error_msg() == "The specified RegionId does not exist."
    assert server_error(client, tag_request(sim, ["i-legregion01"], [("k", "v")])).get_error_code() == \
        "InvalidRegionId.NotFound"
    # DeleteInstance takes no RegionId: the one the SDK adds is ignored.
    sim.patch("i-legregion01", status="Stopped")
    assert run(client, delete_request(sim, "i-legregion01"))["RequestId"]

    elsewhere = AcsClient(ACCESS_KEY_ID, ACCESS_KEY_SECRET, "eu-central-1", port=sim.port, auto_retry=False)
    body = run(elsewhere, describe_request(sim, ["i-legregion01"]))
    assert body["TotalCount"] == 0 and body["Instances"]["Instance"] == []
