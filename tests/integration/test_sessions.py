"""The SDK against a real gateway and real kernels in Docker: what issue 2 promises a user."""

from __future__ import annotations

import base64
import threading

import pytest

import sandcell

from .conftest import Gateway, wait_for

pytestmark = pytest.mark.docker

COUNTDOWN = "import time\nfor i in range(3):\n    print(i); time.sleep(0.2)\n6*7"


def test_claim_execute_delete(client: sandcell.Client, gateway: Gateway) -> None:
    live: list[str] = []
    with client.sessions.create(template="python") as session:
        ex = session.execute(COUNTDOWN, on_stdout=live.append, timeout=30)
        assert ex.stdout == "0\n1\n2\n" and ex.results[0].text == "42" and ex.error is None
        assert "".join(live) == "0\n1\n2\n"
        bad = session.execute("1/0")
        assert bad.error is not None and bad.error.ename == "ZeroDivisionError"
        events = list(session.execute_stream("print('x')"))
        assert [e.msg_type for e in events][-1] == "execute_reply"
        assert any(isinstance(e, sandcell.StreamEvent) and e.text == "x\n" for e in events)
        sandbox_id = session.id
    with pytest.raises(sandcell.NotFoundError):
        client.sessions.get(sandbox_id)
    assert sandbox_id not in {s.id for s in client.sessions.list()}


@pytest.mark.anyio
async def test_async_twin(gateway: Gateway) -> None:
    async with sandcell.AsyncClient(base_url=gateway.url, token=gateway.token) as client:
        session = await client.sessions.create(template="python")
        async with session:
            ex = await session.execute(COUNTDOWN, timeout=30)
            assert ex.stdout == "0\n1\n2\n" and ex.results[0].text == "42"
            seen = [event.msg_type async for event in session.execute_stream("print('y')")]
            assert "stream" in seen and seen[-1] == "execute_reply"


def test_stream_is_live(client: sandcell.Client) -> None:
    """The first line reaches us while the cell still runs: the cell only ends when we
    interrupt it, which we do only after seeing that line."""
    with client.sessions.create() as session:
        with session.execute_stream("print('first', flush=True)\nimport time\ntime.sleep(120)") as stream:
            for event in stream:
                if isinstance(event, sandcell.StreamEvent):
                    assert event.text == "first\n"
                    session.interrupt()
                    break
            ex = stream.result()
        assert ex.error is not None and ex.error.ename == "KeyboardInterrupt"


def test_events_arrive_in_order(client: sandcell.Client) -> None:
    code = ("import sys\nfrom IPython.display import HTML, display\n"
            "for i in range(100):\n    print(i, flush=True)\n    print(-i, file=sys.stderr)\n"
            "print('before', flush=True)\ndisplay(HTML('<b>middle</b>'))\nprint('after')")
    with client.sessions.create() as session:
        events = list(session.execute_stream(code))
    assert [e.seq for e in events] == list(range(len(events)))
    out = "".join(e.text for e in events if isinstance(e, sandcell.StreamEvent) and e.name == "stdout")
    err = "".join(e.text for e in events if isinstance(e, sandcell.StreamEvent) and e.name == "stderr")
    assert out.split()[:100] == [str(i) for i in range(100)]
    assert err.split() == [str(-i) for i in range(100)]
    kinds = [e.msg_type for e in events if e.msg_type in ("stream", "display_data")
             and ("middle" in str(e.content) or "before" in str(e.content)
                  or "after" in str(e.content))]
    assert kinds == ["stream", "display_data", "stream"]


def test_matplotlib_png(client: sandcell.Client) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
    with client.sessions.create() as session:
        ex = session.execute(code, timeout=60)
    assert ex.error is None and ex.stderr == ""
    png = [r for r in ex.results if r.png]
    assert png and base64.b64decode(png[0].png).startswith(b"\x89PNG")
    assert png[0]._repr_png_().startswith(b"\x89PNG")


def test_rich_html_from_pandas(client: sandcell.Client) -> None:
    with client.sessions.create() as session:
        ex = session.execute("import pandas as pd\npd.DataFrame({'a': [1, 2]})", timeout=60)
    assert ex.results[0].html and "<table" in ex.results[0].html


def test_timeout_interrupts_and_session_stays_usable(client: sandcell.Client) -> None:
    with client.sessions.create() as session:
        session.execute("x = 41")
        with pytest.raises(sandcell.TimeoutError) as info:
            session.execute("print('before')\nimport time\ntime.sleep(600)", timeout=1)
        assert info.value.execution.stdout == "before\n"
        assert session.execute("x + 1").text == "42"


def test_state_persists_in_a_session_and_never_leaks(client: sandcell.Client) -> None:
    with client.sessions.create() as first, client.sessions.create() as second:
        first.execute("secret = 7\nopen('/tmp/mark', 'w').write('x')")
        assert first.execute("secret").text == "7"
        leaked = second.execute("secret")
        assert leaked.error is not None and leaked.error.ename == "NameError"
        assert second.execute("import os; os.path.exists('/tmp/mark')").text == "False"


def test_a_fresh_sandbox_shows_no_trace_of_its_warm_up(client: sandcell.Client) -> None:
    """The kernel ran one cell before it counted as ready; the user must not see it."""
    with client.sessions.create() as session:
        ex = session.execute("print(repr(_), dict(Out), [c for c in In[:-1] if c])")
    assert ex.stdout == "'' {} []\n" and ex.execution_count == 1


def test_env_and_metadata_applied(client: sandcell.Client) -> None:
    with client.sessions.create(env={"GREETING": "hi"}, metadata={"owner": "test"}) as session:
        assert session.execute("import os; os.environ['GREETING']").text == "'hi'"
        assert session.info.metadata == {"owner": "test"}


def test_restart_gives_a_fresh_kernel_under_the_same_id(client: sandcell.Client) -> None:
    with client.sessions.create(env={"KEEP": "1"}) as session:
        session.execute("gone = 1")
        session.restart()
        assert session.execute("'gone' in dir()").text == "False"
        assert session.execute("import os; os.environ['KEEP']").text == "'1'"
        assert client.sessions.get(session.id).id == session.id


def test_kernel_death_is_a_clear_error(client: sandcell.Client) -> None:
    with client.sessions.create() as session:
        with pytest.raises(sandcell.SandboxError) as info:
            session.execute("import os; os.kill(os.getpid(), 9)", timeout=30)
        assert info.value.code == "kernel_died"
        session.restart()
        assert session.execute("1+1").text == "2"


def test_ttl_expiry_deletes_the_sandbox(client: sandcell.Client) -> None:
    session = client.sessions.create(timeout=1)

    def gone() -> bool:
        try:
            client.sessions.get(session.id)
        except sandcell.NotFoundError:
            return True
        return False

    wait_for(gone, 30, "the sandbox to expire")


def test_client_finds_a_local_gateway_without_arguments(gateway: Gateway,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDCELL_URL", raising=False)
    monkeypatch.delenv("SANDCELL_TOKEN", raising=False)
    monkeypatch.setenv("SANDCELL_RUNTIME_DIR", str(gateway.runtime_dir))
    with sandcell.Client() as client:
        assert client.health()["status"] == "ok"
        with client.sessions.create() as session:
            assert session.execute("1+1").text == "2"


def test_parallel_sessions_run_at_once(client: sandcell.Client) -> None:
    """Sessions used from several threads of one sync Client each get their own output."""
    results: list[str] = []

    def run(name: str) -> None:
        with client.sessions.create() as session:
            results.append(session.execute(f"print('{name}')").stdout)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == ["a\n", "b\n", "c\n"]
