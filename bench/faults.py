"""``python -m bench.faults``: every attack/fault of issue 4 against real Docker, as one table.

Per row: what the attacker's session saw, a bystander session's ``1+1`` latency during the
attack (and whether its kernel kept its state), and the time until the system was back to
normal, where each row says what "normal" is. The first row is the idle baseline.

Rows are the ``FAULTS`` list: to add one, write ``def my_fault(lab: Lab) -> Observed`` (the
attack inside ``with lab.attack():``, then :func:`recovered` for each "normal") and append
``Fault("key", "what it is", my_fault)``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import httpx

import sandcell
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import wait_for

from .fault_lab import GREEDY_TOKEN, Fault, Lab, Observed, Recovery, Row, answers, measure, recovered, table
from .footprint import gateway_rss
from .stats import MIB

FORK_BOMB = """
import os, time
pids, stopped = [], None
try:
    for _ in range(5000):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        pids.append(pid)
except OSError as exc:
    stopped = exc.errno
finally:
    for pid in pids:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
print(stopped, len(pids))
"""
MEMORY_BOMB = "x = []\nwhile True:\n    x.append(bytearray(64 << 20))"
DISK_FILL = """
import errno, os
for d in ('/tmp', os.path.expanduser('~')):
    mib = 0
    try:
        with open(os.path.join(d, 'fill'), 'wb') as f:
            for _ in range(4096):
                f.write(b'x' * (1 << 20))
                mib += 1
        print(d, 'no-limit', mib)
    except OSError as exc:
        print(d, errno.errorcode[exc.errno], mib)
"""
DISK_FREE = """
import contextlib, os
for d in ('/tmp', os.path.expanduser('~')):
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(d, 'fill'))
    with open(os.path.join(d, 'ok'), 'wb') as f:
        f.write(b'x' * (1 << 20))
