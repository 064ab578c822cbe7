"""The plugin runtime on real Docker and real gRPC: the seed plugin, the calculator API,
progress, schema errors, crashes, timeouts, disconnects, concurrency and cleanup."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from typing import Any

import docker
import httpx
import pytest

from .conftest import Gateway, wait_for

pytestmark = pytest.mark.docker

TEST_PLUGIN = "sandcell_test_plugin"
REUSE_PLUGIN = "sandcell_reuse_plugin"
JAVA_TEST_PLUGIN = "sandcell_java_test_plugin"


def invoke(gw: Gateway, name: str, inputs: dict[str, Any], **body: Any) -> list[dict[str, Any]]:
    with gw.http() as http, http.stream("POST", f"/api/v1/plugins/{name}/invoke",
                                        json={"input": inputs, **body}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in response.iter_lines() if line]


def plugin_containers(gw: Gateway, **labels: str) -> list[dict[str, Any]]:
    filters = [f"org.sandcell.gateway={gw.gateway_id}", "org.sandcell.plugin"]
    filters += [f"org.sandcell.{key}={value}" for key, value in labels.items()]
    client = docker.APIClient()
    try:
        return list(client.containers(all=True, filters={"label": filters}))
    finally:
        client.close()


def wait_until_removed(gw: Gateway, worker_id: str) -> None:
    wait_for(lambda: not plugin_containers(gw, worker=worker_id), 30, f"{worker_id} removed")


def pools_ready(gw: Gateway) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        with gw.http() as http:
            plugins = {p["name"]: p for p in http.get("/api/v1/plugins").json()["plugins"]}
        # idle workers (kept for a next call) may fill max_total: they serve as well
        return plugins if all(p["pool"]["ready"] + p["pool"]["idle"] >= 1
                              for p in plugins.values()) else None

    try:
        return wait_for(ready, 120, "warm plugin workers")
    except TimeoutError as exc:
        with gw.http() as http:
            raise AssertionError(f"{exc}: {http.get('/api/v1/plugins').json()}\n{gw.log()[-3000:]}")


def pools_quiet(gw: Gateway) -> None:
    """Wait until no plugin pool has a start queued or under way, nor a gap below its target
    still to fill: from then on only a claim (or a worker's end) starts a container.
    ``pools_ready`` is not enough for that: an idle worker counts as ready there while its
    pool's refill may still wait for one of the launch slots all plugin pools share."""
    def quiet() -> bool:
        with gw.http() as http:
            pools = [p["pool"] for p in http.get("/api/v1/plugins").json()["plugins"]]
        return all(p["starting"] == 0 and (p["ready"] >= p["target"] or p["ready"] + p["idle"]
                                           + p["claimed"] >= p["max_total"]) for p in pools)

    wait_for(quiet, 120, "no plugin worker starting")


@pytest.fixture(autouse=True)
def warm(gateway: Gateway) -> None:
    pools_ready(gateway)


def test_registry_lists_manifests_with_schemas_and_versions(gateway: Gateway) -> None:
    with gateway.http() as http:
        listed = http.get("/api/v1/plugins").json()["plugins"]
        one = http.get("/api/v1/plugins/subtract_numbers").json()
        missing = http.get("/api/v1/plugins/nope")
    assert [p["name"] for p in listed] == ["add_numbers", "multiply_numbers", JAVA_TEST_PLUGIN,
                                           REUSE_PLUGIN, TEST_PLUGIN, "subtract_numbers"]
    assert {p["name"]: p["language"] for p in listed}["add_numbers"] == "java"
    assert one["version"] == "1.0.0" and one["versions"] == ["1.0.0"]
    assert one["language"] == "python" and one["isolation"] == "shared"
    assert (one["max_invocations"], one["max_age"]) == (1000, 300)
    assert one["input_schema"]["required"] == ["operand1", "operand2"]
    assert one["output_schema"]["required"] == ["result", "operation", "operand1", "operand2"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("operation", "result"), [("add", 15.0), ("multiply", 50.0),
                                                    ("subtract", 5.0)])
def test_calculator_is_the_original_api(gateway: Gateway, operation: str, result: float) -> None:
    with gateway.http() as http:
        response = http.post(f"/api/v1/calculate/{operation}", json={"operand1": 10, "operand2": 5})
    assert response.status_code == 200, response.text
    assert response.json() == {"result": result, "operation": operation,
                               "operand1": 10.0, "operand2": 5.0}


def test_calculator_rejects_unknown_operations_and_bad_operands(gateway: Gateway) -> None:
    with gateway.http() as http:
        unknown = http.post("/api/v1/calculate/divide", json={"operand1": 10, "operand2": 5})
        bad = http.post("/api/v1/calculate/add", json={"operand1": "ten", "operand2": 5})
    assert unknown.status_code == 404
    assert bad.status_code == 400 and bad.json()["error"]["fields"] == [
        {"field": "operand1", "message": "'ten' is not of type 'number'"}]


@pytest.mark.parametrize("name", ["add_numbers", "subtract_numbers"])
def test_both_languages_stream_progress_then_the_result(gateway: Gateway, name: str) -> None:
    events = invoke(gateway, name, {"operand1": 2, "operand2": 3})
    assert [e["msg_type"] for e in events] == ["started", "progress", "progress", "completed"]
    assert [e["content"]["percent"] for e in events[1:3]] == [0.0, 100.0]
    assert events[-1]["content"]["output"]["operand2"] == 3.0
    again = invoke(gateway, name, {"operand1": 2, "operand2": 4})  # shared: kept, served next
    assert again[0]["content"]["worker_id"] == events[0]["content"]["worker_id"]


def test_invoke_streams_progress_in_order_then_the_result(gateway: Gateway) -> None:
    events = invoke(gateway, TEST_PLUGIN, {"mode": "steps", "steps": 4})
    kinds = [e["msg_type"] for e in events]
    assert kinds == ["started"] + ["log", "progress"] * 4 + ["completed"]
    assert [e["seq"] for e in events] == list(range(len(events)))
    percents = [e["content"]["percent"] for e in events if e["msg_type"] == "progress"]
    assert percents == [25.0, 50.0, 75.0, 100.0]
    assert events[-1]["content"] == {"output": {"steps": 4}}


def test_invalid_input_is_400_with_fields_and_touches_no_worker(gateway: Gateway) -> None:
    pools_quiet(gateway)  # else a refill of an earlier test's pool may start one meanwhile
    before = {c["Id"] for c in plugin_containers(gateway)}
    with gateway.http() as http:
        bad = http.post("/api/v1/plugins/subtract_numbers/invoke",
                        json={"input": {"operand1": "ten", "extra": 1}})
        calc = http.post("/api/v1/calculate/subtract", json={"operand2": 5})
        unknown = http.post("/api/v1/plugins/nope/invoke", json={"input": {}})
        stats = http.get("/api/v1/plugins/subtract_numbers").json()["pool"]
    error = bad.json()["error"]
    assert bad.status_code == 400 and error["code"] == "invalid_input"
    assert [f["field"] for f in error["fields"]] == ["extra", "operand1", "operand2"]
    assert calc.status_code == 400 and calc.json()["error"]["fields"] == [
        {"field": "operand1", "message": "required"}]
    assert unknown.status_code == 404
    assert stats["claimed"] == 0
    assert {c["Id"] for c in plugin_containers(gateway)} == before


@pytest.mark.parametrize("name", [TEST_PLUGIN, JAVA_TEST_PLUGIN])
def test_a_worker_crash_is_a_clear_failure_and_the_worker_is_removed(gateway: Gateway,
                                                                     name: str) -> None:
    events = invoke(gateway, name, {"mode": "crash"})
    assert [e["msg_type"] for e in events] == ["started", "progress", "failed"]
    failure = events[-1]["content"]
    assert failure["code"] == "worker_crashed"
    assert "exited with code 3" in failure["message"] and "removed" in failure["message"]
    wait_until_removed(gateway, events[0]["content"]["worker_id"])


@pytest.mark.parametrize("name", [TEST_PLUGIN, JAVA_TEST_PLUGIN])
def test_a_worker_killed_mid_invoke_is_a_clear_failure(gateway: Gateway, name: str) -> None:
    with gateway.http() as http, http.stream(
            "POST", f"/api/v1/plugins/{name}/invoke",
            json={"input": {"mode": "sleep", "seconds": 120}}) as response:
        lines = (json.loads(line) for line in response.iter_lines() if line)
        started = next(lines)
        assert next(lines)["msg_type"] == "progress"  # the plugin is running
        worker = started["content"]["worker_id"]
        (container,) = plugin_containers(gateway, worker=worker)
        client = docker.APIClient()
        try:
            client.kill(container["Id"])  # from outside, as the OOM killer or an operator would
        finally:
            client.close()
        rest = list(lines)
    assert [e["msg_type"] for e in rest] == ["failed"]
    failure = rest[0]["content"]
    assert failure["code"] == "worker_crashed"
    assert "killed by signal 9" in failure["message"] and "removed" in failure["message"]
    wait_until_removed(gateway, worker)


def test_plugin_errors_and_bad_output_are_failed_events(gateway: Gateway) -> None:
    failed = invoke(gateway, TEST_PLUGIN, {"mode": "fail"})[-1]
    bad = invoke(gateway, TEST_PLUGIN, {"mode": "bad_output"})[-1]
    assert failed["content"] == {"code": "asked_to_fail", "message": "asked to fail",
                                 "details": "mode=fail"}
    assert bad["msg_type"] == "failed" and bad["content"]["code"] == "invalid_output"
    assert "steps" in bad["content"]["message"]


def test_large_outputs_travel_as_chunks(gateway: Gateway) -> None:
    output = invoke(gateway, TEST_PLUGIN, {"mode": "big"})[-1]["content"]["output"]
    assert len(output["blob"]) == 3 << 20


@pytest.mark.parametrize("name", [TEST_PLUGIN, JAVA_TEST_PLUGIN])
def test_timeout_fails_the_call_and_kills_the_worker(gateway: Gateway, name: str) -> None:
    events = invoke(gateway, name, {"mode": "sleep", "seconds": 60}, timeout=1)
    assert events[0]["content"]["timeout"] == 1
    assert [e["msg_type"] for e in events] == ["started", "progress", "failed"]
    assert events[-1]["content"]["code"] == "timeout"
    assert "did not finish within 1s" in events[-1]["content"]["message"]
    wait_until_removed(gateway, events[0]["content"]["worker_id"])


def test_a_client_that_disconnects_cancels_its_invocation(gateway: Gateway) -> None:
    with gateway.http() as http, http.stream(
            "POST", f"/api/v1/plugins/{TEST_PLUGIN}/invoke",
            json={"input": {"mode": "sleep", "seconds": 120}}) as response:
        lines = response.iter_lines()
        started = json.loads(next(lines))
        assert json.loads(next(lines))["msg_type"] == "progress"
    wait_until_removed(gateway, started["content"]["worker_id"])


@pytest.mark.parametrize(("name", "expected"), [
    ("subtract_numbers", [100.0, 99.0, 98.0, 97.0]), ("multiply_numbers", [0.0, 100.0, 200.0, 300.0])])
def test_concurrent_invocations_each_get_their_own_worker(gateway: Gateway, name: str,
                                                          expected: list[float]) -> None:
    def one(i: int) -> list[dict[str, Any]]:
        return invoke(gateway, name, {"operand1": 100, "operand2": i})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert [r[-1]["content"]["output"]["result"] for r in results] == expected
    # these calls are too short to be sure to overlap; test_plugin_isolation proves that
    # overlapping calls each get their own worker
    assert 1 <= len({r[0]["content"]["worker_id"] for r in results}) <= 4


@pytest.mark.parametrize("name", ["add_numbers", "subtract_numbers"])
def test_workers_are_hardened_like_sandboxes(gateway: Gateway, name: str) -> None:
    (summary,) = plugin_containers(gateway, plugin=name)[:1]
    client = docker.APIClient()
    try:
        attrs = client.inspect_container(summary["Id"])
    finally:
        client.close()
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] and host["Memory"] and not host["PortBindings"]
    assert attrs["Config"]["User"] != "0:0" and not attrs["Config"]["User"].startswith("root")
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/plugin"]["RW"] is False and mounts["/conn"]["RW"] is True


