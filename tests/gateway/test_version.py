"""One version, written once (sdk/sandcell/_version.py), for both distributions and the CLI."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import sandcell
import sandcell_gateway
from sandcell_gateway import cli

CHECKOUT = Path(__file__).resolve().parents[2]


def test_sandcell_version_prints_the_one_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"sandcell {sandcell.__version__}\n"


def test_the_gateway_s_version_is_the_sdk_s_file() -> None:
    assert sandcell_gateway.__version__ == sandcell.__version__
    gateway_file = CHECKOUT / "kernel_gateway" / "sandcell_gateway" / "_version.py"
    assert gateway_file.samefile(CHECKOUT / "sdk" / "sandcell" / "_version.py")


def test_both_distributions_read_their_version_from_it() -> None:
    sdk = tomllib.loads((CHECKOUT / "sdk" / "pyproject.toml").read_text())
    gateway = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    assert (sdk["project"]["name"], gateway["project"]["name"]) == ("sandcell", "sandcell-gateway")
    assert "version" in sdk["project"]["dynamic"] and "version" in gateway["project"]["dynamic"]
    assert sdk["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "sandcell._version.__version__"}
    assert gateway["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "sandcell_gateway._version.__version__"}


def test_the_gateway_requires_the_sdk_of_its_own_version() -> None:
    """pyproject cannot compute a requirement, so the pin is written out: bump it with the
    version (this test says so when they differ)."""
    gateway = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    pins = [d for d in gateway["project"]["dependencies"] if d.startswith("sandcell")]
    assert pins == [f"sandcell=={sandcell.__version__}"]


def test_the_changelog_has_an_entry_for_the_version() -> None:
    changelog = (CHECKOUT / "CHANGELOG.md").read_text()
    assert f"## {sandcell.__version__}" in changelog
