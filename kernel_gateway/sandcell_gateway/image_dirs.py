"""Read-only copies of an image's ``/usr`` and ``/opt``, bind-mounted into its containers.

With Docker's fuse-overlayfs storage driver (rootless Docker, and this project's CI machines)
every file a fresh kernel opens goes through that container's FUSE daemon. Measured
(docs/sandbox-cost.md): about 0.15 CPU-s of fuse-overlayfs work per sandbox, next to the
kernel's own 0.45 s. So the Docker backend exports an image's ``/usr`` and ``/opt`` (the
interpreter, the standard library, the venv: what a kernel reads at start) once per image id
into a cache directory, and mounts them read-only over the same paths. The rest of the root
stays the image's own overlay, read-only as before.

The copies are the image's own files, as ``docker export`` gives them (owners and modes
too). Each copy is written under a temporary name and renamed into place when
whole, so gateways sharing the cache never see half of one. A copy is removed only when its
image is gone from Docker.

Example::

    dirs = ImageDirs(cache_dir(), docker.APIClient())
    dirs.mounts("sandcell/python:latest")  # the first call exports and unpacks (seconds)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from .containers import Mount

log = logging.getLogger(__name__)

DIRS = ("usr", "opt")


def cache_dir() -> Path:
    """``~/.cache/sandcell/image-dirs`` (or under ``$XDG_CACHE_HOME``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sandcell" / "image-dirs"


class ImageDirs:
    """The unpacked ``/usr`` and ``/opt`` of each image, by image id.

    ``client`` is a docker-py ``APIClient``. Blocking: call it off the event loop.
    """

    def __init__(self, root: Path, client: Any) -> None:
        self.root = root
        self._client = client
        self._lock = threading.Lock()
        self._exports: dict[str, threading.Lock] = {}  # one export at a time per image
        self._failed: set[str] = set()

    def mounts(self, image: str) -> tuple[Mount, ...]:
        """Read-only mounts of ``image``'s copies, made first if need be (every create of the
        image waits for that one export). If it fails, that is logged once and the image
        runs without them."""
        image_id = str(self._client.inspect_image(image)["Id"])
        tree = self.root / image_id.replace(":", "-")
        if not tree.is_dir():
            with self._lock:
                export = self._exports.setdefault(image_id, threading.Lock())
            with export:
                if image_id in self._failed:
                    return ()
                if not tree.is_dir():
                    self._export(image_id, tree)
            if not tree.is_dir():
                return ()
        return tuple(Mount(tree / d, f"/{d}", read_only=True) for d in DIRS)

    def _export(self, image_id: str, tree: Path) -> None:
        try:
            # only root may reach the copies from the host: they hold the images' set-uid files
            self.root.mkdir(parents=True, mode=0o700, exist_ok=True)
            self.root.chmod(0o700)
            self._remove_unused()
            with tempfile.TemporaryDirectory(dir=self.root, prefix=".unpacking-") as tmp:
                self._unpack(image_id, Path(tmp))
                with contextlib.suppress(OSError):  # another gateway was first: keep its copy
                    os.rename(Path(tmp) / "tree", tree)
            log.info("image %s: /usr and /opt unpacked into %s", image_id[:19], tree)
        except Exception as exc:  # an optimisation only: the image runs from its overlay
            log.warning("image %s: could not unpack /usr and /opt (%s); its sandboxes read "
                        "them through the storage driver", image_id[:19], exc)
            self._failed.add(image_id)

    def _unpack(self, image_id: str, tmp: Path) -> None:
        """``docker export`` piped into GNU tar (not tarfile: a process of its own, so ~450 MB
        of unpacking neither holds the gateway's GIL nor costs it three times the CPU)."""
        container = self._client.create_container(image_id, command=["true"])["Id"]
        (tmp / "tree").mkdir()
        try:
            with tempfile.TemporaryFile() as errors:
                tar = subprocess.Popen(["tar", "-x", "-C", str(tmp / "tree"), *DIRS],
                                       stdin=subprocess.PIPE, stderr=errors)
                assert tar.stdin is not None
                try:
                    for chunk in self._client.export(container):
                        tar.stdin.write(chunk)
                finally:
                    tar.stdin.close()
                    tar.wait()
                if tar.returncode:
                    errors.seek(0)
                    raise RuntimeError(f"tar: {errors.read().decode(errors='replace').strip()}")
        finally:
            self._client.remove_container(container, force=True)

    def _remove_unused(self) -> None:
        """Copies of images Docker no longer has (no container can use them any more)."""
        known = {str(i["Id"]).replace(":", "-") for i in self._client.images(all=True)}
        for path in self.root.iterdir():
            if path.name not in known and not path.name.startswith(".unpacking-"):
                shutil.rmtree(path, ignore_errors=True)
