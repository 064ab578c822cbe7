"""``session.files`` and ``session.commands`` (sync and async) against a real gateway whose
template runs the agent: the issue's own example, the kernel seeing the same files, bad input."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sandcell

from .conftest import Gateway

pytestmark = pytest.mark.docker

MAX_FILE = 4 << 20
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"
max_file_size = {MAX_FILE}

[templates.python]
min_ready = 1
max_total = 4

[plugins]
enabled = false
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("sdk-agent"), CONFIG) as gw:
        gw.wait_ready()
        yield gw
    assert gw.containers() == [], gw.log()


@pytest.fixture
def session(gateway: Gateway) -> Iterator[sandcell.Session]:
    with sandcell.Client(base_url=gateway.url, token=gateway.token) as client:
        with client.sessions.create() as s:
            yield s


@pytest.fixture
async def async_session(gateway: Gateway) -> AsyncIterator[sandcell.AsyncSession]:
    async with sandcell.AsyncClient(base_url=gateway.url, token=gateway.token) as client:
        async with await client.sessions.create() as s:
            yield s


def test_the_issue_s_example(session: sandcell.Session, tmp_path: Path) -> None:
    s = session
    s.files.write("data/in.csv", b"a,b\n1,2\n")
    assert s.files.read("data/in.csv") == b"a,b\n1,2\n"
    assert s.files.read_text("data/in.csv") == "a,b\n1,2\n"
    [info] = s.files.list("data")
    assert (info.name, info.path, info.type, info.size) == ("in.csv", "data/in.csv", "file", 8)
    assert info.modified.tzinfo is not None
    s.files.remove("data/in.csv")
    assert not s.files.exists("data/in.csv")
    assert s.files.make_dir("out").is_dir and s.files.exists("out")
    local = tmp_path / "local.parquet"
    local.write_bytes(os.urandom(3 << 20))
    s.files.upload(local, "data/x.parquet")
    s.files.download("data/x.parquet", tmp_path / "back.parquet")
    assert hashlib.sha256((tmp_path / "back.parquet").read_bytes()).digest() == \
        hashlib.sha256(local.read_bytes()).digest()
    seen: list[str] = []
    r = s.commands.run("ls -la && python -c 'print(6*7)'", on_stdout=seen.append, timeout=30)
    assert r.exit_code == 0 and r.stdout.endswith("42\n") and r.stderr == ""
    assert "".join(seen) == r.stdout
    s.files.write("work/train.py", "import os; print(os.environ['X'], input())")
    h = s.commands.start("python train.py", cwd="work", env={"X": "1"})
    h.send_stdin("y\n")
    events = list(h)
    assert events == [sandcell.CommandStdout("1 y\n"), sandcell.CommandExit(0)]
    assert h.wait().stdout == "1 y\n"
    assert h.kill() is False  # it had finished


def test_a_file_written_by_files_write_is_read_by_open_in_a_cell(session: sandcell.Session) -> None:
    session.files.write("data/in.csv", "a,b\n1,2\n")
    assert session.execute("print(open('data/in.csv').read(), end='')").stdout == "a,b\n1,2\n"
    session.execute("open('from_cell.txt', 'w').write('cell')")
    assert session.files.read_text("from_cell.txt") == "cell"


def test_a_nonzero_exit_is_data_and_a_timeout_raises(session: sandcell.Session) -> None:
    failed = session.commands.run("ls no-such-dir")
    assert failed.exit_code == 2 and "no-such-dir" in failed.stderr and not failed.ok
    with pytest.raises(sandcell.TimeoutError) as caught:
        session.commands.run("echo started; sleep 600", timeout=1)
    assert caught.value.command is not None and caught.value.command.stdout == "started\n"


def test_kill_a_background_command(session: sandcell.Session) -> None:
    handle = session.commands.start("echo up; sleep 600")
    assert next(iter(handle)) == sandcell.CommandStdout("up\n")
    assert handle.kill() is True
    assert handle.wait().exit_code == -9


def test_bad_input_says_what_to_change(session: sandcell.Session) -> None:
    with pytest.raises(sandcell.NotFoundError) as missing:
        session.files.read("nope.txt")
    assert missing.value.code == "file_not_found"
    with pytest.raises(sandcell.BadRequestError) as outside:
        session.files.write("../escape", b"x")
    assert outside.value.code == "invalid_path"
    with pytest.raises(sandcell.BadRequestError) as bad_cwd:
        session.commands.run("true", cwd="/etc")
    assert bad_cwd.value.code == "invalid_path"
    with pytest.raises(sandcell.PayloadTooLargeError):
        session.files.write("big", b"x" * (MAX_FILE + 1))
    assert not session.files.exists("big")


@pytest.mark.anyio
async def test_the_async_twin(async_session: sandcell.AsyncSession) -> None:
    s = async_session
    await s.files.write("a.txt", "async")
    assert await s.files.read_text("a.txt") == "async"
    r = await s.commands.run(["cat", "a.txt"])
    assert (r.exit_code, r.stdout) == (0, "async")
    h = await s.commands.start("cat", stdin=True)
    await h.send_stdin(b"piped")
    await h.close_stdin()
    assert [e async for e in h] == [sandcell.CommandStdout("piped"), sandcell.CommandExit(0)]