def test_no_worker_outlives_its_invocation(gateway: Gateway) -> None:
    def settled() -> bool:
        with gateway.http() as http:
            plugins = http.get("/api/v1/plugins").json()["plugins"]
        # idle: kept for their tenant's (or, shared, anyone's) next call
        pooled = sum(p["pool"]["ready"] + p["pool"]["starting"] + p["pool"]["idle"]
                     for p in plugins)
        claimed = sum(p["pool"]["claimed"] for p in plugins)
        return claimed == 0 and len(plugin_containers(gateway)) == pooled

    wait_for(settled, 60, "only pooled workers to remain")


def test_invoke_route_checks_its_body(gateway: Gateway) -> None:
    with gateway.http() as http:
        no_input = http.post("/api/v1/plugins/subtract_numbers/invoke", json={})
        not_json = http.post("/api/v1/calculate/subtract", content=b"{")
        anonymous = httpx.post(f"{gateway.url}/api/v1/calculate/subtract", json={})
    assert no_input.status_code == 400 and no_input.json()["error"]["code"] == "invalid_request"
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    assert anonymous.status_code == 401


def test_sdk_invokes_with_progress_and_typed_events(gateway: Gateway) -> None:
    import sandcell

    seen: list[float] = []
    with sandcell.Client(base_url=gateway.url, token=gateway.token) as client:
        names = [plugin.name for plugin in client.plugins.list()]
        subtract = client.plugins.get("subtract_numbers")
        output = subtract.invoke(operand1=10, operand2=5, on_progress=lambda e: seen.append(e.percent))
        add = client.plugins.get("add_numbers")
        added = add.invoke(operand1=10, operand2=5)
        stream_events = list(client.plugins.get(TEST_PLUGIN).invoke_stream(mode="steps", steps=2))
        with pytest.raises(sandcell.PluginError) as failure:
            client.plugins.invoke(TEST_PLUGIN, mode="fail", progress=False)
        with pytest.raises(sandcell.BadRequestError) as invalid:
            subtract.invoke(operand1="x", operand2=1)
    assert "subtract_numbers" in names and subtract.language == "python"
    assert output == {"result": 5.0, "operation": "subtract", "operand1": 10.0, "operand2": 5.0}
    assert seen == [0.0, 100.0]
    assert add.language == "java"
    assert added == {"result": 15.0, "operation": "add", "operand1": 10.0, "operand2": 5.0}
    assert [type(e).__name__ for e in stream_events] == [
        "StartedEvent", "LogEvent", "ProgressEvent", "LogEvent", "ProgressEvent", "CompletedEvent"]
    assert failure.value.code == "asked_to_fail"
    assert invalid.value.code == "invalid_input"


