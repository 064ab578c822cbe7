"""The tests test this checkout: its packages come first on ``sys.path``, and the gateway
subprocesses they start run the same code (pyproject's ``pythonpath``, testing.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_the_package_data_of_a_checkout_is_its_top_level_directories(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway finds its recipes and seed plugins next to its modules (package data, as in
    a wheel); in a checkout those are symlinks to the top-level directories."""
    from sandcell_gateway.config import default_plugins_dir
    from sandcell_gateway.imagebuild import IMAGES_DIR_ENV, images_dir, load_recipes

    monkeypatch.delenv(IMAGES_DIR_ENV, raising=False)
    assert images_dir().samefile(CHECKOUT / "sandbox_images")
    assert default_plugins_dir().samefile(CHECKOUT / "plugins")
    assert (Path(sandcell_gateway.__file__).parent / "proto").samefile(CHECKOUT / "proto")
    assert {"base", "python", "plugin-python", "plugin-java"} <= set(load_recipes())
