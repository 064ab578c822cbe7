"""Hostile code in one sandbox: it is contained, and the gateway and other sessions stay healthy.

Each attack runs in its own sandbox, beside a bystander session that must keep answering.
"""

from __future__ import annotations

import time

import docker
import pytest

import sandcell

from .conftest import Gateway

pytestmark = pytest.mark.docker


@pytest.fixture
def bystander(client: sandcell.Client) -> sandcell.Session:
    with client.sessions.create() as session:
        session.execute("canary = 'alive'")
        yield session
        assert session.execute("canary").text == "'alive'"


def test_fork_bomb_is_contained_by_the_pids_limit(client: sandcell.Client,
                                                  bystander: sandcell.Session) -> None:
    code = ("import os\npids = []\ntry:\n    for _ in range(5000):\n        pid = os.fork()\n"
            "        if pid == 0:\n            import time; time.sleep(60); os._exit(0)\n"
            "        pids.append(pid)\nexcept OSError as exc:\n    print('stopped:', exc.errno)\n"
            "finally:\n    for pid in pids:\n        os.kill(pid, 9)\n        os.waitpid(pid, 0)\n    print(len(pids))")
    with client.sessions.create() as session:
        ex = session.execute(code, timeout=120)
        assert "stopped: 11" in ex.stdout  # EAGAIN: the pids cgroup said no
        assert int(ex.stdout.split()[-1]) < 256
        assert session.execute("1+1").text == "2"


def test_memory_bomb_kills_only_its_sandbox(client: sandcell.Client, gateway: Gateway,
                                            bystander: sandcell.Session) -> None:
    with client.sessions.create() as session:
        with pytest.raises(sandcell.SandboxError) as info:
            session.execute("x = []\nwhile True:\n    x.append(bytearray(64 << 20))", timeout=120)
        assert info.value.code == "kernel_died"
        assert "out of memory" in str(info.value), info.value
        assert client.sessions.get(session.id).info.state == "dead"
    gateway.wait_ready()  # the pool is whole again


def test_disk_fill_hits_enospc_inside_the_sandbox(client: sandcell.Client,
                                                  bystander: sandcell.Session) -> None:
    code = ("import errno, os\nfor d in ('/tmp', os.path.expanduser('~')):\n    try:\n"
            "        with open(os.path.join(d, 'fill'), 'wb') as f:\n"
            "            for _ in range(4096):\n                f.write(b'x' * (1 << 20))\n"
            "        print(d, 'no limit')\n    except OSError as exc:\n"
            "        print(d, errno.errorcode[exc.errno])\n"
            "    os.remove(os.path.join(d, 'fill'))")
    with client.sessions.create() as session:
        ex = session.execute(code, timeout=120)
    assert ex.stdout.count("ENOSPC") == 2, ex.stdout


