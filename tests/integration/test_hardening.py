"""The hardening defaults are in effect inside a real sandbox (DESIGN.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import docker
import pytest

import sandcell
from sandcell_gateway import image_dirs

from .conftest import Gateway, wait_for

pytestmark = pytest.mark.docker

PROBE = """
import os, socket
def attempt(fn):
    try:
        fn()
        return 'ok'
    except Exception as exc:
        return type(exc).__name__
def connect():
    socket.create_connection(('1.1.1.1', 53), timeout=2)
def write_root():  # /usr and /opt may be read-only binds of the image's own (README)
    outcomes = {attempt(lambda: open(path, 'w')) for path in ('/usr/evil', '/opt/evil', '/etc/evil')}
    if outcomes != {'OSError'}:
        raise ValueError(sorted(outcomes))
    raise OSError('read-only')
caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]
print(os.getuid(), attempt(connect), attempt(write_root), caps,
      os.path.exists('/var/run/docker.sock'), sorted(os.listdir('/sys/class/net')),
      open('/proc/1/comm').read().strip(),
      attempt(lambda: open(os.path.expanduser('~/ok'), 'w').write('x')))
"""


def test_inside_the_sandbox(client: sandcell.Client) -> None:
    with client.sessions.create() as session:
        ex = session.execute(PROBE, timeout=30)
    assert ex.error is None, ex.error
    uid, net, root, caps, docker_sock, nics, pid1, home = ex.stdout.split(" ", 7)
    assert uid == "1000"  # README: "a non-root user (uid 1000)"
    assert net in ("OSError", "gaierror") or net.endswith("Error") and net != "ok"
    assert root in ("OSError", "PermissionError")
    assert int(caps, 16) == 0
    assert docker_sock == "False"
    assert nics == "['lo']"
    assert pid1 == "tini"  # README: "tini as PID 1" (it reaps the kernel's orphans)
    assert home.strip() == "ok"


def container_of(gateway: Gateway, session: sandcell.Session) -> Iterator[Any]:
    docker_client = docker.from_env()
    try:
        [container] = docker_client.containers.list(
            filters={"label": [f"org.sandcell.gateway={gateway.gateway_id}",
                               f"org.sandcell.sandbox={session.id}"]})
        yield container
    finally:
        docker_client.close()


def test_container_settings(client: sandcell.Client, gateway: Gateway) -> None:
    with client.sessions.create() as session:
        for container in container_of(gateway, session):
            host = container.attrs["HostConfig"]
            labels = container.labels
            image_id = container.attrs["Image"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0
    assert not host.get("PortBindings") and not host.get("Privileged")
    # the one writable bind: the per-sandbox ipc directory at /conn (README: no TCP needed at
    # all); on fuse-overlayfs also the image's own /usr and /opt, read-only, from their copies
    binds = host.get("Binds") or []
    [conn] = [b for b in binds if b.endswith(":/conn:rw")]
    assert conn.endswith(f"/{session.id}:/conn:rw"), binds
    copy = image_dirs.cache_dir() / image_id.replace(":", "-")
    on_fuse = docker.from_env().info()["Driver"] == "fuse-overlayfs"
    assert sorted(set(binds) - {conn}) == ([f"{copy}/opt:/opt:ro", f"{copy}/usr:/usr:ro"]
                                           if on_fuse else []), binds
    assert labels["org.sandcell.template"] == "python"
    assert labels["org.sandcell.sandbox"] == session.id
    assert labels["org.sandcell.gateway"] == gateway.gateway_id
    # the owner lives in the store: warm containers start before anyone claims them
    assert not [key for key in labels if "tenant" in key], labels


# Write to pid 1's stdout (tini's: the container's log stream; the kernel's own fds are
# captured by ipykernel and would go to IOPub instead), 8 MiB, then one last line.
LOG_FLOOD = """
with open('/proc/1/fd/1', 'w') as log:
    for _ in range(8192):
        log.write('x' * 1023 + '\\n')
    log.write('END-OF-FLOOD\\n')
"""


def test_container_logs_are_bounded_by_log_max_size(client: sandcell.Client,
                                                    gateway: Gateway) -> None:
    """README: "bounded container logs" ([templates.python.limits] log_max_size = "1m")."""
    with client.sessions.create() as session:
        for container in container_of(gateway, session):
            log_config = container.attrs["HostConfig"]["LogConfig"]
            assert log_config == {"Type": "json-file",
                                  "Config": {"max-size": "1m", "max-file": "1"}}, log_config
            ex = session.execute(LOG_FLOOD, timeout=120)
            assert ex.error is None, ex.error
            wait_for(lambda: b"END-OF-FLOOD" in container.logs(tail=3), 30,
                     "the flood's last line in the container log")
            log_path = container.attrs["LogPath"]
            directory = os.path.dirname(log_path)
            files = [os.path.join(directory, name) for name in os.listdir(directory)
                     if name.startswith(os.path.basename(log_path))]
            on_disk = sum(os.path.getsize(f) for f in files)
    # 8 MiB went in (more as JSON lines); Docker keeps the live file plus at most one rotated
    # one, each cut near max-size: well under the flood, whatever the rotation timing
    assert on_disk <= 2.5 * (1 << 20), (files, on_disk)
