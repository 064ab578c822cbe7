"""The tests test this checkout: its packages come first on ``sys.path``, and the gateway
subprocesses they start run the same code (pyproject's ``pythonpath``, testing.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sandcell
import sandcell_gateway
from sandcell_gateway.testing import GatewayProcess

CHECKOUT = Path(__file__).resolve().parents[2]


def test_the_packages_under_test_are_this_checkouts() -> None:
    assert Path(sandcell_gateway.__file__).resolve().is_relative_to(CHECKOUT / "kernel_gateway")
    assert Path(sandcell.__file__).resolve().is_relative_to(CHECKOUT / "sdk")


def test_a_gateway_subprocess_imports_this_checkouts_gateway(tmp_path: Path) -> None:
    env = GatewayProcess(tmp_path).environment()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(CHECKOUT / "kernel_gateway")
    # the same interpreter, the same environment, started elsewhere: which package does it see?
    where = subprocess.run([sys.executable, "-c", "import sandcell_gateway; "
                            "print(sandcell_gateway.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(CHECKOUT / "kernel_gateway"), where
