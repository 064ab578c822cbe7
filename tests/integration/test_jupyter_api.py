"""The Jupyter Server-compatible surface against a real gateway, real containers, real clients.

Jupyter's own clients are the judges here: ``jupyter server --gateway-url`` (JupyterLab's
server) runs code through its own WebSocket on a Sandcell kernel, and nbclient executes a
notebook through jupyter_server's ``GatewayKernelManager``. The direct tests speak both wire
formats with Jupyter Server's own codec functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
import tornado.httpclient
import tornado.websocket
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

from sandcell_gateway.testing import GatewayProcess, wait_for

pytestmark = pytest.mark.docker

V1 = "v1.kernel.websocket.jupyter.org"
Ws = tornado.websocket.WebSocketClientConnection


@pytest.fixture
def kernel(gateway: GatewayProcess) -> Iterator[dict[str, Any]]:
    with gateway.http() as http:
        response = http.post("/api/kernels", json={"name": "python"})
        assert response.status_code == 201, response.text
        model = response.json()
        yield model
        http.delete(f"/api/kernels/{model['id']}")


def ws_url(gateway: GatewayProcess, kernel_id: str, token: str | None = None,
           session_id: str = "") -> str:
    base = gateway.url.replace("http://", "ws://")
    query = f"token={token or gateway.token}" + (f"&session_id={session_id}" if session_id else "")
    return f"{base}/api/kernels/{kernel_id}/channels?{query}"


async def connect(url: str, protocol: str | None = None) -> Ws:
    return await tornado.websocket.websocket_connect(
        url, subprotocols=[protocol] if protocol else None)


@contextlib.asynccontextmanager
async def websocket(url: str, protocol: str | None = None) -> AsyncIterator[Ws]:
    """A connected socket, closed on exit and waited for, so no socket outlives the test."""
    ws = await connect(url, protocol)
    try:
        yield ws
    finally:
        await close(ws)


async def close(ws: Ws) -> None:
    # ended already: closed by the server, or the connection is gone (a read would then wait
    # for ever, and hide the failure that ended it behind a timeout)
    ended = ws.close_code is not None or ws.protocol is None or ws.protocol.stream.closed()
    ws.close()
    if ended:
        return
    async with asyncio.timeout(10):
        while await ws.read_message() is not None:
            pass


def request(code: str, msg_id: str | None = None, session: str = "test") -> dict[str, Any]:
    msg_id = msg_id or uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
              "username": "test", "version": "5.3", "date": "2026-01-01T00:00:00Z"}
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    return {"channel": "shell", "header": header, "parent_header": {}, "metadata": {},
            "content": content, "buffers": []}


def pack(obj: Any) -> bytes:
    return json.dumps(obj).encode()


async def send(ws: Ws, msg: dict[str, Any], protocol: str | None = None) -> None:
    if protocol == V1:
        await ws.write_message(serialize_msg_to_ws_v1(msg, msg["channel"], pack), binary=True)
    else:
        await ws.write_message(json.dumps(msg))


async def receive(ws: Ws, protocol: str | None = None, timeout: float = 30
                  ) -> dict[str, Any] | None:
    frame = await asyncio.wait_for(ws.read_message(), timeout)
    if frame is None:
        return None
    if protocol == V1:
        assert isinstance(frame, bytes)
        channel, parts = deserialize_msg_from_ws_v1(frame)
        keys = ("header", "parent_header", "metadata", "content")
        msg = {k: json.loads(p) for k, p in zip(keys, parts)}
        return {**msg, "channel": channel, "msg_type": msg["header"]["msg_type"]}
    assert isinstance(frame, str)
    return dict(json.loads(frame))


async def replies(ws: Ws, msg_id: str, protocol: str | None = None
                  ) -> AsyncIterator[dict[str, Any]]:
    """The messages answering ``msg_id`` until its execute_reply and idle status both came."""
    reply = idle = False
    while not (reply and idle):
        msg = await receive(ws, protocol)
        assert msg is not None, "the socket closed mid-execution"
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        reply = reply or msg["msg_type"] == "execute_reply"
        idle = idle or (msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle")
        yield msg


async def run(ws: Ws, code: str, protocol: str | None = None) -> tuple[str, dict[str, Any]]:
    msg = request(code)
    await send(ws, msg, protocol)
    stdout, reply = "", {}
    async for out in replies(ws, msg["header"]["msg_id"], protocol):
        if out["msg_type"] == "stream":
            stdout += out["content"]["text"]
        elif out["msg_type"] == "execute_reply":
            reply = out
    return stdout, reply


def test_version_and_kernelspecs(gateway: GatewayProcess) -> None:
    with gateway.http() as http:
        assert "version" in http.get("/api").json()
        specs = http.get("/api/kernelspecs").json()
        assert specs["default"] == "python"
        assert set(specs["kernelspecs"]) == {"python", "tiny"}
        python = http.get("/api/kernelspecs/python").json()
        assert python["spec"]["display_name"] == "Python 3 (Sandcell)"
        assert python["spec"]["language"] == "python"
        assert http.get("/api/kernelspecs/nope").status_code == 404


def test_swagger_documents_are_served_without_a_token_and_describe_the_answers(
        gateway: GatewayProcess, kernel: dict[str, Any]) -> None:
    """Where Kernel Gateway's tools look; JSON and YAML say the same; the live answers of the
    Jupyter routes match the document's schemas."""
    as_json = httpx.get(f"{gateway.url}/api/swagger.json", timeout=30)
    as_yaml = httpx.get(f"{gateway.url}/api/swagger.yaml", timeout=30)
    assert (as_json.status_code, as_yaml.status_code) == (200, 200)
    assert as_json.headers["Content-Type"] == "application/json"
    assert as_yaml.headers["Content-Type"] == "application/yaml"
    doc = as_json.json()
    assert yaml.safe_load(as_yaml.text) == doc
    assert "/api/kernels/{kernel_id}/channels" in doc["paths"]
    with gateway.http() as http:
        session = http.post("/api/sessions", json={"path": "swagger.ipynb", "type": "notebook",
                                                   "kernel": {"id": kernel["id"]}}).json()
        answers = {"ApiVersion": http.get("/api").json(),
                   "KernelSpecs": http.get("/api/kernelspecs").json(),
                   "KernelSpec": http.get("/api/kernelspecs/python").json(),
                   "Kernel": http.get(f"/api/kernels/{kernel['id']}").json(),
                   "Session": http.get(f"/api/sessions/{session['id']}").json(),
                   "Error": http.get("/api/kernels/sbx-0000-0000-0000-0000").json()}
        http.delete(f"/api/sessions/{session['id']}")
    for name, answer in answers.items():
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(answer)


