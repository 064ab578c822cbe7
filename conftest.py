"""The whole test session (tests/ and notebooks/) runs with a home of its own, and fails if
anything still wrote into the user's real one.

Tests write only to temporary directories. Fixtures pass their own dirs (``GatewayProcess``
sets ``XDG_DATA_HOME``, unit tests pass ``store_path``). But a default path is easy to hit:
a config without ``store_path``, an SDK client's runtime dir, IPython's profile, Jupyter's
runtime files. So before any test runs, ``HOME`` and the XDG base dirs point at a fresh
temporary directory, and every subprocess (gateways, nbval's kernels, scripts) inherits it.
Then, when the session ends, two checks fail it:

* anything new or changed in the real home's application trees (:data:`WATCHED`), and any
  new entry directly in the real home or its XDG parents (:data:`PARENTS`). Something wrote
  there although ``HOME`` was redirected (a path built from ``pwd``, a hard-coded one);
* any file in the session home's own Sandcell trees (:data:`OWN_TREES`). A test started a
  gateway or a store without a temporary directory of its own, so it would write into a
  developer's home when run another way.

The real home is not walked whole: other programs (editors, shells, agents) write there while
the tests run, so only the places this project and its Jupyter stack would use are watched.

Every async test and fixture also runs on one event loop for the session (see
:func:`one_event_loop`: grpc.aio cannot follow a closed loop).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import site
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Application trees under the real home: every file in them is compared, start to end.
WATCHED = (".local/share/sandcell", ".config/sandcell", ".cache/sandcell",
           ".local/state/sandcell", ".local/share/jupyter", ".jupyter", ".ipython",
           ".cache/matplotlib", ".config/matplotlib")
# Directories in which a new entry (a new app dir, a stray file) is a write into the home.
PARENTS = ("", ".cache", ".config", ".local", ".local/share", ".local/state")
# In the session's home: our own defaults, which tests must never fall back on. The wheel
# cache (.cache/sandcell) is not one: ensure_images fills it if the images are missing.
OWN_TREES = (".local/share/sandcell", ".config/sandcell", ".local/state/sandcell")
XDG = {"XDG_DATA_HOME": ".local/share", "XDG_CONFIG_HOME": ".config",
       "XDG_CACHE_HOME": ".cache", "XDG_STATE_HOME": ".local/state"}
# Explicit locations that would bypass HOME: unset, so they derive from the session home.
DERIVED = ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
           "MPLCONFIGDIR", "SANDCELL_RUNTIME_DIR")

Snapshot = tuple[dict[str, tuple[int, int]], set[str]]

_real_home: Path | None = None
_session_home: Path | None = None
_before: Snapshot | None = None
_found: list[str] = []


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every async test and fixture runs on asyncio, on the one loop of :func:`one_event_loop`."""
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
async def one_event_loop(anyio_backend: str) -> AsyncIterator[asyncio.AbstractEventLoop]:
    """One event loop for the whole session: AnyIO keeps its loop while an async fixture holds
    it, and this one does from the first test to the last.

    grpc.aio needs it. Its completion queue is one per process, alive while any aio channel or
    server is, and every loop that ever used grpc.aio reads it. An event of an RPC started on a
    loop is posted back to that loop, from whichever loop reads it: if that loop was closed (a
    channel cancelled its calls as a module ended, their last events came after its last turn),
    the reader raises "Event loop is closed" into a test that only began to use grpc.aio."""
    yield asyncio.get_running_loop()


def snapshot(home: Path) -> Snapshot:
    """(file -> (mtime, size)) under :data:`WATCHED`, and the entries of :data:`PARENTS`."""
    files: dict[str, tuple[int, int]] = {}
    for tree in WATCHED:
        for root, _, names in os.walk(home / tree):
            for name in names:
                path = Path(root, name)
                try:
                    info = path.lstat()
                except FileNotFoundError:  # removed while we walked
                    continue
                files[str(path)] = (info.st_mtime_ns, info.st_size)
    entries = {str(home / parent / name) for parent in PARENTS
               for name in _listdir(home / parent)}
    return files, entries


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def home_writes(before: Snapshot, after: Snapshot) -> list[str]:
    """What appeared or changed between two snapshots, sorted."""
    (files_before, entries_before), (files_after, entries_after) = before, after
    changed = {path for path, stamp in files_after.items() if files_before.get(path) != stamp}
    return sorted(changed | (entries_after - entries_before))


def own_tree_files(home: Path) -> list[str]:
    return sorted(str(Path(root, name)) for tree in OWN_TREES
                  for root, _, names in os.walk(home / tree) for name in names)


def redirect_home(real: Path, session: Path) -> None:
    """Point HOME and the XDG dirs at ``session``; keep the tools that live in the real home
    (pyenv's interpreters, a user-site install, Docker's client config, pip's download cache)
    where they are."""
    pip_cache = os.environ.get("PIP_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or real / ".cache") / "pip")
    os.environ["HOME"] = str(session)
    for name, relative in XDG.items():
        os.environ[name] = str(session / relative)
    for name in DERIVED:
        os.environ.pop(name, None)
    if (real / ".pyenv").is_dir():  # pyenv's shims find their versions from PYENV_ROOT
        os.environ.setdefault("PYENV_ROOT", str(real / ".pyenv"))
    if site.ENABLE_USER_SITE and site.USER_BASE and Path(site.USER_BASE).is_dir():
        os.environ.setdefault("PYTHONUSERBASE", site.USER_BASE)  # deps pip-installed --user
    if Path(pip_cache).is_dir():  # the venvs of tests/integration/test_packaging.py install
        os.environ.setdefault("PIP_CACHE_DIR", pip_cache)  # from PyPI: download each wheel once
    if (real / ".docker").is_dir():  # its contexts and credential helpers; not watched, so
        os.environ.setdefault("DOCKER_CONFIG", str(real / ".docker"))  # its own writes pass


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _real_home, _session_home, _before
    _real_home = Path(os.path.expanduser("~")).resolve()
    _before = snapshot(_real_home)
    _session_home = Path(tempfile.mkdtemp(prefix="sandcell-test-home-"))
    redirect_home(_real_home, _session_home)


@pytest.hookimpl(trylast=True)  # after the notebooks' gateway and every fixture stopped
def pytest_sessionfinish(session: pytest.Session) -> None:
    if _real_home is None or _before is None or _session_home is None:
        return
    _found[:] = [f"{path}  (the real home)" for path in home_writes(_before, snapshot(_real_home))]
    _found.extend(f"{path}  (a default path: give the test a temporary dir)"
                  for path in own_tree_files(_session_home))
    if _found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _found:
        terminalreporter.section("files written into $HOME", red=True)
        terminalreporter.line("The test run wrote into the user's home; tests must write only "
                              "to temporary directories (see conftest.py):", red=True)
        for line in _found:
            terminalreporter.line(f"  {line}", red=True)
        terminalreporter.line("(On a shared machine, another user's process with the same home "
                              "may have written a real-home entry: check its time.)")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _session_home is not None:
        shutil.rmtree(_session_home, ignore_errors=True)
