"""A hostile kernel: attacks sent from inside real sandboxes with the kernel's own session,
beside a bystander session, on a gateway of this module's own (a low per-message limit keeps
the attacks cheap). The gateway's RSS is sampled throughout.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import pytest

import sandcell
from sandcell_gateway.config import GatewayConfig
from sandcell_gateway.guard import CHUNK
from sandcell_gateway.kernel import TYPE_BURST_SECONDS, TYPE_RATES
from sandcell_gateway.testing import GatewayProcess, wait_for

from .test_jupyter_api import receive, replies, request, send, websocket, ws_url

pytestmark = pytest.mark.docker
T = TypeVar("T")

LIMIT = 8 << 20  # max_kernel_message_bytes here: big enough for real output, cheap to exceed
RATE = GatewayConfig().max_kernel_messages_per_second  # the default, per sandbox
ATTACKERS = 8
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"
sandbox_ttl = 600
claim_timeout = 120
max_kernel_message_bytes = {LIMIT}

[templates.python]
min_ready = 2
max_total = {ATTACKERS + 2}

[plugins]
enabled = false
"""
SEND = ("k = get_ipython().kernel\n"
        "k.session.send(k.iopub_socket, 'stream', {{'name': 'stdout', 'text': 'x' * {n}}}, "
        "parent=k.get_parent())\nimport time; time.sleep(30)")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


class RssSampler:
    """The gateway's peak resident set while the block runs (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bystander_latencies(bystander: sandcell.Session, attack: Callable[[T], object],
                        attackers: Iterable[T]) -> list[float]:
    """Run ``attack(a)`` for each of ``attackers``, each in a thread; meanwhile time the
    bystander's ``1+1`` over and over (20 at least) until every attack has ended."""
    threads = [threading.Thread(target=attack, args=(a,)) for a in attackers]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    try:
        while any(t.is_alive() for t in threads) or len(latencies) < 20:
            started = time.perf_counter()
            assert bystander.execute("1+1", timeout=60).text == "2"
            latencies.append(time.perf_counter() - started)
    finally:
        for thread in threads:
            thread.join()
    return latencies


def p99(latencies: list[float]) -> float:
    """Of 20 samples, the second slowest; of 100, the slowest but one."""
    return sorted(latencies)[int(len(latencies) * 0.99) - 1]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("hostile"), CONFIG).start()
    try:
        gw.wait_ready(timeout=300)
        yield gw
    finally:
        gw.stop()
        assert gw.containers() == [], gw.log()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[sandcell.Client]:
    with sandcell.Client(base_url=gateway.url, token=gateway.token, timeout=180) as c:
        yield c


def test_eight_sandboxes_over_the_limit_die_with_the_reason_and_memory_stays_bounded(
        client: sandcell.Client, gateway: GatewayProcess) -> None:
    assert gateway.process is not None
    with client.sessions.create() as bystander:
        bystander.execute("canary = 'alive'")
        attackers = [client.sessions.create() for _ in range(ATTACKERS)]
        try:
            baseline = rss_mib(gateway.process.pid)
            errors: list[BaseException] = []

            def attack(session: sandcell.Session) -> None:
                try:
                    session.execute(SEND.format(n=40 * LIMIT), timeout=120)
                except BaseException as exc:  # noqa: BLE001 - collected for the asserts
                    errors.append(exc)

            with RssSampler(gateway.process.pid) as rss:
                latencies = bystander_latencies(bystander, attack, attackers)
            assert len(errors) == ATTACKERS, errors
            for error in errors:
                assert isinstance(error, sandcell.SandboxError) and error.code == "kernel_died"
                assert "output message over the limit" in str(error), error
            for session in attackers:
                assert client.sessions.get(session.id).info.state == "dead"
            # the bound is baseline + 8 x the limit; the guard holds far less (its
            # big-message slots); 2 noisy cores make RSS jumpy, hence the full bound, not less
            assert rss.peak - baseline < ATTACKERS * LIMIT / (1 << 20), (baseline, rss.peak)
            # generous: 2 cores shared with other engineers' builds; the old code took seconds
            # per huge message on the loop, so the bystander waited that long
            assert p99(latencies) < 2.0, latencies
            assert bystander.execute("canary").text == "'alive'"
        finally:
            for session in attackers:
                session.close()


