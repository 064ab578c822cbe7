"""The [plugins] bounds on what a worker sends, changed from their defaults, on real Docker
workers over real gRPC: a gateway of this module's own, with only the test plugin."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess, wait_for

from .conftest import TEST_PLUGIN

pytestmark = pytest.mark.docker

RATE = 5.0
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"

[templates.python]
min_ready = 0
max_total = 1

[plugins]
dir = "no-seed-plugins"          # none: only the test plugin below
paths = ["{TEST_PLUGIN}"]
min_ready = 1
max_total = 2
max_worker_message_bytes = {8 << 20}  # default 4 MiB: "shout" (5 MiB) would fail
max_output_bytes = {2 << 20}          # default 64 MiB: "big" (3 MiB) would pass
max_events_per_second = {RATE}        # default 50
"""
PLUGIN = "sandcell_test_plugin"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    ensure_images(["python", "plugin-python"])
    gateway = GatewayProcess(tmp_path_factory.mktemp("plugin-limits"), CONFIG).start()
    try:
        gateway.wait_ready()
        wait_for(lambda: gateway.health()["plugins"][PLUGIN]["ready"] >= 1, 120,
                 "a warm test plugin worker")
        yield gateway
    finally:
        gateway.stop()
        leftovers = gateway.containers()
        assert leftovers == [], f"gateway left containers behind: {leftovers}\n{gateway.log()}"


def invoke(gw: GatewayProcess, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    with gw.http() as http, http.stream("POST", f"/api/v1/plugins/{PLUGIN}/invoke",
                                        json={"input": inputs}) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line]


def test_a_message_under_a_raised_receive_limit_passes(gw: GatewayProcess) -> None:
    got = invoke(gw, {"mode": "shout"})  # one 5 MiB progress message
    assert got[-1]["msg_type"] == "completed", got[-1]
    sizes = [len(e["content"]["message"]) for e in got if e["msg_type"] == "progress"]
    assert 5 << 20 in sizes, sizes  # the message came through whole (then its 3 steps)


def test_an_output_over_a_lowered_cap_fails_clearly(gw: GatewayProcess) -> None:
    got = invoke(gw, {"mode": "big"})  # 3 MiB of output, in 1 MiB result chunks
    assert got[-1]["msg_type"] == "failed", got[-1]
    assert got[-1]["content"]["code"] == "output_too_large"
    assert f"over {2 << 20} bytes ([plugins] max_output_bytes)" in got[-1]["content"]["message"]


def test_progress_past_a_lowered_rate_is_dropped(gw: GatewayProcess) -> None:
    started = time.monotonic()
    got = invoke(gw, {"mode": "flood"})  # 5000 progress events as fast as it can
    took = time.monotonic() - started
    progress = sum(1 for e in got if e["msg_type"] == "progress")
    assert 2 * RATE <= progress <= 2 * RATE + RATE * (took + 1), (progress, took)
    assert got[-1]["msg_type"] == "completed" and got[-1]["content"]["output"] == {"steps": 5000}
