"""Resolve user paths inside the sandbox without ever leaving it, even under a symlink race.

A path is checked by rule first (no ``..``, no NUL, absolute only inside the workspace or
``/tmp``), then opened with ``openat2(RESOLVE_BENEATH)`` relative to a descriptor of its
root: the kernel itself refuses any resolution that would step outside, including through a
symlink swapped in between a check and the use. Every operation goes through a descriptor
of the parent directory and acts on the last name with ``dir_fd``, never on a path string.

Example::

    roots = Roots("/home/sandbox", "/tmp")
    with roots.parent("data/in.csv") as (dir_fd, name):
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import os
import pathlib
from collections.abc import Iterator

_SYS_OPENAT2 = 437  # the same on x86_64 and aarch64 (Linux 5.6's shared syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    # struct open_how; the kernel sees only the layout, never these names
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),  # pragma: no mutate
                ("resolve", ctypes.c_uint64)]  # pragma: no mutate


class InvalidPath(ValueError):
    """The path breaks a rule or points outside the sandbox's workspace and /tmp."""


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """``openat2(dir_fd, path, RESOLVE_BENEATH)``: EXDEV when it would leave ``dir_fd``."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
    fd = int(_libc.syscall(_SYS_OPENAT2, dir_fd, os.fsencode(path), ctypes.byref(how),
                           ctypes.sizeof(how)))
    if fd < 0:  # pragma: no mutate (<= 0, < 1 alike: fd 0, stdin, stays open)
        err = ctypes.get_errno()
        if err == errno.EXDEV:
            raise InvalidPath(f"{path!r} leads outside the sandbox (through a symlink)")
        raise OSError(err, os.strerror(err), path)
    return fd


def _open_root(resolved: Resolved) -> int:
    return os.open(resolved.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A checked path: its root directory and the parts below it."""

    root: str
    parts: tuple[str, ...]
    shown: str  # how the path is reported back (workspace-relative when inside it)

    @property
    def relative(self) -> str:
        return "/".join(self.parts) or "."


class Roots:
    """The two trees a sandbox path may name: the workspace and ``/tmp``."""

    def __init__(self, workspace: str, tmp: str) -> None:
        # "/home/sandbox/" and "/home/sandbox" name the same root
        self.workspace = str(pathlib.PurePosixPath(workspace))
        self.tmp = str(pathlib.PurePosixPath(tmp))

    def check(self, path: str) -> Resolved:
        """Apply the rules to ``path``; :class:`InvalidPath` says which one it breaks."""
        if "\0" in path:
            raise InvalidPath("a path may not contain NUL bytes")
        if path.startswith("/"):
            root, rest, prefix = self._root_of(path)
        else:
            root, rest, prefix = self.workspace, path, ""
        parts = tuple(p for p in rest.split("/") if p not in ("", "."))
        if ".." in parts:
            raise InvalidPath(f"{path!r}: '..' is not allowed in sandbox paths")
        shown = "/".join(parts)
        if prefix:
            shown = prefix + ("/" + shown if shown else "")
        return Resolved(root, parts, shown or ".")

    def _root_of(self, path: str) -> tuple[str, str, str]:
        for root, prefix in ((self.workspace, ""), (self.tmp, "/tmp")):
            if path == root or path.startswith(root + "/"):
                return root, path[len(root):], prefix
        raise InvalidPath(f"{path!r} is outside the sandbox: use a path relative to the "
                          "workspace, or an absolute one inside it or /tmp")

    @contextlib.contextmanager
    def open_dir(self, resolved: Resolved, parts: tuple[str, ...] | None = None
                 ) -> Iterator[int]:
        """An ``O_PATH`` descriptor of the directory ``parts`` (default: all) below the root."""
        root_fd = _open_root(resolved)
        try:
            chosen = resolved.parts if parts is None else parts
            if not chosen:
                yield root_fd
                return
            fd = openat2(root_fd, "/".join(chosen), os.O_PATH | os.O_DIRECTORY)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(root_fd)

    @contextlib.contextmanager
    def parent(self, resolved: Resolved) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent directory, last name); the root itself has no parent."""
        if not resolved.parts:
            raise InvalidPath(f"{resolved.shown!r} is the root of the sandbox's files")
        with self.open_dir(resolved, resolved.parts[:-1]) as fd:
            yield fd, resolved.parts[-1]

    def open_file(self, resolved: Resolved, flags: int) -> int:
        """Open the path itself (symlinks inside the sandbox are followed, never out)."""
        root_fd = _open_root(resolved)
        try:
            return openat2(root_fd, resolved.relative, flags)
        finally:
            os.close(root_fd)

    def make_parents(self, resolved: Resolved) -> None:
        """``mkdir -p`` of the parent, one checked component at a time."""
        for depth in range(len(resolved.parts) - 1):
            with self.open_dir(resolved, resolved.parts[:depth]) as fd:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(resolved.parts[depth], 0o755, dir_fd=fd)
