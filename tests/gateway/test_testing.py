"""The test harness itself: a gateway that fails to start or to stop leaves no process behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandcell_gateway.testing import GatewayProcess


class SilentGateway(GatewayProcess):
    """A "gateway" that never writes its runtime file, as one stuck in start-up."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(600)"]


def test_a_start_timeout_ends_the_process(tmp_path: Path) -> None:
    gateway = SilentGateway(tmp_path)
    with pytest.raises(TimeoutError):
        gateway.start(timeout=1)
    assert gateway.process is not None and gateway.process.poll() is not None
    assert gateway.stop() == gateway.process.returncode  # stopping again is harmless


def test_stop_before_start_is_harmless(tmp_path: Path) -> None:
    assert GatewayProcess(tmp_path).stop() == 0


class StubbornGateway(GatewayProcess):
    """Announces itself, then ignores SIGTERM, as a gateway whose shutdown hangs."""

    def command(self) -> list[str]:
        announce = {"url": "http://127.0.0.1:9"}
        script = ("import pathlib, signal, sys, time\n"
                  "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                  "runtime = pathlib.Path(sys.argv[1])\n"
                  "runtime.mkdir(parents=True, exist_ok=True)\n"
                  f"(runtime / 'gateway-stub.json').write_text({json.dumps(announce)!r})\n"
                  "time.sleep(600)")
        return [sys.executable, "-c", script, str(self.runtime_dir)]


def test_a_stop_timeout_kills_the_process(tmp_path: Path) -> None:
    gateway = StubbornGateway(tmp_path).start(timeout=30)
    assert gateway.process is not None
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            gateway.stop(timeout=1)
        assert gateway.process.poll() is not None
    finally:  # this test's own process never outlives it, even when stop() is broken
        gateway.process.kill()
        gateway.process.wait()