def test_cpu_spin_does_not_starve_another_session(client: sandcell.Client,
                                                  bystander: sandcell.Session) -> None:
    with client.sessions.create() as spinner:
        with spinner.execute_stream("print('spinning', flush=True)\nwhile True:\n    pass") as stream:
            next(e for e in stream if isinstance(e, sandcell.StreamEvent))  # it spins now
            latencies = []
            for _ in range(10):
                start = time.perf_counter()
                assert bystander.execute("1+1").text == "2"
                latencies.append(time.perf_counter() - start)
            spinner.interrupt()
            assert stream.result().error.ename == "KeyboardInterrupt"
        assert sorted(latencies)[len(latencies) // 2] < 0.5, latencies


@pytest.mark.parametrize("target", ["10.0.0.1", "172.17.0.1", "192.168.1.1",
                                    "169.254.169.254", "1.1.1.1", "8.8.8.8"])
def test_no_route_out(client: sandcell.Client, target: str) -> None:
    code = (f"import socket\ntry:\n    socket.create_connection(('{target}', 80), timeout=3)\n"
            "    print('connected')\nexcept OSError as exc:\n    print('refused', exc.errno)")
    with client.sessions.create() as session:
        ex = session.execute(code, timeout=30)
    assert ex.stdout.startswith("refused"), ex.stdout


def test_cannot_reach_another_sandboxs_kernel(client: sandcell.Client) -> None:
    """Only this sandbox's own connection directory is mounted, and nothing else from the
    host: no other kernel's ipc sockets exist in its filesystem."""
    code = ("import os\nprint(sorted(os.listdir('/conn')))\n"
            "print([l.split()[4] for l in open('/proc/self/mountinfo') if ' /conn ' in l "
            "or '/sandcell-' in l])")
    with client.sessions.create() as session, client.sessions.create() as other:
        ex = session.execute(code, timeout=30)
        files, mounts = ex.stdout.splitlines()
        assert files == "['k-1', 'k-2', 'k-3', 'k-4', 'k-5', 'kernel.json']"
        assert mounts == "['/conn']"
        assert other.id not in ex.stdout


def test_host_processes_are_invisible(client: sandcell.Client) -> None:
    code = ("import os\nprint(sorted(open(f'/proc/{p}/comm').read().strip() "
            "for p in os.listdir('/proc') if p.isdigit()))")
    with client.sessions.create() as session:
        ex = session.execute(code, timeout=30)
    assert set(eval(ex.stdout)) <= {"tini", "python", "sandcell-kernel", "sh"}, ex.stdout


ESCAPES = {
    "setuid root": "import os; os.setuid(0)",
    "mount": "import ctypes; libc = ctypes.CDLL(None, use_errno=True)\n"
             "assert libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0, ctypes.get_errno()",
    "ptrace a host pid": "import ctypes; libc = ctypes.CDLL(None, use_errno=True)\n"
                         "assert libc.ptrace(16, 4000000, None, None) == 0, ctypes.get_errno()",
    "write root fs": "open('/etc/passwd', 'a').write('x')",
    "docker socket": "import socket; s = socket.socket(socket.AF_UNIX)\n"
                     "s.connect('/var/run/docker.sock')",
    "host files": "open('/proc/1/root/etc/shadow').read()",
    "raw socket": "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_attempts_fail(client: sandcell.Client, name: str) -> None:
    with client.sessions.create() as session:
        ex = session.execute(ESCAPES[name], timeout=30)
    assert ex.error is not None, f"{name} succeeded"
    assert ex.error.ename in ("PermissionError", "AssertionError", "OSError",
                              "FileNotFoundError", "ConnectionRefusedError"), ex.error


def test_kernel_suicide_reports_kernel_died(client: sandcell.Client,
                                            bystander: sandcell.Session) -> None:
    with client.sessions.create() as session:
        with pytest.raises(sandcell.SandboxError) as info:
            session.execute("import os; os.kill(os.getpid(), 9)", timeout=30)
        assert info.value.code == "kernel_died"
        assert client.sessions.get(session.id).info.state == "dead"
        with pytest.raises(sandcell.ConflictError):
            session.execute("1+1")
        session.restart()
        assert session.execute("1+1").text == "2"


def test_long_sleep_is_cut_by_the_per_call_timeout(client: sandcell.Client) -> None:
    with client.sessions.create() as session:
        start = time.perf_counter()
        with pytest.raises(sandcell.TimeoutError):
            session.execute("import time; time.sleep(10**6)", timeout=2)
        assert time.perf_counter() - start < 30
        assert session.execute("1+1").text == "2"


def test_container_removed_behind_the_gateways_back(client: sandcell.Client,
                                                    gateway: Gateway) -> None:
    with client.sessions.create() as session:
        docker_client = docker.from_env()
        try:
            [container] = docker_client.containers.list(
                filters={"label": [f"org.sandcell.gateway={gateway.gateway_id}",
                                   f"org.sandcell.sandbox={session.id}"]})
            container.remove(force=True)
        finally:
            docker_client.close()
        with pytest.raises((sandcell.SandboxError, sandcell.ConflictError)):
            session.execute("1+1", timeout=30)
        assert client.sessions.get(session.id).info.state == "dead"


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(l for l in status if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def test_output_flood_is_truncated_and_interruptible(client: sandcell.Client, gateway: Gateway,
                                                     bystander: sandcell.Session) -> None:
    assert gateway.process is not None
    before = _rss_mb(gateway.process.pid)
    with client.sessions.create() as session:
        with session.execute_stream("while True:\n    print('x' * 10000)") as stream:
            chunks, marker = [], None
            for event in stream:
                if isinstance(event, sandcell.StreamEvent):
                    if "output truncated" in event.text:
                        marker = event
                        break
                    chunks.append(len(event.text))
            assert marker is not None and marker.name == "stderr"
            # the image's sandcell_output extension: ~1 MiB messages, not one of tens of MiB
            assert len(chunks) >= 16 and max(chunks) < (1 << 20) + 20_000, chunks
            session.interrupt()
            ex = stream.result()
        assert ex.error is not None and ex.error.ename == "KeyboardInterrupt"
        assert len(ex.stdout) == 32 << 20  # exactly the budget: a huge batch is cut, not lost
        assert session.execute("1+1").text == "2"
    assert _rss_mb(gateway.process.pid) - before < 200


def test_client_that_leaves_mid_stream_interrupts_its_cell(client: sandcell.Client) -> None:
    """Documented policy (docs/api.md): closing the stream early interrupts the cell."""
    with client.sessions.create() as session:
        code = "print('go', flush=True)\nimport time\ntime.sleep(120)\nfinished = True"
        with session.execute_stream(code) as stream:
            next(e for e in stream if isinstance(e, sandcell.StreamEvent))
        start = time.perf_counter()
        assert session.execute("'finished' in dir()", timeout=60).text == "False"
        assert time.perf_counter() - start < 30