TINY = ("import time\nk = get_ipython().kernel\nend, n = time.monotonic() + 5, 0\n"
        "while time.monotonic() < end:\n"
        "    k.session.send(k.iopub_socket, 'stream', {'name': 'stderr', 'text': '.'}, "
        "parent=k.get_parent())\n    n += 1\n"
        # the kernel's own PUB queue (1000 messages) drops what the guard's rate does not
        # take; a pause lets it drain, or it would drop this cell's own idle and hang it
        "time.sleep(3)")


def test_eight_sandboxes_flooding_tiny_messages_do_not_slow_a_bystander(
        client: sandcell.Client, gateway: GatewayProcess) -> None:
    assert gateway.process is not None
    with client.sessions.create() as bystander:
        attackers = [client.sessions.create() for _ in range(ATTACKERS)]
        try:
            baseline = rss_mib(gateway.process.pid)
            results: list[tuple[sandcell.Execution, float]] = []

            def flood(session: sandcell.Session) -> None:
                started = time.monotonic()
                execution = session.execute(TINY, timeout=120)
                results.append((execution, time.monotonic() - started))

            with RssSampler(gateway.process.pid) as rss:
                latencies = bystander_latencies(bystander, flood, attackers)
            assert len(results) == ATTACKERS
            # what the flood sent, asked afterwards: a print at its end could be dropped by
            # the kernel's own full PUB queue (it only hurts itself); they are not dead
            sent = [int(session.execute("n", timeout=60).text) for session in attackers]
            delivered = [len(r.stderr) for r, _ in results]
            # each sandbox's messages reach the gateway at the guard's rate however many it
            # sends (its own PUB queue drops the rest): a second's burst, then RATE a second,
            # checked before each read, and one read (CHUNK bytes) may complete many
            per_read = CHUNK // 100  # a tiny stream message is well over 100 bytes
            assert all(0 < len(r.stderr) <= RATE * (took + 1) + per_read for r, took in results), \
                (sent, delivered, [took for _, took in results])
            assert sum(sent) > sum(delivered), (sent, delivered)  # the flood outran the cap
            assert p99(latencies) < 2.0, latencies
            assert rss.peak - baseline < ATTACKERS * LIMIT / (1 << 20), (baseline, rss.peak)
        finally:
            for session in attackers:
                session.close()


def test_malformed_and_forged_messages_confuse_only_their_own_cell(
        client: sandcell.Client) -> None:
    code = ("k = get_ipython().kernel\ns = k.iopub_socket\n"
            "s.send_multipart([b'<IDS|MSG>', b'', b'{}', b'{}', b'{}', b'{}'])\n"  # unsigned
            "s.send_multipart([b'garbage'])\n"
            "k.session.send(s, 'stream', {'name': 'stdout', 'text': 'forged'}, "
            "parent={'msg_id': 'someone-else'})\n"
            "k.session.send(s, 'display_data', {'data': {f'x/{i}': '' for i in range(5000)}, "
            "'metadata': {}}, parent=k.get_parent())\n"
            "k.session.send(s, 'status', {'execution_state': 'idle'}, parent=k.get_parent())\n"
            "k.session.send(k.shell_stream, 'execute_reply', {'status': 'ok', "
            "'execution_count': 1}, parent=k.get_parent(), ident=k._parent_ident.get('shell'))\n"
            "import time; time.sleep(3); print('late')")
    with client.sessions.create() as session, client.sessions.create() as other:
        ex = session.execute(code, timeout=60)  # a fake idle + reply end this cell early
        assert "forged" not in ex.stdout and "late" not in ex.stdout
        assert "was refused" in ex.stderr
        assert other.execute("1+1").text == "2"
        assert session.execute("1+1", timeout=30).text == "2"  # still alive, not cut off


# input_request on the kernel's real stdin socket, to the identity its shell request came from
# (where ipykernel's own input() sends it); all of them reach the gateway (fewer than the
# socket's high-water mark of 1000), so only the gateway's cap can hold them back
PROMPTS = 800
STDIN_FLOOD = ("import time\nk = get_ipython().kernel\nn = 0\n"
               f"for _ in range({PROMPTS}):\n"
               "    k.session.send(k.stdin_socket, 'input_request', {'prompt': '? ', "
               "'password': False}, parent=k.get_parent(), ident=k._parent_ident['shell'])\n"
               "    n += 1\n"
               "time.sleep(3)\nprint('done')")  # its stdin queue drains at the guard's rate


