"""The test harness itself: a gateway that fails to start leaves no process behind."""

from __future__ import annotations

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