def test_kernel_is_a_sandbox(gateway: GatewayProcess, kernel: dict[str, Any]) -> None:
    assert set(kernel) == {"id", "name", "last_activity", "execution_state", "connections"}
    assert kernel["name"] == "python"
    assert kernel["execution_state"] == "idle"
    sandbox_id = "sbx_" + kernel["id"].removeprefix("sbx-").replace("-", "")
    with gateway.http() as http:
        assert http.get(f"/api/v1/sandboxes/{sandbox_id}").json()["id"] == sandbox_id
        assert http.get(f"/api/kernels/{sandbox_id}").json()["id"] == kernel["id"]
        assert kernel["id"] in [k["id"] for k in http.get("/api/kernels").json()]
        assert http.post(f"/api/kernels/{kernel['id']}/interrupt").status_code == 204
        assert http.delete(f"/api/kernels/{kernel['id']}").status_code == 204
        assert http.get(f"/api/v1/sandboxes/{sandbox_id}").status_code == 404
        assert http.get(f"/api/kernels/{kernel['id']}").status_code == 404


def test_token_forms(gateway: GatewayProcess) -> None:
    for headers, params in [({"Authorization": f"token {gateway.token}"}, {}),
                            ({"Authorization": f"Bearer {gateway.token}"}, {}),
                            ({}, {"token": gateway.token})]:
        assert httpx.get(f"{gateway.url}/api/kernels", headers=headers,
                         params=params).status_code == 200
    assert httpx.get(f"{gateway.url}/api/kernels", params={"token": "wrong"}).status_code == 401
    assert httpx.get(f"{gateway.url}/api/kernels").status_code == 401


@pytest.mark.anyio
async def test_wrong_websocket_token_is_refused(gateway: GatewayProcess,
                                                kernel: dict[str, Any]) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await connect(ws_url(gateway, kernel["id"], token="wrong"))
    assert refused.value.code == 401


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", [None, V1])
async def test_websocket_executes_code(gateway: GatewayProcess, kernel: dict[str, Any],
                                       protocol: str | None) -> None:
    async with websocket(ws_url(gateway, kernel["id"]), protocol) as ws:
        assert ws.selected_subprotocol == protocol
        stdout, reply = await run(ws, "x = 6 * 7\nprint(x)", protocol)
        assert stdout == "42\n"
        assert reply["content"]["status"] == "ok"
        _, error = await run(ws, "1/0", protocol)
        assert error["content"]["ename"] == "ZeroDivisionError"