@pytest.mark.anyio
async def test_async_sdk_invokes(gateway: Gateway) -> None:
    import sandcell

    async with sandcell.AsyncClient(base_url=gateway.url, token=gateway.token) as client:
        plugin = await client.plugins.get("subtract_numbers")
        outputs = [await plugin.invoke(operand1=10, operand2=n, progress=False) for n in (1, 2)]
    assert [o["result"] for o in outputs] == [9.0, 8.0]


def test_a_reusing_plugin_serves_max_invocations_from_one_worker(gateway: Gateway) -> None:
    """Each worker counts its calls in its own process: none serves more than its
    ``max_invocations`` (2), calls in turn do reuse a worker, and a spent or failed worker is
    removed, never handed out again. Which idle worker a call gets is the pool's choice (earlier
    tests may leave several idle), so the test follows worker ids instead of assuming one."""
    pools_ready(gateway)
    calls: dict[str, list[int]] = {}
    hosts: dict[str, set[str]] = {}
    for _ in range(6):
        events = invoke(gateway, REUSE_PLUGIN, {})
        worker, output = events[0]["content"]["worker_id"], events[-1]["content"]["output"]
        calls.setdefault(worker, []).append(output["calls"])
        hosts.setdefault(worker, set()).add(output["host"])
    for worker, counted in calls.items():
        assert counted == list(range(counted[0], counted[0] + len(counted))), calls
        assert counted[-1] <= 2 and len(hosts[worker]) == 1, (calls, hosts)
    spent = [worker for worker, counted in calls.items() if counted[-1] == 2]
    assert spent, calls  # calls in turn went to a worker that had served one already
    for worker in spent:
        wait_until_removed(gateway, worker)

    failed = invoke(gateway, REUSE_PLUGIN, {"fail": True})
    assert failed[-1]["content"]["code"] == "asked_to_fail"
    broken = failed[0]["content"]["worker_id"]
    wait_until_removed(gateway, broken)  # at once, whatever calls it had left
    after = invoke(gateway, REUSE_PLUGIN, {})
    assert after[0]["content"]["worker_id"] not in (broken, *spent)


