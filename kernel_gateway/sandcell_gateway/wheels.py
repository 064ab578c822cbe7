"""Python wheels for sandbox images, downloaded on the host for the image's interpreter.

Sandbox builds have no index to install from, so the builder asks the base image which
Python it runs, downloads matching manylinux wheels with the host's pip, caches them
under ``~/.cache/sandcell/wheels/<key>`` and puts them in the Docker build context::

    target = probe_python(docker.from_env(), "sandcell/base:bookworm")
    directory = ensure_wheels(Path("sandbox_images/python/requirements.txt"), target, print)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

Log = Callable[[str], None]

PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+(;.*)?$")


class WheelError(RuntimeError):
    """Wheels could not be found or downloaded for an image; the message says why."""


PROBE = (
    "import platform, sys; "
    "print(sys.implementation.name, *sys.version_info[:2], "
    "platform.machine(), *platform.libc_ver())"
)
# The oldest glibc each architecture has manylinux wheels for (PEP 600 / PEP 599).
OLDEST_GLIBC = {"x86_64": 5, "i686": 5}
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


@dataclass(frozen=True)
class PythonTarget:
    """The interpreter of a base image, which the downloaded wheels must fit.

    >>> PythonTarget("3.11", "x86_64", "2.36").abi
    'cp311'
    """

    version: str
    machine: str
    glibc: str

    @property
    def abi(self) -> str:
        return "cp" + self.version.replace(".", "")

    def describe(self) -> str:
        return f"CPython {self.version}, {self.machine}, glibc {self.glibc}"


def parse_probe(output: str) -> PythonTarget:
    """Read :data:`PROBE`'s output, e.g. ``cpython 3 11 x86_64 glibc 2.36``."""
    words = output.split()
    if len(words) != 6 or words[0] != "cpython" or words[4] != "glibc":
        raise WheelError(
            f"base image needs CPython on glibc (manylinux wheels); it reported {output.strip()!r}"
        )
    return PythonTarget(f"{words[1]}.{words[2]}", words[3], words[5])


def probe_python(client: docker.DockerClient, image: str) -> PythonTarget:
    """Ask the base image itself which Python, architecture and glibc it has."""
    try:
        output = client.containers.run(
            image, entrypoint=["python3", "-c", PROBE], network_mode="none", remove=True
        )
    except docker.errors.DockerException as exc:
        raise WheelError(f"cannot run python3 in base image {image}: {exc}") from exc
    return parse_probe(output.decode())


def manylinux_platforms(machine: str, glibc: str) -> list[str]:
    """Every manylinux tag a glibc ``glibc`` system accepts, newest first.

    pip download does not expand a --platform to the older tags it implies, and wheels
    are tagged anywhere from manylinux1 to manylinux_2_28, so list them all.
    """
    major, minor = (int(part) for part in glibc.split(".")[:2])
    platforms = []
    for version in range(minor, OLDEST_GLIBC.get(machine, 17) - 1, -1):
        platforms.append(f"manylinux_{major}_{version}_{machine}")
        if version in LEGACY_MANYLINUX and (version == 17 or machine in OLDEST_GLIBC):
            platforms.append(f"{LEGACY_MANYLINUX[version]}_{machine}")
    return platforms


def pip_download_command(requirements: Path, target: PythonTarget, dest: Path) -> list[str]:
    """Binary-only download for the target interpreter, not the host's."""
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:"]
    command += ["--python-version", target.version, "--implementation", "cp"]
    command += ["--abi", target.abi, "--disable-pip-version-check", "--no-input"]
    for platform in manylinux_platforms(target.machine, target.glibc):
        command += ["--platform", platform]
    return command + ["-d", str(dest), "-r", str(requirements)]


def check_pinned(requirements: Path) -> str:
    """The requirements text, provided every line pins an exact version (``==``)."""
    text = requirements.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line and not PINNED.match(line.replace(" ", "")):
            raise WheelError(f"{requirements}:{number}: pin an exact version (name==X.Y.Z): {line}")
    return text


def wheel_cache_key(requirements_text: str, target: PythonTarget) -> str:
    """Same pins for the same interpreter and platform: the same wheels."""
    platforms = ",".join(manylinux_platforms(target.machine, target.glibc))
    seed = f"{requirements_text}\n{target.abi}\n{platforms}\n"
    return hashlib.sha256(seed.encode()).hexdigest()[:24]


def wheel_cache_root() -> Path:
    """``~/.cache/sandcell/wheels`` (or under ``$XDG_CACHE_HOME``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sandcell" / "wheels"


def ensure_wheels(requirements: Path, target: PythonTarget, log: Log) -> Path:
    """The cached wheel directory for these pins, downloading it on first use.

    Downloads go to a scratch directory renamed into place at the end, so a cache
    directory that exists is always complete.
    """
    cached = wheel_cache_root() / wheel_cache_key(check_pinned(requirements), target)
    if cached.is_dir():
        log(f"    wheels: cached in {cached}")
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=cached.name + ".partial-", dir=cached.parent))
    try:
        log(f"    downloading wheels for {target.describe()} into {cached}")
        run_pip_download(pip_download_command(requirements, target, scratch), log)
        scratch.rename(cached)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cached


def run_pip_download(command: list[str], log: Log) -> None:
    """pip's output goes to the progress log; a failure keeps pip's own explanation."""
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(("Saved", "Successfully")):
            log("    " + line)
    if done.returncode != 0:
        raise WheelError(f"pip download failed:\n{done.stderr.strip() or done.stdout[-2000:]}")


def link_tree(source: Path, dest: Path) -> None:
    """Hard-link (or copy, across filesystems) the cached wheels into a build context."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        try:
            os.link(path, dest / path.name)
        except OSError:
            shutil.copy2(path, dest / path.name)

