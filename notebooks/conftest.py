"""Run the example notebooks under nbval against a real gateway started here.

The notebooks call ``sandcell.Client()`` with no arguments, as a user would: it finds the
gateway through its runtime file. So before nbval starts the first notebook's kernel (which
inherits ``os.environ``), this starts a gateway, points ``SANDCELL_RUNTIME_DIR`` at its runtime
directory and removes ``SANDCELL_URL``/``SANDCELL_TOKEN``. Nothing starts unless a notebook
cell is actually run.

Defaults, so that ``pytest`` (with ``notebooks`` in ``testpaths``) or ``pytest notebooks`` just
works: ``--nbval`` (outputs compared, after ``sanitize.cfg`` masks ids, URLs, paths and
timings) unless ``--nbval-lax`` is given, and ``--nbval-current-env`` (the kernel runs in this
environment, the one with the SDK under test).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
sandbox_ttl = 600

[templates.python]
min_ready = 2
max_total = 6

[plugins]
min_ready = 1
max_total = 2
"""

SANITIZE = Path(__file__).with_name("sanitize.cfg")

_gateway: GatewayProcess | None = None
_workdir: tempfile.TemporaryDirectory[str] | None = None


def _start_gateway() -> GatewayProcess:
    global _gateway, _workdir
    ensure_images(["python", "plugin-python", "plugin-java"])  # plugins.ipynb
    _workdir = tempfile.TemporaryDirectory(prefix="sandcell-notebooks-")
    _gateway = GatewayProcess(Path(_workdir.name), CONFIG).start()
    _gateway.wait_ready()
    os.environ["SANDCELL_RUNTIME_DIR"] = str(_gateway.runtime_dir)
    os.environ.pop("SANDCELL_URL", None)
    os.environ.pop("SANDCELL_TOKEN", None)
    return _gateway


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("nbval"):
        return  # nbval not installed: the notebooks are simply not collected
    option = config.option
    if not (option.nbval or option.nbval_lax):
        option.nbval = True
    option.nbval_current_env = True
    if option.nbval_sanitize_with is None:
        option.nbval_sanitize_with = str(SANITIZE)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: before nbval's IPyNbFile.setup() starts the notebook's kernel
    if _gateway is None and item.path.suffix == ".ipynb":
        _start_gateway()


def pytest_sessionfinish(session: pytest.Session) -> None:
    global _gateway, _workdir
    if _gateway is not None:
        _gateway.stop()
        leftovers = _gateway.containers()
        _gateway = None
        assert leftovers == [], f"the notebooks' gateway left containers behind: {leftovers}"
    if _workdir is not None:
        _workdir.cleanup()
        _workdir = None