@pytest.mark.anyio
async def test_only_valid_kernel_variables_reach_the_kernel(gateway: GatewayProcess) -> None:
    """As Kernel Gateway: ``KERNEL_*`` are applied, the rest of Jupyter Server's env dropped."""
    env = {"KERNEL_USERNAME": "ada", "KERNEL_A=B": "x", "KERNEL_NUL": "a\x00b", "PATH": "/evil"}
    with gateway.http() as http:
        response = http.post("/api/kernels", json={"name": "python", "env": env})
        assert response.status_code == 201, response.text
        kernel_id = response.json()["id"]
        try:
            async with websocket(ws_url(gateway, kernel_id)) as ws:
                stdout, _ = await run(ws, "import os\nprint(sorted(k for k in os.environ "
                                          "if k.startswith('KERNEL_')), os.environ['PATH'])")
        finally:
            http.delete(f"/api/kernels/{kernel_id}")
    assert stdout.startswith("['KERNEL_USERNAME'] ")
    assert "/evil" not in stdout


@pytest.mark.anyio
async def test_websocket_cells_are_in_the_sandboxs_history(gateway: GatewayProcess,
                                                          kernel: dict[str, Any]) -> None:
    """The notebook export holds what a Jupyter client ran, as it holds REST executions;
    silent requests (a front end's housekeeping) are left out."""
    async with websocket(ws_url(gateway, kernel["id"])) as ws:
        await run(ws, "x = 6 * 7\nprint(x)")
        housekeeping = request("y = 1")
        housekeeping["content"]["silent"] = True
        await send(ws, housekeeping)
        async for _ in replies(ws, housekeeping["header"]["msg_id"]):
            pass
        await run(ws, "1/0")
    sandbox_id = "sbx_" + kernel["id"].removeprefix("sbx-").replace("-", "")
    with gateway.http() as http:
        url = f"/api/v1/sandboxes/{sandbox_id}/notebook"

        def both_cells() -> list[dict[str, Any]] | None:
            cells = http.get(url).json()["cells"]
            return list(cells) if len(cells) >= 2 else None

        # the history write follows the cell's idle status; poll until both cells are there
        cells = wait_for(both_cells, 10, "the WebSocket cells in the history")
    assert [c["source"] for c in cells] == ["x = 6 * 7\nprint(x)", "1/0"]
    assert cells[0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "42\n"}]
    assert cells[0]["metadata"]["sandcell"]["status"] == "ok"
    assert cells[1]["outputs"][0]["ename"] == "ZeroDivisionError"
    assert cells[1]["execution_count"] == cells[0]["execution_count"] + 1


@pytest.mark.anyio
async def test_stdin_answers_input(gateway: GatewayProcess, kernel: dict[str, Any]) -> None:
    msg = request("print('hello', input('name? '))")
    msg["content"]["allow_stdin"] = True
    async with websocket(ws_url(gateway, kernel["id"])) as ws:
        await send(ws, msg)
        while (prompt := await receive(ws)) is not None and prompt["channel"] != "stdin":
            pass
        assert prompt is not None and prompt["msg_type"] == "input_request"
        answer = request("")
        answer.update(channel="stdin", parent_header=prompt["header"],
                      content={"value": "sandcell"})
        answer["header"]["msg_type"] = "input_reply"
        await send(ws, answer)
        stdout = "".join([out["content"]["text"] async for out in
                          replies(ws, msg["header"]["msg_id"]) if out["msg_type"] == "stream"])
    assert stdout.endswith("hello sandcell\n")


