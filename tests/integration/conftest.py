"""A real gateway (subprocess) on real Docker, shared by the integration tests.

CI has Docker and builds the images first; nothing here skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sandcell
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess, wait_for

__all__ = ["Gateway", "start_gateway", "wait_for"]

Gateway = GatewayProcess
# A plugin that misbehaves on request (crash, hang, bad output), next to the seed plugins.
TESTDATA = Path(__file__).resolve().parents[1] / "plugins" / "testdata"
TEST_PLUGIN = TESTDATA / "sandcell_test_plugin"
# A per_tenant plugin whose workers serve two calls each ("max_invocations": 2).
REUSE_PLUGIN = TESTDATA / "sandcell_reuse_plugin"
# Sleeps or crashes on request in Java (compiled into the Java worker image).
JAVA_TEST_PLUGIN = TESTDATA / "sandcell_java_test_plugin"

TEST_CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
sandbox_ttl = 600
claim_timeout = 60
websocket_max_message_size = 2097152

[templates.python]
min_ready = 2
max_total = 8

[templates.tiny]
min_ready = 1
max_total = 1
claim_timeout = 2

[plugins]
paths = ["{test_plugin}", "{reuse_plugin}", "{java_test_plugin}"]
min_ready = 1
max_total = 4
""".replace("{test_plugin}", str(TEST_PLUGIN)).replace("{reuse_plugin}", str(REUSE_PLUGIN)).replace(
    "{java_test_plugin}", str(JAVA_TEST_PLUGIN))


def start_gateway(workdir: Path) -> GatewayProcess:
    return GatewayProcess(workdir, TEST_CONFIG).start()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    ensure_images(["python", "plugin-python", "plugin-java"])
    gw = start_gateway(tmp_path_factory.mktemp("gateway"))
    try:
        gw.wait_ready()
        yield gw
    finally:
        gw.stop()
        leftovers = gw.containers()
        assert leftovers == [], f"gateway left containers behind: {leftovers}\n{gw.log()}"


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[sandcell.Client]:
    with sandcell.Client(base_url=gateway.url, token=gateway.token) as c:
        yield c