print('written')
"""
SPIN = "print('spinning', flush=True)\nwhile True:\n    pass"
FLOOD = "while True:\n    print('x' * 10000)"
LEAVE = "print('go', flush=True)\nimport time\ntime.sleep(120)\nfinished = True"
# the hostile-kernel rows (issue 17): each of HOSTILE sandboxes sends with the kernel's own
# session, past the gateway's output extension; HUGE is over the default 64 MiB limit
HOSTILE = 8
HUGE = ("k = get_ipython().kernel\n"
        "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'x' * 100_000_000}, "
        "parent=k.get_parent())\nimport time; time.sleep(60)")
TINY = ("import time\nk = get_ipython().kernel\nend, n = time.monotonic() + 10, 0\n"
        "while time.monotonic() < end:\n"
        "    k.session.send(k.iopub_socket, 'stream', {'name': 'stderr', 'text': '.'}, "
        "parent=k.get_parent())\n    n += 1\n"
        "time.sleep(3)")  # the kernel's own PUB queue drains (it would drop the cell's idle)
# what the guard drops or refuses, each sent 2000 times from each of HOSTILE sandboxes; every
# cell ends with a real reply and prints "done" (a dropped message costs the cell nothing).
# Thousands at once overflow the kernel's own IOPub queue (ZMQ's high-water mark, 1000): the
# floods that queue there pause 3 s, as TINY does, so their own "done" and idle are not lost
_KERNEL = "k = get_ipython().kernel\ns = k.iopub_socket\nfor _ in range(2000):\n"
MALFORMED = (_KERNEL + "    s.send_multipart([b'<IDS|MSG>', b'', b'{}', b'{}', b'{}', b'{}'])\n"
             "    s.send_multipart([b'garbage'])\n"
             "    s.send_multipart([b'<IDS|MSG>', b'bad', b'[', b'{}', b'{}', b'{}'])\n"
             "print('done')")
FORGED = (_KERNEL + "    k.session.send(s, 'stream', {'name': 'stdout', 'text': 'forged'}, "
          "parent={'msg_id': 'someone-else'})\n"
          "    k.session.send(s, 'status', {'execution_state': 'idle'}, "
          "parent={'msg_id': 'someone-else'})\n"
          "import time; time.sleep(3)\nprint('done')")  # as TINY: its own PUB queue drains
MIME = ("k = get_ipython().kernel\nfor _ in range(20):\n"
        "    k.session.send(k.iopub_socket, 'display_data', {'data': {f'x/{i}': '' for i in "
        "range(5000)}, 'metadata': {}}, parent=k.get_parent())\nprint('done')")
COMM = (_KERNEL + "    k.session.send(s, 'comm_open', {'comm_id': 'c', 'target_name': 't', "
        "'data': {}}, parent=k.get_parent())\n"
        "    k.session.send(s, 'input_request', {'prompt': '', 'password': False}, "
        "parent=k.get_parent())\nimport time; time.sleep(3)\nprint('done')")
WATCH_SAMPLES = 20  # bystander 1+1s in the idle baseline and while the CPU spins
SLEEP_TIMEOUT = 2.0


def idle(lab: Lab) -> Observed:
    with lab.attack() as watch:
        wait_for(lambda: watch.count >= WATCH_SAMPLES, 60, "idle bystander samples")
    return Observed("no attack: the bystander's baseline")


def fork_bomb(lab: Lab) -> Observed:
    with lab.attacker() as session:
        with lab.attack():
            ex = session.execute(FORK_BOMB, timeout=120)
        ended = time.monotonic()
        stopped, forks = ex.stdout.split()
        why = errno.errorcode.get(int(stopped), stopped) if stopped != "None" else "no error"
        return Observed(f"OSError {why} after {forks} forks (pids limit)",
                        [recovered("same session answers 1+1", ended, lambda: answers(session))])


def memory_bomb(lab: Lab) -> Observed:
    with lab.attacker() as session:
        with lab.attack():
            started = time.monotonic()
            try:
                session.execute(MEMORY_BOMB, timeout=120)
                return Observed("NOT contained: the cell ended without dying")
            except sandcell.SandboxError as exc:
                error = exc
        detected = time.monotonic()
        state = session.refresh().state
        restart = _restart(session)
        return Observed(f"SandboxError {error.code} after {detected - started:.1f} s: "
                        f"{_short(error.message)}; sandbox {state}", [restart])


def _restart(session: sandcell.Session) -> Recovery:
    """restart() swaps a warm kernel in under the same id: time the call and the first 1+1."""
    started = time.monotonic()
    session.restart()
    return recovered("restart() call until 1+1 answers", started, lambda: answers(session))


def disk_fill(lab: Lab) -> Observed:
    with lab.attacker() as session:
        with lab.attack():
            ex = session.execute(DISK_FILL, timeout=120)
        ended = time.monotonic()
        still = session.execute("1+1", timeout=30).text
        filled = "; ".join(f"{d}: {why} after {mib} MiB"
                           for d, why, mib in (line.split() for line in ex.stdout.splitlines()))
        return Observed(f"{filled}; 1+1 on the full disks gives {still}",
                        [recovered("fill files removed, 1 MiB writes succeed", ended,
                                   lambda: session.execute(DISK_FREE, timeout=30).stdout
                                   == "written\n")])


def cpu_spin(lab: Lab) -> Observed:
    with lab.attacker() as session, session.execute_stream(SPIN) as stream:
        next(e for e in stream if isinstance(e, sandcell.StreamEvent))  # it spins now
        started = time.monotonic()
        with lab.attack() as watch:
            wait_for(lambda: watch.count >= WATCH_SAMPLES, 120, "bystander samples")
        interrupted = time.monotonic()
        session.interrupt()
        ex = stream.result()
        idle_again = Recovery("interrupt() until the cell's reply (kernel idle)",
                              time.monotonic() - interrupted)
        return Observed(f"spun {interrupted - started:.1f} s (1 CPU quota); interrupt -> "
                        f"{ex.error.ename if ex.error else 'no error'}",
                        [idle_again, recovered("same session answers 1+1", interrupted,
                                               lambda: answers(session))])


def output_flood(lab: Lab) -> Observed:
    before = gateway_rss(lab.gw)
    with lab.attacker() as session:
        with lab.attack(), session.execute_stream(FLOOD) as stream:
            started = time.monotonic()
            received, messages, marker = _read_until_truncated(stream)
            truncated = time.monotonic() - started
            peak = gateway_rss(lab.gw)
            interrupted = time.monotonic()
            session.interrupt()
            ex = stream.result()
            idle_again = Recovery("interrupt() until the cell's reply (kernel idle)",
                                  time.monotonic() - interrupted)
        after = gateway_rss(lab.gw)
        return Observed(
            f"{received / MIB:.1f} MiB of stdout in {messages} message(s), then after "
            f"{truncated:.1f} s a "
            f"{marker.name} marker '{marker.text.strip().split(';')[0]}]'; interrupt -> "
            f"{ex.error.ename if ex.error else 'no error'}; gateway RSS {before:.0f} -> "
            f"{peak:.0f} (flooding) -> {after:.0f} MiB (done)",
            [idle_again, recovered("same session answers 1+1", interrupted,
                                   lambda: answers(session))])


def _read_until_truncated(stream: sandcell.ExecutionStream
                          ) -> tuple[int, int, sandcell.StreamEvent]:
    """Bytes and messages of stdout that arrived before the gateway's truncation marker, and
    the marker. ipykernel batches a tight print loop into few huge messages: the gateway
    keeps the part of the one crossing the limit that fits."""
    received = messages = 0
    for event in stream:
        if isinstance(event, sandcell.StreamEvent):
            if "output truncated" in event.text:
                return received, messages, event
            received += len(event.text.encode())
            messages += 1
    raise RuntimeError("the flood ended without a truncation marker")


@contextlib.contextmanager
def _hostile(lab: Lab, code: str) -> Iterator[tuple[list[sandcell.Session], list[object]]]:
    """Run ``code`` in HOSTILE fresh sessions at once (the attack, over when the block is
    entered); yields the sessions (open for the recoveries) and what each ended with."""
    sessions = [lab.client.sessions.create() for _ in range(HOSTILE)]
    lab.gw.wait_ready()  # the pool's refill is over before the attack
    results: list[object] = []

    def run(session: sandcell.Session) -> None:
        try:
            results.append(session.execute(code, timeout=120))
        except sandcell.SandcellError as exc:
            results.append(exc)

    try:
        with lab.attack():
            threads = [threading.Thread(target=run, args=(s,)) for s in sessions]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        yield sessions, results
    finally:
        for session in sessions:
            with contextlib.suppress(sandcell.SandcellError):
                session.close()


def huge_messages(lab: Lab) -> Observed:
    with _hostile(lab, HUGE) as (sessions, results):
        ended = time.monotonic()
        died = [r for r in results if isinstance(r, sandcell.SandboxError)
                and r.code == "kernel_died" and "over the limit" in r.message]
        fresh = recovered("a new session answers 1+1", ended, lambda: _fresh(lab))
        restart = _restart(sessions[0])
    return Observed(f"{len(died)} of {HOSTILE} sandboxes died: kernel_died "
                    f"'{_short(died[0].message if died else str(results[:1]), 70)}'",
                    [fresh, restart])


def _fresh(lab: Lab) -> bool:
    with lab.client.sessions.create() as session:
        return answers(session)


def tiny_messages(lab: Lab) -> Observed:
    with _hostile(lab, TINY) as (sessions, results):
        ended = time.monotonic()
        again = recovered(f"all {HOSTILE} attackers answer 1+1", ended,
                          lambda: all(answers(s) for s in sessions))
        sent = sum(int(s.execute("n", timeout=30).text) for s in sessions)
    runs = [r for r in results if isinstance(r, sandcell.Execution)]
    delivered = sum(len(r.stderr) for r in runs)
    return Observed(f"{len(runs)} of {HOSTILE} cells ran 10 s: {sent} messages sent, {delivered} "
                    "delivered (200/s per sandbox; the kernel's own PUB drops the rest)", [again])


def _refused(code: str, what: str, seen: str = "") -> Callable[[Lab], Observed]:
    """A row for messages the guard drops or refuses: every attacker's cell still ends (with
    ``done``), ``seen`` (if given) never reaches a client, and the attackers answer after."""
    def attack(lab: Lab) -> Observed:
        with _hostile(lab, code) as (sessions, results):
            ended = time.monotonic()
            again = recovered(f"all {HOSTILE} attackers answer 1+1", ended,
                              lambda: all(answers(s) for s in sessions))
        runs = [r for r in results if isinstance(r, sandcell.Execution)]
        done = sum(1 for r in runs if r.stdout.strip().endswith("done"))
        leaked = sum(1 for r in runs if seen and seen in r.stdout)
        notes = {r.stderr.strip()[:60] for r in runs if r.stderr.strip()}
        note = f"; notice: '{_short(sorted(notes)[0], 60)}'" if notes else ""
        return Observed(f"{done} of {HOSTILE} cells ended normally ({what})"
                        + (f", '{seen}' shown {leaked} times" if seen else "") + note, [again])

    return attack


def kernel_suicide(lab: Lab) -> Observed:
    with lab.attacker() as session:
        with lab.attack():
            started = time.monotonic()
            try:
                session.execute("import os; os.kill(os.getpid(), 9)", timeout=30)
                return Observed("NOT noticed: the cell ended normally")
            except sandcell.SandboxError as exc:
                error = exc
        detected = time.monotonic()
        state = session.refresh().state
        try:
            session.execute("1+1")
            then = "then 1+1 still ran"
        except sandcell.APIStatusError as exc:
            then = f"then 1+1: {exc.status_code} {exc.code}"
        return Observed(f"SandboxError {error.code} after {detected - started:.2f} s; sandbox "
                        f"{state}, {then}", [_restart(session)])


def long_sleep(lab: Lab) -> Observed:
    with lab.attacker() as session:
        with lab.attack():
            started = time.monotonic()
            try:
                session.execute("import time; time.sleep(10**6)", timeout=SLEEP_TIMEOUT)
                return Observed("NOT cut: the cell returned")
            except sandcell.TimeoutError:
                fired = time.monotonic()
        return Observed(f"sandcell.TimeoutError after {fired - started:.2f} s "
                        f"(timeout={SLEEP_TIMEOUT:g})",
                        [recovered("same session answers 1+1 (kernel idle)", fired,
                                   lambda: answers(session))])


def container_removed(lab: Lab) -> Observed:
    with lab.attacker() as session:
        container = lab.gw.container_of(session.id)
        assert container is not None, session.id
        with lab.attack():
            removed = time.monotonic()
            with contextlib.closing(docker.APIClient()) as api:
                api.remove_container(container["Id"], force=True)
            detected = recovered("gateway marks the sandbox dead (detection)", removed,
                                 lambda: session.refresh().state == "dead")
        try:
            session.execute("1+1", timeout=30)
            seen = "1+1 still ran"
        except sandcell.APIStatusError as exc:
            seen = f"{type(exc).__name__} {exc.status_code} {exc.code}"
        except sandcell.SandboxError as exc:
            seen = f"SandboxError {exc.code}"
        return Observed(f"`docker rm -f`; next 1+1: {seen}",
                        [detected, _restart(session)])


def client_leaves(lab: Lab) -> Observed:
    with lab.attacker() as session:
        with lab.attack():
            with session.execute_stream(LEAVE) as stream:
                next(e for e in stream if isinstance(e, sandcell.StreamEvent))
            left = time.monotonic()  # the stream is closed mid-cell
            idle_again = recovered("same session answers, the cell never finished", left,
                                   lambda: answers(session, "'finished' in dir()", "False"))
        return Observed("stream closed after the first output of a 120 s cell; the gateway "
                        "interrupts it", [idle_again])


def gateway_kill(lab: Lab) -> Observed:
    """No bystander latency: the gateway is down. The bystander's kernel must survive it."""
    session_id = lab.client.sessions.create().id
    try:
        lab.client.sessions.get(session_id).execute("x = 42")
        lab.gw.wait_ready()
        lab.gw.kill()
        started = time.monotonic()
        lab.gw.start()  # returns once the gateway listens: its recovery pass is done
        serving = Recovery("gateway serves again (re-adoption done)", time.monotonic() - started)
        lab.reconnect()
        adopted = lab.client.sessions.get(session_id)
        answer = recovered("adopted session answers x (same kernel)", started,
                           lambda: answers(adopted, "x", "42"))
        full = recovered("pool back to min_ready", started, lab.pool_full)
        summary = [line for line in lab.gw.log().splitlines() if "re-adopted" in line][-1]
        return Observed(f"SIGKILL; the restart re-adopted{summary.split('re-adopted', 1)[1]}",
                        [serving, answer, full])
    finally:
        lab.client.sessions.get(session_id).close()