@pytest.mark.anyio
async def test_reconnect_replays_missed_output(gateway: GatewayProcess,
                                               kernel: dict[str, Any]) -> None:
    """Every line comes exactly once, in order: live before the disconnect, replayed after.

    Lines the kernel printed while the first socket was closing still reach that socket
    (``leave`` reads them); the cell ends while nobody listens (the kernel is idle again), so
    the rest can only come from the replay.
    """
    url = ws_url(gateway, kernel["id"], session_id="replay-test")
    code = "import time\nfor i in range(1, 21):\n    print(i, flush=True)\n    time.sleep(0.2)"
    msg = request(code)
    msg_id = msg["header"]["msg_id"]
    lines: list[str] = []
    ws = await connect(url)
    await send(ws, msg)
    async for out in replies(ws, msg_id):
        if out["msg_type"] == "stream":
            lines += out["content"]["text"].split()
            if len(lines) >= 3:
                break
    lines += await leave(ws, msg_id)
    with gateway.http() as http:
        wait_for(lambda: http.get(f"/api/kernels/{kernel['id']}").json()["execution_state"]
                 == "idle", 30, "the cell to finish while nobody listens")
    replayed: list[str] = []
    async with websocket(url) as ws:
        async for out in replies(ws, msg_id):
            if out["msg_type"] == "stream":
                replayed += out["content"]["text"].split()
    assert replayed, "nothing was replayed: the cell ended before the disconnect"
    assert lines + replayed == [str(i) for i in range(1, 21)]


async def leave(ws: Ws, msg_id: str) -> list[str]:
    """Close ``ws`` and return the stdout lines for ``msg_id`` that arrived meanwhile."""
    ws.close()
    lines: list[str] = []
    async with asyncio.timeout(10):
        while (frame := await ws.read_message()) is not None:
            assert isinstance(frame, str)
            out = json.loads(frame)
            if out["parent_header"].get("msg_id") == msg_id and out["msg_type"] == "stream":
                lines += out["content"]["text"].split()
    return lines


@pytest.mark.anyio
async def test_deleting_the_kernel_closes_the_websocket(gateway: GatewayProcess,
                                                        kernel: dict[str, Any]) -> None:
    async with websocket(ws_url(gateway, kernel["id"])) as ws:
        await run(ws, "1")
        async with httpx.AsyncClient(base_url=gateway.url,
                                     params={"token": gateway.token}) as http:
            assert (await http.delete(f"/api/kernels/{kernel['id']}")).status_code == 204
        states = []
        while (msg := await receive(ws)) is not None:
            states.append(msg["content"].get("execution_state"))
        assert states[-1] == "dead"
        assert ws.close_code == 1000


@pytest.mark.anyio
async def test_restart_keeps_the_websocket(gateway: GatewayProcess,
                                           kernel: dict[str, Any]) -> None:
    async with websocket(ws_url(gateway, kernel["id"])) as ws:
        await run(ws, "x = 1")
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60,
                                     params={"token": gateway.token}) as http:
            restarted = await http.post(f"/api/kernels/{kernel['id']}/restart")
        assert restarted.json()["id"] == kernel["id"]
        _, reply = await run(ws, "x")
        assert reply["content"]["ename"] == "NameError"


def test_sessions(gateway: GatewayProcess) -> None:
    with gateway.http() as http:
        body = {"path": "a.ipynb", "type": "notebook", "name": "a", "kernel": {"name": "python"}}
        created = http.post("/api/sessions", json=body)
        assert created.status_code == 201, created.text
        session = created.json()
        assert session["kernel"]["name"] == "python"
        assert http.post("/api/sessions", json=body).json()["id"] == session["id"]
        assert session["id"] in [s["id"] for s in http.get("/api/sessions").json()]
        renamed = http.patch(f"/api/sessions/{session['id']}", json={"path": "b.ipynb"}).json()
        assert renamed["path"] == "b.ipynb"
        assert renamed["kernel"]["id"] == session["kernel"]["id"]
        assert http.delete(f"/api/sessions/{session['id']}").status_code == 204
        assert http.get(f"/api/sessions/{session['id']}").status_code == 404
        assert http.get(f"/api/kernels/{session['kernel']['id']}").status_code == 404