def test_a_worker_that_dies_between_calls_is_never_handed_out(gateway: Gateway) -> None:
    pools_ready(gateway)
    worker = _only_idle_reuse_worker(gateway)
    (container,) = plugin_containers(gateway, worker=worker)
    client = docker.APIClient()
    try:
        client.kill(container["Id"])  # while it waits in the pool, as an operator or a crash
    finally:
        client.close()
    wait_until_removed(gateway, worker)  # the gateway noticed and dropped it from its pool
    after = invoke(gateway, REUSE_PLUGIN, {})
    assert after[-1]["msg_type"] == "completed", after[-1]
    assert after[0]["content"]["worker_id"] != worker
    assert after[-1]["content"]["output"]["calls"] == 1


def _only_idle_reuse_worker(gateway: Gateway) -> str:
    """Call the reuse plugin until exactly one of its workers is idle, with one call left.

    Whatever earlier tests left: a call takes an idle worker first (each has one call left;
    the second is its last, so it is retired), so at most max_total (4) calls use them up.
    The first call that starts a fresh worker (its first call) proves none was left, and
    that worker goes back to the pool: the only idle one.
    """
    for _ in range(5):
        events = invoke(gateway, REUSE_PLUGIN, {})
        if events[-1]["content"]["output"]["calls"] == 1:
            return str(events[0]["content"]["worker_id"])
    raise AssertionError("no fresh worker after 5 calls: an idle worker served a third call?")


PIPED_SCRIPT = """
import sandcell
with sandcell.Client() as client:
    for n in range(3):
        print(client.plugins.get("add_numbers").invoke(operand1=n, operand2=1)["result"])
"""


def test_progress_in_a_piped_script_is_a_few_clean_lines(gateway: Gateway) -> None:
    """A script whose output goes to a pipe (a log, CI): no bar redraws, only whole lines."""
    env = {**os.environ, "SANDCELL_URL": gateway.url, "SANDCELL_TOKEN": gateway.token}
    completed = subprocess.run([sys.executable, "-c", PIPED_SCRIPT], env=env, timeout=120,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = completed.stdout.decode()
    assert completed.returncode == 0, output
    assert "\r" not in output and "\x1b" not in output, repr(output)  # no redraws, no escapes
    lines = output.splitlines()
    assert [line for line in lines if not line.startswith("add_numbers: ")] == \
        ["1.0", "2.0", "3.0"], output
    # per invocation: its 0% and its 100%, each a whole line
    assert lines.count("add_numbers: 100% done") == 3 and len(lines) <= 3 * 3, output
