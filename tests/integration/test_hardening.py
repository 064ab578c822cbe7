"""The hardening defaults are in effect inside a real sandbox (DESIGN.md)."""

from __future__ import annotations

import docker
import pytest

import sandcell

from .conftest import Gateway

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
def write_root():
    open('/usr/evil', 'w')
caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]
print(os.getuid(), attempt(connect), attempt(write_root), caps,
      os.path.exists('/var/run/docker.sock'), sorted(os.listdir('/sys/class/net')),
      attempt(lambda: open(os.path.expanduser('~/ok'), 'w').write('x')))
"""


def test_inside_the_sandbox(client: sandcell.Client) -> None:
    with client.sessions.create() as session:
        ex = session.execute(PROBE, timeout=30)
    assert ex.error is None, ex.error
    uid, net, root, caps, docker_sock, nics, home = ex.stdout.split(" ", 6)
    assert uid != "0"
    assert net in ("OSError", "gaierror") or net.endswith("Error") and net != "ok"
    assert root in ("OSError", "PermissionError")
    assert int(caps, 16) == 0
    assert docker_sock == "False"
    assert nics == "['lo']"
    assert home.strip() == "ok"


def test_container_settings(client: sandcell.Client, gateway: Gateway) -> None:
    with client.sessions.create() as session:
        docker_client = docker.from_env()
        try:
            [container] = docker_client.containers.list(
                filters={"label": [f"org.sandcell.gateway={gateway.gateway_id}",
                                   f"org.sandcell.sandbox={session.id}"]})
            host = container.attrs["HostConfig"]
            labels = container.labels
        finally:
            docker_client.close()
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0
    assert not host.get("PortBindings") and not host.get("Privileged")
    assert all(not b.startswith("/var/run/docker.sock") for b in host.get("Binds") or [])
    assert labels["org.sandcell.template"] == "python"
    assert labels["org.sandcell.sandbox"].startswith("sbx_")  # the owner lives in the store
