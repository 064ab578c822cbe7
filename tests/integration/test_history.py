"""Session history and its notebook export, on a real gateway with real kernels (issue 3)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

import sandcell

from .conftest import Gateway

pytestmark = pytest.mark.docker

PLOT = """
import matplotlib.pyplot as plt
from IPython.display import HTML, display
plt.plot([1, 2, 3])
plt.show()
display(HTML("<b>bold</b>"))
"""


def test_history_exports_as_a_valid_notebook(client: sandcell.Client, gateway: Gateway,
                                             tmp_path: Path) -> None:
    gateway.wait_ready()
    with client.sessions.create(env={"SECRET_SETUP": "1"}) as session:
        session.execute("import sys\nprint('out'); print('err', file=sys.stderr)\n6*7")
        session.execute(PLOT, timeout=60)
        session.execute("1/0")
        notebook = session.export_notebook(tmp_path / "run.ipynb")
        sandbox_id = session.id
    nbformat.validate(nbformat.read(tmp_path / "run.ipynb", as_version=4))
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    assert notebook["metadata"]["language_info"]["name"] == "python"
    assert notebook["metadata"]["sandcell"]["sandbox_id"] == sandbox_id
    # the env setup ran silently before the claim returned: it is not part of the history
    first, plot, error = notebook["cells"]
    assert first["source"].startswith("import sys") and first["execution_count"] == 1
    assert first["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "out\n"},
        {"output_type": "stream", "name": "stderr", "text": "err\n"},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {},
         "execution_count": 1}]
    timing = first["metadata"]["sandcell"]
    assert timing["status"] == "ok" and 0 < timing["duration"] < 30
    assert timing["started"] <= timing["finished"]
    mimes = [sorted(out["data"]) for out in plot["outputs"]]
    assert ["image/png", "text/plain"] in mimes and ["text/html", "text/plain"] in mimes
    assert error["outputs"][0]["ename"] == "ZeroDivisionError"
    assert error["metadata"]["sandcell"]["status"] == "error"


def test_history_outlives_the_sandbox_and_survives_restart(client: sandcell.Client,
                                                           gateway: Gateway) -> None:
    gateway.wait_ready()
    with client.sessions.create() as session:
        session.execute("x = 1")
        session.restart()
        session.execute("print('after restart')")
    with gateway.http() as http:
        response = http.get(f"/api/v1/sandboxes/{session.id}/notebook")
        assert response.status_code == 200  # deleted, but within history_retention
        assert [c["source"] for c in response.json()["cells"]] == [
            "x = 1", "print('after restart')"]
        assert response.json()["metadata"]["sandcell"]["deleted_at"] is not None
        missing = http.get("/api/v1/sandboxes/sbx_0000000000000000/notebook")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_store_lives_under_the_gateway_s_data_dir(gateway: Gateway) -> None:
    stores = list((gateway.workdir / "data" / "sandcell").glob("*.sqlite3"))
    assert [p.name for p in stores] == [f"sandcell-{gateway.gateway_id}.sqlite3"]


@pytest.mark.anyio
async def test_async_export(gateway: Gateway) -> None:
    async with sandcell.AsyncClient(base_url=gateway.url, token=gateway.token) as client:
        async with await client.sessions.create() as session:
            await session.execute("print('hi')")
            notebook = await session.export_notebook()
    assert notebook["cells"][0]["outputs"][0]["text"] == "hi\n"