@contextlib.contextmanager
def run_jupyter_server(gateway: GatewayProcess, workdir: Path, token: str,
                       *extra: str) -> Iterator[str]:
    """``jupyter server --gateway-url=<sandcell>``: JupyterLab's server, kernels on Sandcell.

    It picks its own port (``--port=0``) and says which in its server-info file: no port is
    chosen here and bound there later, which another process could take in between. With no
    retries, a port it cannot bind ends it (a clear failure), never a server on another port.
    """
    log_path = workdir / "jupyter_server.log"
    runtime = workdir / "jupyter-runtime"  # the server-info file, away from the user's own
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--gateway-url={gateway.url}",
             f"--GatewayClient.auth_token={gateway.token}", f"--IdentityProvider.token={token}",
             "--port=0", "--ServerApp.port_retries=0", "--ip=127.0.0.1", "--no-browser",
             "--allow-root", f"--ServerApp.root_dir={workdir}", *extra],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)})
    info_file = runtime / f"jpserver-{process.pid}.json"

    def up() -> str | None:
        assert process.poll() is None, log_path.read_text()
        try:  # the file may be missing, or half written
            url = f"http://127.0.0.1:{json.loads(info_file.read_text())['port']}"
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        try:
            status = httpx.get(f"{url}/api/status", params={"token": token}).status_code
        except httpx.TransportError:
            return None
        return url if status == 200 else None

    try:
        yield wait_for(up, 60, "jupyter server to answer")
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def jupyter_server(gateway: GatewayProcess, tmp_path: Path) -> Iterator[str]:
    token = uuid.uuid4().hex
    with run_jupyter_server(gateway, tmp_path, token) as url:
        yield f"{url}?token={token}"


@pytest.mark.anyio
async def test_jupyter_server_gateway_client_runs_code(gateway: GatewayProcess,
                                                       jupyter_server: str) -> None:
    url, _, query = jupyter_server.partition("?")
    async with httpx.AsyncClient(base_url=url, timeout=60, params=dict([query.split("=")])) as js:
        specs = (await js.get("/api/kernelspecs")).json()
        assert specs["kernelspecs"]["python"]["spec"]["display_name"] == "Python 3 (Sandcell)"
        created = await js.post("/api/kernels", json={"name": "python"})
        assert created.status_code == 201, created.text
        kernel_id = created.json()["id"]
        with gateway.http() as sandcell:
            assert kernel_id in [k["id"] for k in sandcell.get("/api/kernels").json()]
        channels = f"{url.replace('http', 'ws')}/api/kernels/{kernel_id}/channels?{query}"
        async with websocket(channels) as ws:
            stdout, reply = await run(ws, "print('via jupyter_server', 6 * 7)")
        assert stdout == "via jupyter_server 42\n"
        assert reply["content"]["status"] == "ok"
        assert (await js.delete(f"/api/kernels/{kernel_id}")).status_code == 204
    with gateway.http() as sandcell:
        assert sandcell.get(f"/api/kernels/{kernel_id}").status_code == 404


NBCLIENT_SCRIPT = """
import sys
import nbformat
from nbclient import NotebookClient
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayKernelManager



class KernelManager(GatewayKernelManager):
    # jupyter_client's KernelClient.wait_for_ready asks its manager's _async_is_alive, which
    # GatewayKernelManager (jupyter_server 2.x) leaves to the local-process base class; route it
    # to the manager's own REST-backed is_alive.
    async def _async_is_alive(self):
        return await self.is_alive()


GatewayClient.instance(url=sys.argv[1])
nb = nbformat.v4.new_notebook(cells=[
    nbformat.v4.new_code_cell("import sys\\nx = 6 * 7\\nprint('hello from', sys.platform)"),
    nbformat.v4.new_code_cell("x"),
])
NotebookClient(nb, kernel_manager_class=KernelManager, kernel_name="python", timeout=60).execute()
nbformat.write(nb, sys.stdout)
"""


def test_nbclient_executes_a_notebook(gateway: GatewayProcess, tmp_path: Path) -> None:
    """nbclient, unchanged, with jupyter_server's GatewayKernelManager as its kernel manager.

    (Plus a two-line shim for a jupyter_server bug: see ``KernelManager`` in the script.)

    That manager's kernel client opens its WebSocket without any credentials, so it talks to a
    local ``jupyter server --gateway-url=<sandcell>`` (no token of its own, loopback only),
    which forwards REST and WebSocket traffic to Sandcell with Sandcell's token: the same path
    a JupyterLab user's notebook takes. It runs in a subprocess so the Jupyter stack's threads
    and global singletons stay out of this test process.
    """
    with run_jupyter_server(gateway, tmp_path, "", "--ServerApp.disable_check_xsrf=True") as url:
        done = subprocess.run([sys.executable, "-c", NBCLIENT_SCRIPT, url], capture_output=True,
                              timeout=240, check=False)
    assert done.returncode == 0, done.stderr.decode()
    cells = json.loads(done.stdout)["cells"]
    assert "".join(cells[0]["outputs"][0]["text"]) == "hello from linux\n"
    assert "".join(cells[1]["outputs"][0]["data"]["text/plain"]) == "42"
