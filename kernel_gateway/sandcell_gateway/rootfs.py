"""Debian root filesystems for sandbox base images, made with debootstrap.

No image registry is reachable from the machines Sandcell is built on, so the bottom
layer of every sandbox image is a Debian root filesystem assembled from the Debian
archive and handed to ``docker import``::

    rootfs = RootfsSpec.from_settings({"suite": "bookworm", "include": ["python3"]})
    with TemporaryRootfs() as directory:
        build_rootfs(rootfs, directory, mirror=debian_mirror("bookworm"), log=print)
        import_rootfs(docker.from_env(), directory, "sandcell/base:bookworm", [], print)

The image build logic (recipes, hashes, Dockerfiles) lives in :mod:`imagebuild`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import docker

Log = Callable[[str], None]

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
APT_DIR = Path("/etc/apt")

# Everything apt and dpkg leave behind that no sandbox needs: package lists go stale
# anyway, and docs/man pages are dead weight in a read-only container.
CLEAN_GLOBS = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/debconf/*-old",
    "var/log/*.log",
    "var/log/apt/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "etc/resolv.conf",
)

# Keeps later `apt-get install` runs (e.g. in plugin images FROM the base) as lean.
DPKG_NODOC = """\
# Sandcell images: no documentation (copyright files are kept).
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
"""

# Per-package chatter of debootstrap and apt: hundreds of lines that bury the progress.
NOISE = re.compile(
    r"^(I: (Retrieving|Validating|Extracting|Unpacking|Configuring) |Get:\d|Preparing to unpack"
    r"|Unpacking |Selecting previously|\(Reading database|Setting up |Processing triggers)"
)

APT_NO_RECOMMENDS = 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'


class RootfsError(RuntimeError):
    """A root filesystem could not be built; the message says what to do about it."""


@dataclass(frozen=True)
class RootfsSpec:
    """What goes into a debootstrap root filesystem (the ``rootfs`` kind of image.json).

    >>> RootfsSpec.from_settings({"suite": "bookworm", "include": ["tini"]}).suite
    'bookworm'
    """

    suite: str
    variant: str = "minbase"
    include: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RootfsSpec:
        """Read the spec from a recipe's image.json, which is plain JSON."""
        return cls(
            suite=str(settings["suite"]),
            variant=str(settings.get("variant", "minbase")),
            include=tuple(settings.get("include", ())),
            packages=tuple(settings.get("packages", ())),
            changes=tuple(settings.get("changes", ())),
        )


# --- apt sources -------------------------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry of an apt sources file: a URI and the suites it serves."""

    uri: str
    suites: tuple[str, ...]


def parse_apt_sources(text: str) -> list[AptSource]:
    """Parse both the one-line ``sources.list`` and the deb822 ``.sources`` formats."""
    if any(line.strip().lower().startswith("uris:") for line in text.splitlines()):
        return _parse_deb822(text)
    return _parse_one_line(text)


def _parse_one_line(text: str) -> list[AptSource]:
    """``deb [options] URI SUITE COMPONENT...``; deb-src and comments are ignored."""
    sources: list[AptSource] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] != ["deb"]:
            continue
        words = _drop_options(words[1:])
        if len(words) >= 2:
            sources.append(AptSource(words[0].rstrip("/"), (words[1],)))
    return sources


def _drop_options(words: list[str]) -> list[str]:
    """Skip a ``[signed-by=... arch=...]`` block, which may span several words."""
    if not words or not words[0].startswith("["):
        return words
    for index, word in enumerate(words):
        if word.endswith("]"):
            return words[index + 1 :]
    return []


def _parse_deb822(text: str) -> list[AptSource]:
    """Stanzas separated by blank lines with ``Types``, ``URIs`` and ``Suites`` fields."""
    sources: list[AptSource] = []
    for stanza in text.split("\n\n"):
        fields = _deb822_fields(stanza)
        if "deb" not in fields.get("types", "").split():
            continue
        suites = tuple(fields.get("suites", "").split())
        sources.extend(AptSource(uri.rstrip("/"), suites) for uri in fields.get("uris", "").split())
    return sources


def _deb822_fields(stanza: str) -> dict[str, str]:
    """Lower-cased field names to values; continuation lines are not needed here."""
    fields = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line:
            continue
        name, value = line.split(":", 1)
        fields[name.strip().lower()] = value.strip()
    return fields


def host_apt_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """All entries of the host's apt configuration (none on a host without apt)."""
    files = [apt_dir / "sources.list"]
    files += sorted((apt_dir / "sources.list.d").glob("*.list"))
    files += sorted((apt_dir / "sources.list.d").glob("*.sources"))
    sources: list[AptSource] = []
    for path in files:
        if path.is_file():
            sources.extend(parse_apt_sources(path.read_text(errors="replace")))
    return sources


def pick_mirror(sources: Iterable[AptSource], suite: str, default: str) -> str:
    """The first URI serving exactly ``suite``: the host's (often faster) Debian mirror.

    Matching on the suite, not the URI, keeps an Ubuntu host's archive out of a
    Debian root filesystem: such a host falls back to ``default``.
    """
    for source in sources:
        if suite in source.suites:
            return source.uri
    return default


def debian_mirror(suite: str, apt_dir: Path = APT_DIR) -> str:
    """The Debian mirror to debootstrap ``suite`` from (``DEFAULT_MIRROR`` if none)."""
    return pick_mirror(host_apt_sources(apt_dir), suite, DEFAULT_MIRROR)


