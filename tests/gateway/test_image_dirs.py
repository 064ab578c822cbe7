"""ImageDirs: one copy of an image's /usr and /opt per image id, read-only mounts of it.

Docker's API is faked at its boundary (an image as the tar stream ``docker export`` gives);
the unpacking runs the real GNU tar. The bind mounts themselves are tested on real Docker in
tests/integration/test_hardening.py.
"""

from __future__ import annotations

import io
import logging
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from sandcell_gateway.containers import Mount
from sandcell_gateway.image_dirs import ImageDirs


def image_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


class FakeDocker:
    """The docker-py APIClient calls ImageDirs makes, for images given as their files."""

    def __init__(self, images: dict[str, dict[str, bytes]]) -> None:
        self.images_by_tag = images
        self.exports = 0
        self.containers: set[str] = set()
        self.fail = False

    def inspect_image(self, tag: str) -> dict[str, str]:
        return {"Id": f"sha256:{tag.split(':')[-1]}"}

    def images(self, all: bool) -> list[dict[str, str]]:
        return [self.inspect_image(tag) for tag in self.images_by_tag]

    def create_container(self, image_id: str, command: list[str]) -> dict[str, str]:
        self.containers.add(image_id)
        return {"Id": image_id}

    def export(self, container: str) -> Any:
        self.exports += 1
        if self.fail:
            raise RuntimeError("daemon said no")
        tag = next(t for t in self.images_by_tag if self.inspect_image(t)["Id"] == container)
        data = image_tar(self.images_by_tag[tag])
        return (data[i:i + 1000] for i in range(0, len(data), 1000))

    def remove_container(self, container: str, force: bool) -> None:
        self.containers.discard(container)


IMAGE = {"usr/bin/python3": b"#!interp", "usr/lib/x.py": b"x = 1", "opt/venv/site.py": b"v",
         "etc/passwd": b"root:x:0:0", "home/sandbox/.bashrc": b"rc"}


def test_the_first_call_unpacks_usr_and_opt_only_and_mounts_them_read_only(tmp_path: Path) -> None:
    docker = FakeDocker({"img:one": IMAGE})
    dirs = ImageDirs(tmp_path / "cache", docker)
    mounts = dirs.mounts("img:one")
    copy = tmp_path / "cache" / "sha256-one"
    assert mounts == (Mount(copy / "usr", "/usr", read_only=True),
                      Mount(copy / "opt", "/opt", read_only=True))
    assert (copy / "usr/lib/x.py").read_bytes() == b"x = 1"
    assert (copy / "opt/venv/site.py").read_bytes() == b"v"
    assert sorted(p.name for p in copy.iterdir()) == ["opt", "usr"]  # not /etc, not /home
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    assert docker.containers == set()  # the export's container is gone
    assert dirs.mounts("img:one") == mounts and docker.exports == 1  # once per image id


def test_concurrent_creates_of_one_image_wait_for_one_export(tmp_path: Path) -> None:
    docker = FakeDocker({"img:one": IMAGE})
    dirs = ImageDirs(tmp_path, docker)
    results: list[tuple[Mount, ...]] = []
    threads = [threading.Thread(target=lambda: results.append(dirs.mounts("img:one")))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert docker.exports == 1 and len(set(results)) == 1 and results[0]


def test_a_failed_export_runs_the_image_without_copies_and_is_not_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    docker = FakeDocker({"img:one": IMAGE})
    docker.fail = True
    dirs = ImageDirs(tmp_path, docker)
    with caplog.at_level(logging.WARNING):
        assert dirs.mounts("img:one") == ()
        assert dirs.mounts("img:one") == ()
    assert docker.exports == 1
    assert "could not unpack /usr and /opt (daemon said no)" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == []  # no half copy left behind
    assert docker.containers == set()


def test_copies_of_images_docker_no_longer_has_are_removed(tmp_path: Path) -> None:
    docker = FakeDocker({"img:one": IMAGE, "img:two": IMAGE})
    ImageDirs(tmp_path, docker).mounts("img:one")
    del docker.images_by_tag["img:one"]  # removed from Docker
    ImageDirs(tmp_path, docker).mounts("img:two")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sha256-two"]


def test_a_copy_another_gateway_finished_first_is_kept(tmp_path: Path) -> None:
    docker = FakeDocker({"img:one": IMAGE})
    first = ImageDirs(tmp_path, docker)
    first.mounts("img:one")
    (tmp_path / "sha256-one" / "usr" / "marker").write_text("first")
    # a second gateway that decided to export before the first one's copy appeared
    second = ImageDirs(tmp_path, docker)
    second._export("sha256:one", tmp_path / "sha256-one")
    assert (tmp_path / "sha256-one" / "usr" / "marker").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sha256-one"]