async def run_over_websocket(gateway: GatewayProcess, sandbox_id: str, code: str
                             ) -> list[dict[str, Any]]:
    """Every message a Jupyter client of ``sandbox_id`` gets for its cell ``code``."""
    msg = request(code)
    async with websocket(ws_url(gateway, sandbox_id)) as ws:
        await send(ws, msg)
        return [out async for out in replies(ws, msg["header"]["msg_id"])]


def test_an_input_request_flood_on_stdin_is_capped_and_its_cell_ends_normally(
        client: sandcell.Client, gateway: GatewayProcess) -> None:
    rate = TYPE_RATES["input_request"]
    with client.sessions.create() as bystander:
        bystander.execute("canary = 'alive'")
        attackers = [client.sessions.create() for _ in range(ATTACKERS)]
        watched = attackers[0]  # its client speaks Jupyter: it sees the stdin channel
        try:
            runs: dict[str, sandcell.Execution] = {}
            seen: list[dict[str, Any]] = []
            took: list[float] = []

            def flood(session: sandcell.Session) -> None:
                started = time.monotonic()
                if session is watched:
                    seen.extend(asyncio.run(run_over_websocket(gateway, session.id, STDIN_FLOOD)))
                    took.append(time.monotonic() - started)
                else:
                    runs[session.id] = session.execute(STDIN_FLOOD, timeout=120)

            latencies = bystander_latencies(bystander, flood, attackers)
            prompts = [m for m in seen if m["msg_type"] == "input_request"]
            assert all(m["channel"] == "stdin" for m in prompts)
            # the cap: a burst, then `rate` a second, however many the kernel sent
            assert int(watched.execute("n").text) == PROMPTS
            assert 0 < len(prompts) <= rate * TYPE_BURST_SECONDS + rate * (took[0] + 1) \
                < PROMPTS, (len(prompts), took)
            # the attacker's clients see their cells end normally, with their own output
            [reply] = [m for m in seen if m["msg_type"] == "execute_reply"]
            assert reply["content"]["status"] == "ok", reply
            assert "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream") \
                == "done\n"
            assert len(runs) == ATTACKERS - 1
            assert all(r.stdout == "done\n" and r.error is None for r in runs.values()), runs
            assert p99(latencies) < 2.0, latencies
            assert bystander.execute("canary").text == "'alive'"
        finally:
            for session in attackers:
                session.close()


# forged from inside sandbox A, aimed at a cell of a client of sandbox B whose ids the
# attacker knows (here passed in as strings): output, a result, an idle, a reply, a prompt
FORGE = """k = get_ipython().kernel
victim = {{'msg_id': {msg_id!r}, 'session': {session!r}, 'msg_type': 'execute_request',
          'username': 'test', 'version': '5.3', 'date': '2026-01-01T00:00:00Z'}}
for _ in range(50):
    k.session.send(k.iopub_socket, 'stream', {{'name': 'stdout', 'text': 'FORGED'}}, parent=victim)
    k.session.send(k.iopub_socket, 'execute_result', {{'data': {{'text/plain': 'FORGED'}},
                   'metadata': {{}}, 'execution_count': 99}}, parent=victim)
    k.session.send(k.iopub_socket, 'status', {{'execution_state': 'idle'}}, parent=victim)
    k.session.send(k.shell_stream, 'execute_reply', {{'status': 'ok', 'execution_count': 99}},
                   parent=victim, ident=k._parent_ident['shell'])
    k.session.send(k.stdin_socket, 'input_request', {{'prompt': 'FORGED', 'password': False}},
                   parent=victim, ident=k._parent_ident['shell'])
# the same forgery aimed at its own cell: that one it may confuse
k.session.send(k.iopub_socket, 'stream', {{'name': 'stdout', 'text': 'own cell\\n'}},
               parent=k.get_parent())
import time; time.sleep(1)
print('attacker done')"""
VICTIM = "print('before', flush=True)\nanswer = input('go? ')\nprint('after', answer)"


