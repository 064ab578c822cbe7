"""Run the example notebooks under nbval against a real gateway started here.

The notebooks call ``sandcell.Client()`` with no arguments, as a user would: it finds the
gateway through its runtime file. So before nbval starts the first notebook's kernel (which
inherits ``os.environ``), this starts a gateway, points ``SANDCELL_RUNTIME_DIR`` at its runtime
directory and removes ``SANDCELL_URL``/``SANDCELL_TOKEN``; the session's end stops the gateway
and puts the three variables back as they were. Nothing starts unless a notebook cell is
actually run.

Defaults, so that ``pytest`` (with ``notebooks`` in ``testpaths``) or ``pytest notebooks`` just
works: ``--nbval`` (outputs compared, after ``sanitize.cfg`` masks ids, URLs, paths and
timings) unless ``--nbval-lax`` is given, and ``--nbval-current-env`` (the kernel runs in this
environment, the one with the SDK under test).
"""

from __future__ import annotations

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
_environ = pytest.MonkeyPatch()  # what the notebooks' kernels see, undone at the session's end


def _start_gateway() -> GatewayProcess:
    global _gateway, _workdir
    ensure_images(["python", "plugin-python", "plugin-java"])  # plugins.ipynb
    _workdir = tempfile.TemporaryDirectory(prefix="sandcell-notebooks-")
    # start() ends the process itself if it fails; once it returns, the session's end stops it
    _gateway = GatewayProcess(Path(_workdir.name), CONFIG).start()
    _gateway.wait_ready()
    _environ.setenv("SANDCELL_RUNTIME_DIR", str(_gateway.runtime_dir))
    _environ.delenv("SANDCELL_URL", raising=False)
    _environ.delenv("SANDCELL_TOKEN", raising=False)
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
    gateway, workdir, _gateway, _workdir = _gateway, _workdir, None, None
    try:
        if gateway is not None:
            gateway.stop()  # kills it, and raises, if it does not stop
            leftovers = gateway.containers()
            assert leftovers == [], f"the notebooks' gateway left containers behind: {leftovers}"
    finally:
        _environ.undo()
        if workdir is not None:
            workdir.cleanup()
