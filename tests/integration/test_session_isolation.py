"""One sandbox serves one session: nothing of session N is visible to session N+1.

The pool holds a single sandbox (``max_total = 1``), so session N+1 can only run where session
N ran if the gateway reused its container. Session N leaves every kind of state it can behind:
files in the workspace, ``/tmp`` and ``/dev/shm``, a detached background process, an
environment variable and a kernel variable. Session N+1 looks for each of them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

import sandcell
from sandcell_gateway.testing import GatewayProcess, wait_for

pytestmark = pytest.mark.docker

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 1
max_total = 1
adaptive = false

[plugins]
enabled = false
"""

LEAVE_BEHIND = """
import os, socket, subprocess, sys
MARK = {mark!r}
for folder in (os.path.expanduser("~"), "/tmp", "/dev/shm"):
    with open(os.path.join(folder, "left-" + MARK), "w") as f:
        f.write(MARK)
os.environ["LEFT_BEHIND"] = MARK
left_behind = MARK
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10**6)", MARK],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
socket.gethostname()
"""

LOOK = """
import glob, json, os, socket
found = {{
    "files": sorted(glob.glob(os.path.expanduser("~") + "/left-*") + glob.glob("/tmp/left-*")
                    + glob.glob("/dev/shm/left-*")),
    "env": os.environ.get("LEFT_BEHIND"),
    "variable": "left_behind" in globals(),
    "processes": [pid for pid in os.listdir("/proc") if pid.isdigit()
                  and {mark!r}.encode() in open(f"/proc/{{pid}}/cmdline", "rb").read()],
    "hostname": socket.gethostname(),
}}
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("isolation"), CONFIG) as gw:
        gw.wait_ready()
        yield gw
        assert gw.health()["pools"]["python"]["max_total"] == 1


def look(session: sandcell.Session, mark: str) -> dict[str, Any]:
    execution = session.execute(LOOK.format(mark=mark), timeout=60)
    assert execution.error is None, execution.error
    return dict(json.loads(execution.stdout))


def test_session_n_plus_1_sees_nothing_of_session_n(gateway: GatewayProcess) -> None:
    mark = secrets.token_hex(8)
    with sandcell.Client(base_url=gateway.url, token=gateway.token) as client:
        with client.sessions.create(template="python") as first:
            left = first.execute(LEAVE_BEHIND.format(mark=mark), timeout=60)
            assert left.error is None, left.error
            # what session N+1 must not see is really there in session N
            before = look(first, mark)
            assert len(before["files"]) == 3 and before["env"] == mark and before["variable"]
            assert len(before["processes"]) == 1
            first_container = gateway.container_of(first.id)
            assert first_container is not None
        with client.sessions.create(template="python") as second:
            after = look(second, mark)
            second_container = gateway.container_of(second.id)
    assert second.id != first.id
    assert second_container is not None and second_container["Id"] != first_container["Id"]
    assert after == {"files": [], "env": None, "variable": False, "processes": [],
                     "hostname": after["hostname"]}
    assert after["hostname"] != before["hostname"]


def test_a_closed_sessions_container_is_removed(gateway: GatewayProcess) -> None:
    """Destroyed, not parked: its container leaves Docker once its session ends."""
    with sandcell.Client(base_url=gateway.url, token=gateway.token) as client:
        with client.sessions.create(template="python") as session:
            container = gateway.container_of(session.id)
            assert container is not None
        wait_for(lambda: gateway.container_of(session.id) is None, 60,
                 f"sandbox {session.id}'s container to be removed")
    assert all(c["Id"] != container["Id"] for c in gateway.containers())