def docker_outage(lab: Lab) -> Observed:
    claimed: list[str] = []
    with lab.gw.http() as http:
        try:
            with lab.attack():
                lab.proxy.cut()
                try:
                    cut = time.monotonic()
                    wait_for(lambda: lab.gw.health()["status"] == "degraded", 30,
                             "/health degraded")
                    detected = time.monotonic() - cut
                    refused = _drain(http, claimed)
                    warm = len(claimed)
                finally:
                    lab.proxy.restore()
                    restored = time.monotonic()
            first = recovered("a create succeeds (201)", restored, lambda: _claim(http, claimed))
            full = recovered("pool back to min_ready", restored, lab.pool_full)
        finally:
            for sandbox_id in claimed:
                http.delete(f"/api/v1/sandboxes/{sandbox_id}")
    error = refused.json()["error"]
    return Observed(f"/health degraded after {detected:.2f} s; {warm} warm "
                    f"claim(s) still served, then {refused.status_code} {error['code']}: "
                    f"{_short(error['message'])}", [first, full])


def rate_limited(lab: Lab) -> Observed:
    """A tenant past its execute rate (burst 3, 2/s) is told when to come back; the bystander,
    another tenant, is not slowed."""
    with lab.client_of(GREEDY_TOKEN) as greedy, greedy.sessions.create() as session:
        lab.gw.wait_ready()
        with lab.attack():
            admitted, refused = 0, None
            while refused is None and admitted < 50:
                try:
                    session.execute("1+1")
                    admitted += 1
                except sandcell.RateLimitError as exc:
                    refused, limited = exc, time.monotonic()
            if refused is None:
                raise RuntimeError("50 executions in a row: none refused")
            again = recovered("the tenant's next execute succeeds", limited,
                              lambda: answers(session))
    return Observed(f"{admitted} executions admitted (the burst), then {refused.status_code} "
                    f"{refused.code}, Retry-After {refused.retry_after:g} s", [again])


