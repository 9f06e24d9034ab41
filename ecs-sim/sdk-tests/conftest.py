"""Fixtures for driving ecs-sim with the official Alibaba Cloud Python SDKs.

The simulator binary comes from $ECS_SIM_BIN, default target/debug/ecs-sim under the repository
root. One simulator runs per test module; its state is reset before every test.
"""

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "cn-hangzhou"

# The default test account, an extra plain account and an STS account.
ACCESS_KEY_ID = "testid"
ACCESS_KEY_SECRET = "testsecret"
STS_ACCESS_KEY_ID = "STS.stsid"
STS_ACCESS_KEY_SECRET = "stssecret"
STS_TOKEN = "sts-token+/=value"

# Loopback traffic must never go through a proxy configured in the environment.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

_no_proxy_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sim_binary() -> Path:
    path = Path(os.environ.get("ECS_SIM_BIN", REPO_ROOT / "target" / "debug" / "ecs-sim"))
    if not path.is_file():
        pytest.fail(f"ecs-sim binary not found at {path}; build it first: cargo build -p ecs-sim")
    return path


class Sim:
    """A running simulator and its admin API."""

    def __init__(self, process: subprocess.Popen, endpoint: str):
        self.process = process
        self.endpoint = endpoint  # http://127.0.0.1:PORT
        self.host_port = endpoint.removeprefix("http://")
        self.host, port = self.host_port.split(":")
        self.port = int(port)

    def admin(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.endpoint}/_sim/{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with _no_proxy_opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def admin_ok(self, method: str, path: str, body=None):
        status, value = self.admin(method, path, body)
        assert status == 200, f"admin {method} {path} -> {status} {value}"
        return value

    def seed(self, *instances):
        specs = [{"regionId": REGION, **spec} for spec in instances]
        self.admin_ok("POST", "instances", specs)

    def patch(self, instance_id: str, **attrs):
        return self.admin_ok("PATCH", f"instances/{instance_id}", attrs)

    def instance(self, instance_id: str):
        status, value = self.admin("GET", f"instances/{instance_id}")
        return value if status == 200 else None

    def calls(self, action=None):
        return self.admin_ok("GET", "calls" + (f"?action={action}" if action else ""))

    def wait_for(self, instance_id: str, predicate, timeout=5.0):
        """Polls the admin view until predicate(instance or None) holds."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.instance(instance_id)
            if predicate(current):
                return current
            assert time.monotonic() < deadline, f"{instance_id} never reached the state: {current}"
            time.sleep(0.05)


def start_sim(*args: str) -> Sim:
    """Starts a simulator on a free port with fast transitions and the given extra flags; stop it
    with stop_sim."""
    process = subprocess.Popen(
        [
            str(sim_binary()),
            "--listen", "127.0.0.1:0",
            "--transition-ms", "200",
            "--release-linger-ms", "500",
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().strip()
    prefix = "ecs-sim listening on "
    if not line.startswith(prefix):
        process.kill()
        process.wait(timeout=10)
        pytest.fail(f"ecs-sim did not start (first line {line!r}, exit code {process.returncode})")
    return Sim(process, line.removeprefix(prefix))


def stop_sim(sim: Sim):
    sim.process.terminate()
    sim.process.wait(timeout=10)


@pytest.fixture(scope="module")
def sim():
    started = start_sim(
        "--account", f"{ACCESS_KEY_ID}:{ACCESS_KEY_SECRET}",
        "--account", f"{STS_ACCESS_KEY_ID}:{STS_ACCESS_KEY_SECRET}:{STS_TOKEN}",
    )
    try:
        yield started
    finally:
        stop_sim(started)


@pytest.fixture(autouse=True)
def clean_sim(sim):
    sim.admin_ok("POST", "reset")
    yield sim