@pytest.mark.anyio
async def test_a_parent_forged_in_one_sandbox_reaches_no_client_of_another(
        client: sandcell.Client, gateway: GatewayProcess) -> None:
    with client.sessions.create() as attacker, client.sessions.create() as victim:
        msg = request(VICTIM, msg_id=f"victim-{uuid.uuid4().hex}", session="victim-session")
        msg["content"]["allow_stdin"] = True
        msg_id = msg["header"]["msg_id"]
        seen: list[dict[str, Any]] = []
        async with websocket(ws_url(gateway, victim.id, session_id="victim-session")) as ws:
            await send(ws, msg)
            while not seen or seen[-1]["msg_type"] != "input_request":  # it waits, mid-cell
                got = await receive(ws)
                assert got is not None, "the socket closed mid-execution"
                seen.append(got)
            prompt = seen[-1]
            attack = await asyncio.to_thread(
                attacker.execute, FORGE.format(msg_id=msg_id, session="victim-session"),
                timeout=60)
            answer = request("", session="victim-session")
            answer.update(channel="stdin", parent_header=prompt["header"],
                          content={"value": "sandcell"})
            answer["header"]["msg_type"] = "input_reply"
            await send(ws, answer)
            ended = [out async for out in replies(ws, msg_id)]
        # the victim's client got its own cell, whole, and nothing else
        assert not [m for m in seen + ended if "FORGED" in json.dumps(m)], seen + ended
        assert [m["content"]["prompt"] for m in seen if m["msg_type"] == "input_request"] \
            == ["go? "]
        streams = [m["content"]["text"] for m in seen + ended if m["msg_type"] == "stream"]
        assert "".join(streams) == "before\nafter sandcell\n"
        [reply] = [m for m in ended if m["msg_type"] == "execute_reply"]
        assert reply["content"]["status"] == "ok" and reply["content"]["execution_count"] == 1
        assert victim.execute("answer").text == "'sandcell'"
        def victims_cell() -> list[dict[str, Any]] | None:
            cells = victim.export_notebook()["cells"]
            return [c for c in cells if c["source"] == VICTIM] or None

        # the history is written after the cell's idle: poll until it is there
        [cell] = wait_for(victims_cell, 10, "the victim's cell in its history")
        assert "".join(o["text"] for o in cell["outputs"]) == "before\nafter sandcell\n"
        # in its own sandbox the forgery matched no cell but its own
        assert attack.stdout == "own cell\nattacker done\n" and attack.text is None


EARLY_END = ("import time\nk = get_ipython().kernel\nprint('before', flush=True)\n"
             "k.session.send(k.iopub_socket, 'status', {'execution_state': 'idle'}, "
             "parent=k.get_parent())\n"
             "k.session.send(k.shell_stream, 'execute_reply', {'status': 'ok', "
             "'execution_count': 1}, parent=k.get_parent(), ident=k._parent_ident['shell'])\n"
             # the real rest of the cell: output of every kind, its real reply and idle (no
             # exception: after one, ipykernel aborts the requests queued behind the cell)
             "time.sleep(2)\nimport sys\nprint('late')\nprint('late', file=sys.stderr)\n"
             "display('late')")


def test_a_fake_idle_and_reply_end_only_that_cell_cleanly(client: sandcell.Client) -> None:
    with client.sessions.create() as attacker, client.sessions.create() as other:
        across: list[sandcell.Execution] = []  # a cell in another sandbox, across the attack
        thread = threading.Thread(target=lambda: across.append(other.execute(
            "import time\nprint('b1', flush=True)\ntime.sleep(3)\nprint('b2')", timeout=60)))
        thread.start()
        try:
            ended = attacker.execute(EARLY_END, timeout=60)
            # ended at the fake end, as a normal cell: its output so far, no error
            assert (ended.stdout, ended.stderr, ended.results, ended.error, ended.status) \
                == ("before\n", "", [], None, "ok"), ended
            # the kernel runs this after the rest of the first; nothing of that leaks in
            after = attacker.execute("1+1", timeout=60)
            assert (after.text, after.stdout, after.stderr, len(after.results), after.status) \
                == ("2", "", "", 1, "ok"), after
        finally:
            thread.join()
        [cell] = across
        assert (cell.stdout, cell.error) == ("b1\nb2\n", None)