def bad_input(lab: Lab) -> Observed:
    """Malformed, mistyped, oversized and path-traversing requests at every kind of route."""
    with lab.attacker() as session, lab.gw.http() as http:
        with lab.attack():
            statuses: dict[int, int] = {}
            for method, path, body in _bad_requests(session.id):
                response = http.request(method, path, content=body)
                assert response.json()["error"]["code"], (method, path)  # JSON, with a code
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            done = time.monotonic()
            fine = recovered("the attacker's own session answers 1+1", done,
                             lambda: answers(session))
    if any(status >= 500 for status in statuses):
        raise RuntimeError(f"a bad request got a 5xx: {statuses}")
    counts = ", ".join(f"{n}x {status}" for status, n in sorted(statuses.items()))
    return Observed(f"{sum(statuses.values())} bad requests: {counts}; every answer a JSON "
                    "error with a code, no 5xx", [fine])


def _bad_requests(sandbox_id: str) -> list[tuple[str, str, bytes | None]]:
    sandbox = f"/api/v1/sandboxes/{sandbox_id}"
    return [
        ("POST", "/api/v1/sandboxes", b"{not json"),
        ("POST", "/api/v1/sandboxes", b'{"template": 5}'),
        ("POST", "/api/v1/sandboxes", b'{"surprise": true}'),
        ("POST", "/api/v1/sandboxes", b'{"timeout": 1e999}'),
        ("POST", f"{sandbox}/execute", b'{"code": 1}'),
        ("POST", f"{sandbox}/execute", b'{"code": "1+1", "timeout": -1}'),
        ("POST", f"{sandbox}/execute", b'{"code": "' + b"x" * (2 << 20) + b'"}'),
        ("GET", "/api/v1/sandboxes/..%2F..%2Fetc%2Fpasswd", None),
        ("GET", "/api/v1/sandboxes/%2e%2e/notebook", None),
        ("DELETE", "/api/v1/sandboxes/sbx_%00", None),
        ("POST", "/api/v1/sandboxes/" + "a" * 4000 + "/interrupt", None),
        ("POST", "/api/kernels", b'{"name": []}'),
        ("GET", "/api/kernels/..%2F..%2Fetc%2Fpasswd", None),
        ("POST", "/api/v1/plugins/..%2Fadd_numbers/invoke", b"{}"),
    ]


