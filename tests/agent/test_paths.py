"""The path rules and the openat2 descriptors below them (paths.py), on temporary roots, without
the gRPC server: which paths are refused and with what words, what they resolve to, and that
every descriptor stays beneath its root. tests/agent/test_agent.py drives the same through the
agent's API."""

from __future__ import annotations

import dataclasses
import fcntl
import os
from pathlib import Path

import pytest

from sandcell_agent.paths import InvalidPath, Resolved, Roots


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    (tmp_path / "ws").mkdir()
    (tmp_path / "tmp").mkdir()
    return Roots(f"{tmp_path}/ws/", f"{tmp_path}/tmp/")  # trailing slashes are dropped


def test_relative_paths_resolve_below_the_workspace(roots: Roots) -> None:
    assert roots.workspace.endswith("/ws") and roots.tmp.endswith("/tmp")
    assert roots.check("data/in.csv") == Resolved(roots.workspace, ("data", "in.csv"),
                                                  "data/in.csv")
    assert roots.check("./data//in.csv/.") == roots.check("data/in.csv")
    for root in ("", ".", "./"):
        assert roots.check(root) == Resolved(roots.workspace, (), ".")
        assert roots.check(root).relative == "."


def test_absolute_paths_inside_the_workspace_or_tmp_resolve_to_their_root(roots: Roots) -> None:
    assert roots.check(f"{roots.workspace}/a/b") == Resolved(roots.workspace, ("a", "b"), "a/b")
    assert roots.check(roots.workspace) == Resolved(roots.workspace, (), ".")
    assert roots.check(f"{roots.tmp}/x") == Resolved(roots.tmp, ("x",), "/tmp/x")
    assert roots.check(roots.tmp) == Resolved(roots.tmp, (), "/tmp")
    assert roots.check(f"{roots.tmp}/x/y").relative == "x/y"


@pytest.mark.parametrize(("path", "message"), [
    ("a\0b", "a path may not contain NUL bytes"),
    ("../x", "'../x': '..' is not allowed in sandbox paths"),
    ("a/../../x", "'a/../../x': '..' is not allowed in sandbox paths"),
    ("/etc/passwd", "'/etc/passwd' is outside the sandbox: use a path relative to the "
                    "workspace, or an absolute one inside it or /tmp"),
])
def test_a_path_breaking_a_rule_says_which(roots: Roots, path: str, message: str) -> None:
    with pytest.raises(InvalidPath) as info:
        roots.check(path)
    assert str(info.value) == message


def test_a_sibling_sharing_the_roots_prefix_is_outside(roots: Roots) -> None:
    for path in (f"{roots.workspace}2/x", f"{roots.tmp}x", f"{roots.workspace}/../ws2"):
        with pytest.raises(InvalidPath):
            roots.check(path)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _names(dir_fd: int) -> list[str]:
    """What the directory of an O_PATH descriptor holds (O_PATH itself cannot be listed)."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def test_open_file_follows_a_symlink_inside_and_refuses_one_out(roots: Roots,
                                                                tmp_path: Path) -> None:
    workspace = Path(roots.workspace)
    (workspace / "real.txt").write_text("inside")
    (workspace / "link.txt").symlink_to("real.txt")
    (tmp_path / "secret").write_text("outside")
    (workspace / "out").symlink_to(tmp_path / "secret")
    (workspace / "up").symlink_to("../secret")
    before = _open_fds()
    fd = roots.open_file(roots.check("link.txt"), os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"inside"
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # never leaks into commands
    finally:
        os.close(fd)
    for name in ("out", "up"):
        with pytest.raises(InvalidPath) as info:
            roots.open_file(roots.check(name), os.O_RDONLY)
        assert str(info.value) == f"{name!r} leads outside the sandbox (through a symlink)"
    assert _open_fds() == before  # the root's descriptor is closed every time


def test_a_missing_file_is_the_os_error_naming_the_path(roots: Roots) -> None:
    with pytest.raises(FileNotFoundError) as info:
        roots.open_file(roots.check("nope/x"), os.O_RDONLY)
    assert info.value.filename == "nope/x"


def test_paths_may_cross_a_mount_point_below_the_root(tmp_path: Path) -> None:
    """A workspace may hold mounted volumes: only leaving the root is refused, not crossing
    into another filesystem below it (/proc is one below /)."""
    whole = Roots("/", str(tmp_path))
    fd = whole.open_file(whole.check("proc/self/status"), os.O_RDONLY)
    try:
        assert os.read(fd, 5) == b"Name:"
    finally:
        os.close(fd)


def test_parent_is_the_directory_above_and_its_last_name(roots: Roots) -> None:
    workspace = Path(roots.workspace)
    (workspace / "a" / "b").mkdir(parents=True)
    (workspace / "a" / "b" / "c.txt").write_text("c")
    before = _open_fds()
    with roots.parent(roots.check("a/b/c.txt")) as (fd, name):
        assert name == "c.txt"
        assert _names(fd) == ["c.txt"]  # fd is a/b, not a nor the root
    with roots.parent(roots.check("top.txt")) as (fd, name):
        assert name == "top.txt" and _names(fd) == ["a"]  # the root itself
    assert _open_fds() == before
    with pytest.raises(InvalidPath) as info:
        with roots.parent(roots.check(".")):
            pass
    assert str(info.value) == "'.' is the root of the sandbox's files"


def test_open_dir_defaults_to_the_whole_path(roots: Roots) -> None:
    (Path(roots.workspace) / "d" / "e").mkdir(parents=True)
    resolved = roots.check("d/e")
    with roots.open_dir(resolved) as fd:
        assert _names(fd) == []
    with roots.open_dir(resolved, ("d",)) as fd:
        assert _names(fd) == ["e"]


def test_make_parents_creates_each_missing_directory_once(roots: Roots) -> None:
    workspace = Path(roots.workspace)
    resolved = roots.check("x/y/z.txt")
    roots.make_parents(resolved)
    roots.make_parents(resolved)  # existing ones are fine
    assert (workspace / "x" / "y").is_dir() and not (workspace / "x" / "y" / "z.txt").exists()
    # the process's umask, read without setting it (os.umask would change it for a moment)
    status = Path("/proc/self/status").read_text()
    umask = int(status.split("Umask:")[1].split()[0], 8)
    assert (workspace / "x").stat().st_mode & 0o777 == 0o755 & ~umask
    (workspace / "x" / "y").rmdir()
    (workspace / "x" / "y").symlink_to("/")
    with pytest.raises(InvalidPath):  # a swapped-in symlink is caught at each component
        roots.make_parents(roots.check("x/y/w/z.txt"))


def test_a_checked_path_cannot_be_changed_after_the_check(roots: Roots) -> None:
    """A Resolved is the proof that the rules passed: its parts stay what check() allowed."""
    resolved = roots.check("a/b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.parts = ("..", "etc")  # type: ignore[misc]


def test_only_directories_are_opened_as_directories(roots: Roots, tmp_path: Path) -> None:
    """A file (or a FIFO, which a plain open would hang on) where a directory is expected is
    refused at once, whether it is the root or a component below it."""
    (Path(roots.workspace) / "f.txt").write_text("f")
    with pytest.raises(NotADirectoryError):
        with roots.parent(roots.check("f.txt/x")):
            pass
    (tmp_path / "file-root").write_text("")
    not_a_dir = Roots(str(tmp_path / "file-root"), roots.tmp)
    with pytest.raises(NotADirectoryError):
        with not_a_dir.open_dir(not_a_dir.check(".")):
            pass
