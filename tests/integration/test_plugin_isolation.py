"""Plugin worker reuse on real Docker, real gRPC and two real tenants (issue 13).

This module's gateway has tenants ``alice`` and ``bob`` and three plugins:

* ``sandcell_reuse_plugin`` (``per_tenant``, up to 50 calls per worker here): it keeps, in
  its process memory, every ``remember`` value it was given and returns them all, so a call
  that were handed another tenant's worker would read that tenant's values;
* ``sandcell_test_plugin`` (``per_tenant``, the default): crashes or hangs on request;
* ``subtract_numbers`` (``shared``, a calculator seed plugin).
"""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.tenants import hash_token
from sandcell_gateway.testing import GatewayProcess, wait_for

from .conftest import REUSE_PLUGIN, TEST_PLUGIN

pytestmark = pytest.mark.docker

TOKENS = {name: f"{name}-{secrets.token_urlsafe(12)}" for name in ("alice", "bob")}
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"

[templates.python]
min_ready = 0
max_total = 1

[plugins]
dir = "seed-plugins"
paths = ["reuse-plugin", "{TEST_PLUGIN}"]
min_ready = 1
max_total = 4

[tenants.alice]
token_sha256 = "{hash_token(TOKENS['alice'])}"

[tenants.bob]
token_sha256 = "{hash_token(TOKENS['bob'])}"
"""
MEMO = "sandcell_reuse_plugin"
CRASHY = "sandcell_test_plugin"
SHARED = "subtract_numbers"


def copy_plugin(source: Path, target: Path, **changes: Any) -> None:
    shutil.copytree(source, target)
    manifest = json.loads((target / "plugin.json").read_text())
    (target / "plugin.json").write_text(json.dumps(manifest | changes))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    ensure_images(["python", "plugin-python"])
    workdir = tmp_path_factory.mktemp("isolation")
    seeds = Path(__file__).resolve().parents[2] / "plugins"
    copy_plugin(seeds / SHARED, workdir / "seed-plugins" / SHARED)
    copy_plugin(REUSE_PLUGIN, workdir / "reuse-plugin", max_invocations=50)
    gateway = GatewayProcess(workdir, CONFIG).start()
    try:
        gateway.wait_ready()
        wait_for(lambda: all(p["ready"] >= 1 for p in gateway.health()["plugins"].values()),
                 120, "warm plugin workers")
        yield gateway
    finally:
        gateway.stop()
        leftovers = gateway.containers()
        assert leftovers == [], f"gateway left containers behind: {leftovers}\n{gateway.log()}"


def invoke(gw: GatewayProcess, tenant: str, name: str, inputs: dict[str, Any],
           **body: Any) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKENS[tenant]}"}
    with httpx.Client(base_url=gw.url, timeout=60, headers=headers) as http, \
            http.stream("POST", f"/api/v1/plugins/{name}/invoke",
                        json={"input": inputs, **body}) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line]


def output(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["msg_type"] == "completed", events[-1]
    return dict(events[-1]["content"]["output"])


def worker_of(events: list[dict[str, Any]]) -> str:
    return str(events[0]["content"]["worker_id"])


def containers(gw: GatewayProcess, worker_id: str) -> list[dict[str, Any]]:
    client = docker.APIClient()
    try:
        return list(client.containers(all=True, filters={"label": [
            f"org.sandcell.gateway={gw.gateway_id}", f"org.sandcell.worker={worker_id}"]}))
    finally:
        client.close()


def wait_until_removed(gw: GatewayProcess, worker_id: str) -> None:
    wait_for(lambda: not containers(gw, worker_id), 30, f"{worker_id} removed")


def test_per_tenant_a_worker_never_serves_another_tenant(gw: GatewayProcess) -> None:
    alice_secret, bob_secret = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"
    seen: dict[str, set[str]] = {"alice": set(), "bob": set()}
    for round_ in range(3):
        for tenant, secret in (("alice", alice_secret), ("bob", bob_secret)):
            events = invoke(gw, tenant, MEMO, {"remember": f"{secret}-{round_}"})
            out = output(events)
            seen[tenant].add(out["host"])
            # only this tenant's values live in the worker process that served it
            assert all(value.startswith(secret) for value in out["remembered"]), out
            assert out["remembered"][-1] == f"{secret}-{round_}"
            assert out["calls"] == round_ + 1  # one process served this tenant's calls
            assert events[0]["content"]["reused"] is (round_ > 0)
    assert len(seen["alice"]) == len(seen["bob"]) == 1 and not seen["alice"] & seen["bob"]


def test_a_shared_worker_serves_many_calls_in_turn(gw: GatewayProcess) -> None:
    served = [invoke(gw, tenant, SHARED, {"operand1": 10, "operand2": n})
              for n, tenant in enumerate(["alice", "bob"] * 4)]
    assert [output(events)["result"] for events in served] == [10.0 - n for n in range(8)]
    assert len({worker_of(events) for events in served}) == 1  # one worker, every caller


@pytest.mark.parametrize(("inputs", "code"), [({"mode": "crash"}, "worker_crashed"),
                                              ({"mode": "sleep", "seconds": 60}, "timeout")])
def test_a_reused_worker_is_recycled_at_once_after_a_crash_or_a_timeout(
        gw: GatewayProcess, inputs: dict[str, Any], code: str) -> None:
    ok = invoke(gw, "alice", CRASHY, {"mode": "steps", "steps": 1})
    worker = worker_of(ok)
    failed = invoke(gw, "alice", CRASHY, inputs, timeout=1.0)
    assert worker_of(failed) == worker  # the idle worker took the call...
    assert failed[-1]["msg_type"] == "failed" and failed[-1]["content"]["code"] == code
    wait_until_removed(gw, worker)  # ...and is gone after it
    after = invoke(gw, "alice", CRASHY, {"mode": "steps", "steps": 1})
    assert worker_of(after) != worker and output(after) == {"steps": 1}


def test_a_worker_failing_its_health_check_gives_the_caller_a_fresh_one(gw: GatewayProcess) -> None:
    first = invoke(gw, "bob", CRASHY, {"mode": "steps", "steps": 1})
    worker = worker_of(first)
    (container,) = containers(gw, worker)
    client = docker.APIClient()
    try:
        client.pause(container["Id"])  # alive, so no exit event: only Health can tell
    finally:
        client.close()
    after = invoke(gw, "bob", CRASHY, {"mode": "steps", "steps": 1})
    assert output(after) == {"steps": 1}  # no error for the caller
    assert worker_of(after) != worker and after[0]["content"]["reused"] is False
    wait_until_removed(gw, worker)


def test_calls_at_once_each_get_their_own_worker(gw: GatewayProcess) -> None:
    def one(steps: int) -> list[dict[str, Any]]:  # long enough that the three overlap
        return invoke(gw, "alice", CRASHY, {"mode": "sleep", "seconds": 2, "steps": steps})

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, range(1, 4)))
    assert [output(r)["steps"] for r in results] == [1, 2, 3]
    assert len({worker_of(r) for r in results}) == 3  # none waited behind another
    # and the pool kept them: the next three at once are served by the same workers
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        again = list(pool.map(one, range(1, 4)))
    assert {worker_of(r) for r in again} == {worker_of(r) for r in results}
