"""Fail the gateway container's start when its shared directory is not mounted at the same
path on the host (``-v /srv/x:/var/lib/sandcell`` instead of ``-v /var/lib/sandcell:...``).

The mountpoint check of the entrypoint cannot see that: only the Docker Engine knows where a
mount comes from. Without this check the gateway would start, and every sandbox would get a
``/conn`` from a host path that does not exist (the Engine makes an empty one as root), and
never become ready. The container finds itself by its hostname, Docker's default (its short
id); with ``--hostname`` set, the check is skipped with a note.

Usage: ``python check_shared_dir.py DIR``; exit status 2 on a mismatch.
"""

from __future__ import annotations

import socket
import sys

import docker
import docker.errors


def mount_source(client: docker.DockerClient, directory: str) -> str | None:
    """The host path mounted at ``directory`` in this container; None if it cannot tell."""
    try:
        mounts = client.api.inspect_container(socket.gethostname())["Mounts"]
    except docker.errors.NotFound:
        return None
    return next((m["Source"] for m in mounts if m["Destination"] == directory), None)


def main(directory: str) -> int:
    try:
        client = docker.from_env()
        try:
            source = mount_source(client, directory)
        finally:
            client.close()
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        # the socket's permissions, most likely: say what to do
        print(f"sandcell-gateway: cannot reach the Docker Engine ({exc}); with the socket "
              "mounted, add its group: --group-add \"$(stat -c %g /var/run/docker.sock)\"",
              file=sys.stderr)
        return 2
    if source is None:
        print(f"sandcell-gateway: note: cannot see where {directory} is mounted from "
              "(--hostname set?); it must be the same path on the host", file=sys.stderr)
        return 0
    if source != directory:
        print(f"sandcell-gateway: {directory} is mounted from {source} on the host: the Docker "
              f"Engine would look for sandbox directories under {directory} on the host. Mount "
              f"it at the same path: -v {source}:{source} -e SANDCELL_SHARED_DIR={source}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