def _drain(http: httpx.Client, claimed: list[str]) -> httpx.Response:
    """Claim until the gateway refuses (the warm pool is empty and Docker is gone)."""
    for _ in range(16):
        response = http.post("/api/v1/sandboxes", json={})
        if response.status_code != 201:
            return response
        claimed.append(response.json()["id"])
    raise RuntimeError("16 claims during a Docker outage: nothing refused")


def _claim(http: httpx.Client, claimed: list[str]) -> bool:
    response = http.post("/api/v1/sandboxes", json={})
    if response.status_code == 201:
        claimed.append(response.json()["id"])
    return response.status_code == 201


def _short(message: str, limit: int = 100) -> str:
    """A gateway message for a table cell: sandbox ids and temp paths say nothing here."""
    message = re.sub(r"sbx_[0-9a-f]{16}", "sbx_...", message)
    message = re.sub(r"unix://\S*/docker\.sock", "unix://.../docker.sock", message)
    return message if len(message) <= limit else message[:limit] + "..."


FAULTS = [
    Fault("idle", "none (idle baseline)", idle),
    Fault("fork", "fork bomb", fork_bomb),
    Fault("oom", "memory bomb (OOM)", memory_bomb),
    Fault("disk", "disk fill (/tmp and workspace)", disk_fill),
    Fault("cpu", "CPU spin", cpu_spin),
    Fault("flood", "output flood", output_flood),
    Fault("huge", f"{HOSTILE} hostile kernels: one 100 MB message each", huge_messages),
    Fault("tiny", f"{HOSTILE} hostile kernels: tiny messages for 10 s", tiny_messages),
    Fault("malformed", f"{HOSTILE} hostile kernels: unsigned, garbage and bad-JSON frames",
          _refused(MALFORMED, "6000 malformed frames each dropped and counted")),
    Fault("forged", f"{HOSTILE} hostile kernels: output and idle under a forged parent",
          _refused(FORGED, "4000 forged messages each", seen="forged")),
    Fault("mime", f"{HOSTILE} hostile kernels: display_data with 5000 MIME types",
          _refused(MIME, "20 bundles each refused")),
    Fault("comm", f"{HOSTILE} hostile kernels: comm_open and input_request floods",
          _refused(COMM, "2000 of each, over the per-type rate")),
    Fault("suicide", "kernel suicide (os.kill self -9)", kernel_suicide),
    Fault("sleep", f"time.sleep(10**6), per-call timeout {SLEEP_TIMEOUT:g} s", long_sleep),
    Fault("removed", "container removed behind the gateway's back", container_removed),
    Fault("leave", "client disconnects mid-stream", client_leaves),
    Fault("rate", "a tenant over its execute rate", rate_limited),
    Fault("badinput", "bad input at every kind of route", bad_input),
    Fault("outage", "Docker outage (socket cut)", docker_outage),
    Fault("kill", "gateway kill -9 + restart", gateway_kill),
]


def run_faults(keys: set[str] | None = None) -> list[Row]:
    """Measure the chosen rows (all by default) on one fresh gateway."""
    ensure_images(["python"])
    chosen = [f for f in FAULTS if keys is None or f.key in keys]
    with tempfile.TemporaryDirectory() as tmp, Lab.open(Path(tmp)) as lab:
        return [measure(fault, lab) for fault in chosen]


def write_json(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([row.as_dict() for row in rows], indent=2))


def main() -> None:
    keys = [f.key for f in FAULTS]
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default=",".join(keys),
                        help=f"comma-separated subset of {','.join(keys)}")
    parser.add_argument("--json", type=Path, default=Path("bench/results/faults.json"))
    args = parser.parse_args()
    chosen = set(args.faults.split(","))
    if unknown := chosen - set(keys):
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    rows = run_faults(chosen)
    print(table(rows))
    write_json(rows, args.json)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
