"""A real gateway (subprocess) on real Docker, shared by the integration tests.

CI has Docker and builds the images first; nothing here skips.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import httpx
import pytest

from sandcell_gateway.imagebuild import ensure_images

TEST_CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
sandbox_ttl = 600
claim_timeout = 60

[templates.python]
min_ready = 2
max_total = 8

[templates.tiny]
min_ready = 1
max_total = 1
claim_timeout = 2
"""


@dataclasses.dataclass
class Gateway:
    url: str
    token: str
    gateway_id: str
    runtime_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                            timeout=60)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/api/v1/health", timeout=10).json()

    def containers(self) -> list:
        client = docker.from_env()
        try:
            return client.containers.list(
                all=True, filters={"label": f"org.sandcell.gateway={self.gateway_id}"})
        finally:
            client.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # poll interval
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_gateway(tmp: Path, config_text: str | None = None) -> Gateway:
    gateway_id = f"sandcell-test-{secrets.token_hex(4)}"
    config = tmp / "sandcell.toml"
    config.write_text((config_text or TEST_CONFIG).format(gateway_id=gateway_id))
    runtime_dir = tmp / "runtime"
    token = secrets.token_urlsafe(16)
    env = {**os.environ, "SANDCELL_TOKEN": token, "SANDCELL_RUNTIME_DIR": str(runtime_dir)}
    log_path = tmp / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sandcell_gateway.cli", "serve", "--port", "0",
             "--config", str(config), "--no-build"], env=env, stdout=log, stderr=subprocess.STDOUT)
    files = wait_for(lambda: list(runtime_dir.glob("gateway-*.json")) or process.poll() is not None,
                     60, "the gateway's runtime file")
    if process.poll() is not None:
        raise AssertionError(f"gateway exited:\n{log_path.read_text()}")
    info = json.loads(files[0].read_text())  # type: ignore[index]
    return Gateway(info["url"], token, gateway_id, runtime_dir, process, log_path)


def stop_gateway(gateway: Gateway) -> None:
    gateway.process.send_signal(signal.SIGTERM)
    gateway.process.wait(timeout=60)


def wait_ready(gateway: Gateway, template: str = "python", count: int | None = None) -> None:
    def ready() -> bool:
        pool = gateway.health()["pools"][template]
        return pool["ready"] >= (pool["min_ready"] if count is None else count)

    wait_for(ready, 120, f"{template} pool to fill")


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    ensure_images(["python"])
    gw = start_gateway(tmp_path_factory.mktemp("gateway"))
    try:
        wait_ready(gw)
        yield gw
    finally:
        stop_gateway(gw)
        leftovers = gw.containers()
        assert leftovers == [], f"gateway left containers behind: {leftovers}\n{gw.log()}"


@pytest.fixture
def client(gateway: Gateway) -> Iterator["sandcell.Client"]:  # noqa: F821
    import sandcell

    with sandcell.Client(base_url=gateway.url, token=gateway.token) as c:
        yield c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
