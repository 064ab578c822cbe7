"""Output caps count UTF-8 bytes, not characters: real kernels flood 2-, 3- and 4-byte
characters past ``max_output_bytes`` through the REST stream and a Jupyter WebSocket.

The gateway here is this module's own, with a small cap so a flood is quick. (The ASCII flood
at the default 32 MiB, with its memory bound: test_hostile.py; the counting itself:
tests/gateway/test_inbox.py and test_jupyter_history.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sandcell
from sandcell_gateway.wire import kernel_id_of
from sandcell_gateway.testing import GatewayProcess, wait_for

from .test_jupyter_api import run, websocket, ws_url

pytestmark = pytest.mark.docker

CAP = 20_000
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"
max_output_bytes = {CAP}

[templates.python]
min_ready = 1
max_total = 3

[plugins]
enabled = false
"""
# 100 lines of 1000 characters: 200 to 400 kB, ten to twenty times the cap, in characters
# already five times it: a cap counting characters would let several times CAP bytes through
LINES, WIDTH = 100, 1000
CHARACTERS = pytest.mark.parametrize("char", ["é", "€", "😀"], ids=["2-byte", "3-byte", "4-byte"])


def flood(char: str) -> str:
    return f"import sys\nfor _ in range({LINES}):\n    sys.stdout.write({char!r} * {WIDTH} + '\\n')"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("output-caps"), CONFIG) as gw:
        gw.wait_ready()
        yield gw
    assert gw.containers() == [], gw.log()


def full(char: str) -> str:
    """What :func:`flood` prints."""
    return (char * WIDTH + "\n") * LINES


def utf8(text: str) -> int:
    return len(text.encode())


@CHARACTERS
def test_the_rest_stream_delivers_at_most_the_cap_in_bytes(gateway: GatewayProcess,
                                                           char: str) -> None:
    with sandcell.Client(base_url=gateway.url, token=gateway.token) as client, \
            client.sessions.create() as session:
        ex = session.execute(flood(char), timeout=60)
        assert ex.error is None
        # the crossing message is cut between characters: short of the cap by less than one
        assert CAP - utf8(char) < utf8(ex.stdout) <= CAP, utf8(ex.stdout)
        assert full(char).startswith(ex.stdout)  # the first part, whole characters only
        assert f"[Sandcell: output truncated after {CAP} bytes" in ex.stderr
        assert session.execute("1+1").text == "2"  # the kernel is fine


@pytest.mark.anyio
@CHARACTERS
async def test_a_websocket_cells_record_holds_at_most_the_cap_in_bytes(
        gateway: GatewayProcess, char: str) -> None:
    with gateway.http() as http:
        created = http.post("/api/v1/sandboxes", json={})
        assert created.status_code == 201, created.text
        sandbox_id = created.json()["id"]
        try:
            async with websocket(ws_url(gateway, kernel_id_of(sandbox_id))) as ws:
                live, reply = await run(ws, flood(char))
            assert reply["content"]["status"] == "ok"
            assert live == full(char)  # the client itself gets it all

            def recorded() -> list[dict[str, Any]] | None:
                cells = http.get(f"/api/v1/sandboxes/{sandbox_id}/notebook").json()["cells"]
                return list(cells[0]["outputs"]) if cells else None

            # the history write follows the cell's idle status: poll until it is there
            outputs = wait_for(recorded, 10, "the WebSocket cell in the history")
        finally:
            http.delete(f"/api/v1/sandboxes/{sandbox_id}")
    stdout = "".join(o["text"] for o in outputs if o.get("name") == "stdout")
    stderr = "".join(o["text"] for o in outputs if o.get("name") == "stderr")
    # as the REST stream: the crossing message is cut between characters, not dropped
    assert CAP - utf8(char) < utf8(stdout) <= CAP, utf8(stdout)
    assert full(char).startswith(stdout)  # the record is the first part of the output
    assert f"[Sandcell: output truncated after {CAP} bytes; the rest is not in this record]" in stderr
