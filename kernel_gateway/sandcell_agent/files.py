"""File operations on checked paths (see paths.py); each returns or yields protobuf messages."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import grpc

from ._proto import sandbox_pb2 as pb
from .errors import AgentError, from_os_error, invalid_path, wrong_kind
from .paths import InvalidPath, Resolved, Roots

T = TypeVar("T")

CHUNK = 256 * 1024  # bytes per ReadChunk: large enough to stream 100 MiB at speed


def _type(mode: int) -> pb.FileType:
    if stat.S_ISREG(mode):
        return pb.FILE_TYPE_FILE
    if stat.S_ISDIR(mode):
        return pb.FILE_TYPE_DIR
    if stat.S_ISLNK(mode):
        return pb.FILE_TYPE_SYMLINK
    return pb.FILE_TYPE_OTHER


def info(name: str, shown: str, st: os.stat_result) -> pb.FileInfo:
    return pb.FileInfo(name=name, path=shown, type=_type(st.st_mode), size=st.st_size,
                       modified=st.st_mtime, mode=stat.S_IMODE(st.st_mode))


def _join(shown: str, name: str) -> str:
    return name if shown == "." else f"{shown.rstrip('/')}/{name}"


class Files:
    """The agent's file service over one pair of roots (workspace, /tmp)."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots

    def check(self, path: str) -> Resolved:
        try:
            return self.roots.check(path)
        except InvalidPath as exc:
            raise invalid_path(str(exc)) from exc

    def _guard(self, resolved: Resolved, call: Callable[[], T]) -> T:
        """Run ``call()``, turning OS refusals into AgentErrors about ``resolved``."""
        try:
            return call()
        except InvalidPath as exc:
            raise invalid_path(str(exc)) from exc
        except OSError as exc:
            raise from_os_error(exc, resolved.shown) from exc

    def stat(self, path: str) -> pb.FileInfo:
        resolved = self.check(path)
        return self._guard(resolved, lambda: self._stat(resolved))

    def _stat(self, resolved: Resolved) -> pb.FileInfo:
        if not resolved.parts:
            return info(".", resolved.shown, os.stat(resolved.root))
        with self.roots.parent(resolved) as (fd, name):
            return info(name, resolved.shown, os.stat(name, dir_fd=fd, follow_symlinks=False))

    def list(self, path: str) -> pb.ListDirReply:
        resolved = self.check(path)
        return self._guard(resolved, lambda: self._list(resolved))

    def _list(self, resolved: Resolved) -> pb.ListDirReply:
        try:
            fd = self.roots.open_file(resolved, os.O_RDONLY | os.O_DIRECTORY)
        except NotADirectoryError as exc:
            raise wrong_kind(f"{resolved.shown} is a file, not a directory: read it instead") \
                from exc
        try:
            with os.scandir(fd) as entries:
                found: list[pb.FileInfo] = [info(e.name, _join(resolved.shown, e.name),
                                                 e.stat(follow_symlinks=False)) for e in entries]
        finally:
            os.close(fd)
        found.sort(key=lambda e: e.name)
        return pb.ListDirReply(entries=found)

    def read(self, path: str) -> Iterator[pb.ReadChunk]:
        resolved = self.check(path)
        # O_NONBLOCK: opening a FIFO must not hang the agent; only regular files are read
        fd = self._guard(resolved, lambda: self.roots.open_file(
            resolved, os.O_RDONLY | os.O_NONBLOCK))
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise wrong_kind(f"{resolved.shown} is a directory: list it instead")
            if not stat.S_ISREG(st.st_mode):
                raise wrong_kind(f"{resolved.shown} is not a regular file")
            yield pb.ReadChunk(info=info(resolved.parts[-1], resolved.shown, st))
            while data := self._guard(resolved, lambda: os.read(fd, CHUNK)):
                yield pb.ReadChunk(data=data)
        finally:
            os.close(fd)

    def write(self, chunks: Iterable[pb.WriteChunk]) -> pb.FileInfo:
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None or first.WhichOneof("kind") != "header":
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT, "invalid_request",
                             "a write starts with its header")
        header = first.header
        resolved = self.check(header.path)
        if header.make_parents:
            self._guard(resolved, lambda: self.roots.make_parents(resolved))
        try:
            with self.roots.parent(resolved) as (fd, name):
                return self._write_into(fd, name, resolved, chunks, header.max_size)
        except InvalidPath as exc:
            raise invalid_path(str(exc)) from exc
        except OSError as exc:
            raise from_os_error(exc, resolved.shown) from exc

    def _write_into(self, fd: int, name: str, resolved: Resolved,
                    chunks: Iterator[pb.WriteChunk], max_size: int) -> pb.FileInfo:
        """Into a temporary name, renamed over the target only when all of it was written."""
        temp = f".{name[:64]}.sandcell-{secrets.token_hex(4)}"
        out = self._guard(resolved, lambda: os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
            dir_fd=fd))
        done = False
        try:
            size = 0
            for chunk in chunks:
                size += len(chunk.data)
                if max_size and size > max_size:
                    raise AgentError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     "file_too_large", f"{resolved.shown}: over {max_size} bytes")
                self._guard(resolved, lambda: _write_all(out, chunk.data))
            os.close(out)
            out = -1
            self._guard(resolved, lambda: os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd))
            done = True
            return info(name, resolved.shown, os.stat(name, dir_fd=fd, follow_symlinks=False))
        finally:
            if out >= 0:
                os.close(out)
            if not done:
                try:
                    os.unlink(temp, dir_fd=fd)
                except OSError:
                    pass

    def remove(self, path: str, recursive: bool) -> None:
        resolved = self.check(path)
        self._guard(resolved, lambda: self._remove(resolved, recursive))

    def _remove(self, resolved: Resolved, recursive: bool) -> None:
        with self.roots.parent(resolved) as (fd, name):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=fd)
            elif recursive:
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.rmdir(name, dir_fd=fd)

    def make_dir(self, path: str) -> pb.FileInfo:
        resolved = self.check(path)
        return self._guard(resolved, lambda: self._make_dir(resolved))

    def _make_dir(self, resolved: Resolved) -> pb.FileInfo:
        """``mkdir -p``: an existing directory is fine, an existing file is not."""
        self.roots.make_parents(resolved)
        with self.roots.parent(resolved) as (fd, name):
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise
            return info(name, resolved.shown, os.stat(name, dir_fd=fd, follow_symlinks=False))

    def rename(self, source: str, destination: str, overwrite: bool) -> pb.FileInfo:
        src, dst = self.check(source), self.check(destination)
        self._guard(src, lambda: self._stat(src))  # a missing source is named as such
        return self._guard(dst, lambda: self._rename(src, dst, overwrite))

    def _rename(self, src: Resolved, dst: Resolved, overwrite: bool) -> pb.FileInfo:
        with self.roots.parent(src) as (sfd, sname), self.roots.parent(dst) as (dfd, dname):
            if overwrite:
                os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
            else:  # link + unlink refuses an existing target, atomically (no check-then-act)
                _rename_noreplace(sfd, sname, dfd, dname)
            return info(dname, dst.shown, os.stat(dname, dir_fd=dfd, follow_symlinks=False))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _rename_noreplace(sfd: int, sname: str, dfd: int, dname: str) -> None:
    st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):  # directories cannot be hard-linked
        try:
            os.stat(dname, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
            return
        raise FileExistsError(17, "File exists", dname)
    os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
    os.unlink(sname, dir_fd=sfd)
