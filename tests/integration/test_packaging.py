"""The two wheels, installed as a user installs them: into a fresh venv, used outside the checkout.

The wheels of this checkout are built (``pip wheel --no-deps``, from a copy of the source tree,
so the checkout gets no ``build/``) and installed into temporary venvs from PyPI (through pip's
cache: conftest.py keeps the real one). Then, from a temporary directory:

* ``sandcell images list`` finds the recipes in the gateway's package data and sees every image
  current: the wheel's copy hashes as the checkout's recipes, from which the images were built;
* ``sandcell serve`` (a free port, its own config and state directories, no ``--no-build``)
  serves on those images without building any, and finds the seed plugins in package data;
* the venv's SDK runs a cell and a seed plugin; the gateway stops and leaves no container.

And the SDK's wheel alone installs httpx and nothing of the gateway's.

These need PyPI, not only Docker; they run with the Docker tests (CI) because the gateway's do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

import sandcell
from sandcell_gateway.testing import GatewayProcess

pytestmark = pytest.mark.docker

CHECKOUT = Path(__file__).resolve().parents[2]
# What `pip install sandcell` must not bring (distribution names, normalised).
GATEWAY_ONLY = {"tornado", "docker", "grpcio", "pyzmq", "jsonschema", "jupyter-client",
                "protobuf", "cryptography", "sandcell-gateway"}
# Not part of the sources a wheel is built from (the checkout's own state and caches).
NOT_SOURCES = {".git", ".cache", ".venv", "build", "dist", "bench", ".mypy_cache",
               ".pytest_cache", ".schemathesis", ".mutmut-cache", "__pycache__"}
IMAGES = {"base": "sandcell/base:bookworm", "python": "sandcell/python:latest",
          "plugin-python": "sandcell/plugin-python:latest",
          "plugin-java": "sandcell/plugin-java:latest"}

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 1
max_total = 2

[plugins]
min_ready = 0
max_total = 1
"""

SDK_PROBE = """
import importlib.metadata, json, sys
import sandcell
print(json.dumps({
    "file": sandcell.__file__, "version": sandcell.__version__,
    "requires": importlib.metadata.requires("sandcell"),
    "installed": sorted(d.metadata["Name"].lower().replace("_", "-")
                        for d in importlib.metadata.distributions()),
    "modules": sorted(sys.modules),
}))
"""