def rootfs_sources_list(suite: str, mirror: str, security_mirror: str) -> str:
    """The apt sources the image ships with: release, updates and security."""
    return (
        f"deb {mirror} {suite} main\n"
        f"deb {mirror} {suite}-updates main\n"
        f"deb {security_mirror} {suite}-security main\n"
    )


# --- building ------------------------------------------------------------------------


def check_can_build() -> None:
    """debootstrap and chroot need root and the debootstrap tool: say so up front."""
    if os.geteuid() != 0:
        raise RootfsError(
            "building a debootstrap base image needs root (debootstrap and chroot): "
            "run `sudo sandcell images build`, or start from a registry image with --base IMAGE"
        )
    if shutil.which("debootstrap") is None:
        raise RootfsError("debootstrap is not installed: run `apt-get install debootstrap`")


def build_rootfs(spec: RootfsSpec, directory: Path, mirror: str, log: Log) -> None:
    """debootstrap ``spec`` into ``directory``, add its extra packages, then clean it."""
    check_can_build()
    run_logged(debootstrap_command(spec, directory, mirror), log)
    security = pick_mirror(host_apt_sources(), f"{spec.suite}-security", DEFAULT_SECURITY_MIRROR)
    configure_apt(directory, rootfs_sources_list(spec.suite, mirror, security))
    install_packages(directory, spec.packages, log)
    clean_rootfs(directory)


def debootstrap_command(spec: RootfsSpec, directory: Path, mirror: str) -> list[str]:
    """Only a few packages go in --include: debootstrap does not resolve their deps well."""
    command = ["debootstrap", f"--variant={spec.variant}"]
    if spec.include:
        command.append("--include=" + ",".join(spec.include))
    return command + [spec.suite, str(directory), mirror]


def configure_apt(directory: Path, sources_list: str) -> None:
    """Point apt at the archive (kept in the image for child images) and at no docs."""
    etc = directory / "etc"
    (etc / "apt" / "sources.list").write_text(sources_list)
    (etc / "apt" / "apt.conf.d" / "90sandcell-no-recommends").write_text(APT_NO_RECOMMENDS)
    (etc / "dpkg" / "dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (etc / "dpkg" / "dpkg.cfg.d" / "90sandcell-nodoc").write_text(DPKG_NODOC)
    resolv = Path("/etc/resolv.conf")
    if resolv.exists():  # DNS for apt inside the chroot; removed again by clean_rootfs
        shutil.copyfile(resolv, etc / "resolv.conf", follow_symlinks=True)


def install_packages(directory: Path, packages: Sequence[str], log: Log) -> None:
    """Upgrade to the latest security fixes and install the extra packages, in a chroot."""
    apt = ["chroot", str(directory), "apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    run_logged(apt + ["update"], log, env)
    run_logged(apt + ["upgrade"], log, env)
    if packages:
        run_logged(apt + ["install", *packages], log, env)


def clean_rootfs(directory: Path) -> None:
    """Drop caches, lists, logs and docs (the Debian copyright files stay)."""
    for pattern in CLEAN_GLOBS:
        for path in directory.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for doc in (directory / "usr/share/doc").glob("*/*"):
        if doc.name != "copyright" and doc.is_file():
            doc.unlink()


def run_logged(command: Sequence[str], log: Log, env: Mapping[str, str] | None = None) -> None:
    """Run a command, forwarding its output line by line; fail with its last lines."""
    log("$ " + " ".join(command))
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        if line.strip() and not NOISE.match(line):
            log("  " + line.rstrip())
        tail = (tail + [line.rstrip()])[-20:]
    if process.wait() != 0:
        raise RootfsError(f"{command[0]} failed (exit {process.returncode}):\n" + "\n".join(tail))


# --- importing -----------------------------------------------------------------------


def import_rootfs(
    client: docker.DockerClient, directory: Path, tag: str, changes: Sequence[str], log: Log
) -> str:
    """``tar -C DIR -c . | docker import`` without a temporary tarball; returns the id."""
    log(f"importing {directory} as {tag}")
    repository, _, version = tag.rpartition(":")
    command = ["tar", "--numeric-owner", "-C", str(directory), "-c", "."]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as tar:
        assert tar.stdout is not None
        client.api.import_image_from_stream(
            tar.stdout, repository=repository, tag=version, changes=list(changes)
        )
    if tar.returncode != 0:
        raise RootfsError(f"tar of {directory} failed (exit {tar.returncode})")
    return str(client.images.get(tag).id)


class TemporaryRootfs:
    """A scratch directory for a root filesystem, removed safely afterwards.

    debootstrap mounts /proc (and more) inside the target; if it dies half way those
    mounts remain, and a plain rmtree would descend into the host's /proc.
    """

    def __init__(self, parent: Path | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="sandcell-rootfs-", dir=parent or "/var/tmp"))
        # mkdtemp's 0700 would become the mode of the image's "/" (and lock out apt's
        # unprivileged _apt user inside the chroot).
        self.path.chmod(0o755)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for mount in sorted(mounts_under(self.path), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.path, ignore_errors=True)


def mounts_under(directory: Path) -> Iterator[str]:
    """Mount points inside ``directory`` according to /proc/self/mounts."""
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = line.split()[1].replace("\\040", " ")
            if point.startswith(prefix):
                yield point