SDK_RUN = """
import json, sys
import sandcell
with sandcell.Client(base_url=sys.argv[1], token=sys.argv[2]) as client:
    with client.sessions.create(template="python") as session:
        cell = session.execute("1+1", timeout=60)
    difference = client.plugins.invoke("subtract_numbers", operand1=10, operand2=4, timeout=60)
print(json.dumps({"file": sandcell.__file__, "result": cell.results[0].text,
                  "plugin": difference}))
"""


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without what would make a venv see the checkout (or measure
    pip with coverage)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SANDCELL_IMAGES_DIR")
           and not k.startswith("COVERAGE_")}
    return {**env, **extra}


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``command``; its stdout, or a failure that shows both streams."""
    done = subprocess.run(command, check=False, cwd=cwd, env=env or clean_environment(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def make_venv(where: Path, *wheels: Path) -> Path:
    """A fresh venv (no system site-packages) with ``wheels`` and their dependencies."""
    run([sys.executable, "-m", "venv", str(where)], cwd=where.parent)
    run([str(where / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", *map(str, wheels)], cwd=where.parent)
    return where


def copy_sources(destination: Path) -> Path:
    """The checkout's files as git would check them out (symlinks kept as symlinks)."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in NOT_SOURCES or n.endswith(".egg-info")}

    shutil.copytree(CHECKOUT, destination, symlinks=True, ignore=ignore)
    return destination


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels of this checkout, by distribution name."""
    root = tmp_path_factory.mktemp("wheels")
    source = copy_sources(root / "source")
    out = root / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "--disable-pip-version-check", "-w", str(out), str(source), str(source / "sdk")],
        cwd=root)
    built = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    version = sandcell.__version__
    assert {name: path.name for name, path in built.items()} == {
        "sandcell": f"sandcell-{version}-py3-none-any.whl",
        "sandcell_gateway": f"sandcell_gateway-{version}-py3-none-any.whl"}
    return built


def test_the_sdk_wheel_alone_brings_httpx_and_nothing_of_the_gateway(
        wheels: dict[str, Path], tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv", wheels["sandcell"])
    probe = json.loads(run([str(venv / "bin" / "python"), "-c", SDK_PROBE], cwd=tmp_path))
    assert Path(probe["file"]).is_relative_to(venv) and probe["version"] == sandcell.__version__
    assert [r for r in probe["requires"] if "extra ==" not in r] == ["httpx>=0.27"]
    assert "httpx" in probe["installed"] and GATEWAY_ONLY.isdisjoint(probe["installed"])
    assert not (venv / "bin" / "sandcell").exists()  # the command is the gateway's
    heavy = {"tornado", "docker", "zmq", "grpc", "jsonschema", "jupyter_client", "sandcell_gateway"}
    assert heavy.isdisjoint(name.split(".")[0] for name in probe["modules"])


class InstalledGateway(GatewayProcess):
    """``sandcell serve`` of a venv, run from ``workdir``: the installed code, not this checkout's."""

    def __init__(self, workdir: Path, venv: Path) -> None:
        super().__init__(workdir, CONFIG)
        self.venv = venv
        self.cwd = workdir

    def command(self) -> list[str]:
        # no --no-build: the gateway checks its images (from its own recipes) before serving
        return [str(self.venv / "bin" / "sandcell"), "serve", "--port", "0",
                "--config", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        return clean_environment(**{k: env[k] for k in
                                    ("SANDCELL_TOKEN", "SANDCELL_RUNTIME_DIR", "XDG_DATA_HOME")})


@pytest.fixture
def venv(wheels: dict[str, Path], tmp_path: Path) -> Path:
    return make_venv(tmp_path / "venv", wheels["sandcell"], wheels["sandcell_gateway"])


@pytest.fixture
def installed_gateway(venv: Path, tmp_path: Path) -> Iterator[InstalledGateway]:
    workdir = tmp_path / "serve"
    workdir.mkdir()
    gateway = InstalledGateway(workdir, venv)
    try:
        yield gateway
    finally:
        gateway.stop()
        leftovers = gateway.containers()
        assert leftovers == [], f"the gateway left containers behind: {leftovers}\n{gateway.log()}"


def image_ids() -> dict[str, str]:
    """The ids of the images the recipes build (others' sandcell/* tags on a shared machine
    come and go while this runs)."""
    client = docker.from_env()
    try:
        return {tag: str(image.id) for image in client.images.list(name="sandcell/*")
                for tag in image.tags if tag in IMAGES.values()}
    finally:
        client.close()


@pytest.mark.timeout(900)  # a first run downloads the gateway's dependencies from PyPI
def test_the_installed_wheels_serve_on_the_images_already_built(
        venv: Path, installed_gateway: InstalledGateway, tmp_path: Path) -> None:
    bin_dir = venv / "bin"
    assert run([str(bin_dir / "sandcell"), "--version"], cwd=tmp_path) == \
        f"sandcell {sandcell.__version__}\n"
    where = "from sandcell_gateway.imagebuild import images_dir; print(images_dir())"
    recipes = run([str(bin_dir / "python"), "-c", where], cwd=tmp_path).strip()
    assert Path(recipes).is_relative_to(venv) and not Path(recipes).is_symlink()

    listed = run([str(bin_dir / "sandcell"), "images", "list"], cwd=tmp_path).splitlines()
    states = {line.split()[0]: line.split()[2] for line in listed[1:]}
    # the gateway image is built only when asked for (test_gateway_image.py does)
    assert states.pop("gateway") in ("current", "stale", "missing")
    assert states == dict.fromkeys(IMAGES, "current"), "\n".join(listed)

    before = image_ids()
    assert set(IMAGES.values()) <= set(before)
    installed_gateway.start(timeout=120)
    installed_gateway.wait_ready("python", timeout=120)
    done = json.loads(run([str(bin_dir / "python"), "-c", SDK_RUN, installed_gateway.url,
                           installed_gateway.token], cwd=tmp_path))
    assert Path(done["file"]).is_relative_to(venv)
    assert done["result"] == "2"
    assert done["plugin"]["result"] == 6.0  # subtract_numbers, a seed plugin from package data
    assert installed_gateway.stop() == 0
    assert image_ids() == before, "sandcell serve rebuilt an image"
    assert "building" not in installed_gateway.log(), installed_gateway.log()
