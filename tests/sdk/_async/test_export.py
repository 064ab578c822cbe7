"""``session.export_notebook`` against a fake gateway (the sync twin is generated)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import sandcell

from ..fakes import BASE_URL, TOKEN, FakeGateway

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python", "language": "python"}},
    "cells": [{"cell_type": "code", "id": "cell-0", "source": "print('é')", "execution_count": 1,
               "metadata": {}, "outputs": [{"output_type": "stream", "name": "stdout", "text": "é\n"}]}],
}


class NotebookGateway(FakeGateway):
    """The fake gateway plus ``GET /sandboxes/{id}/notebook``."""

    def _sandbox(self, request: httpx.Request, sandbox_id: str, action: str | None) -> httpx.Response:
        if (request.method, action) == ("GET", "notebook"):
            return httpx.Response(200, json=NOTEBOOK)
        return super()._sandbox(request, sandbox_id, action)


def make_client(gateway: FakeGateway) -> sandcell.AsyncClient:
    return sandcell.AsyncClient(base_url=BASE_URL, token=TOKEN, transport=gateway.transport)


@pytest.mark.anyio
async def test_export_notebook_returns_the_gateway_s_notebook() -> None:
    gateway = NotebookGateway()
    gateway.add_sandbox("sbx_1")
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        notebook = await session.export_notebook()
    assert notebook == NOTEBOOK
    assert gateway.sent("GET", "/api/v1/sandboxes/sbx_1/notebook")


@pytest.mark.anyio
async def test_export_notebook_writes_an_ipynb_file(tmp_path: Path) -> None:
    gateway = NotebookGateway()
    gateway.add_sandbox("sbx_1")
    target = tmp_path / "run.ipynb"
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        await session.export_notebook(target)
        await session.export_notebook(str(target))
    assert json.loads(target.read_text(encoding="utf-8")) == NOTEBOOK
    assert "é" in target.read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_export_notebook_of_an_unknown_sandbox_is_not_found() -> None:
    gateway = NotebookGateway()
    gateway.add_sandbox("sbx_1")
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        del gateway.sandboxes["sbx_1"]
        with pytest.raises(sandcell.NotFoundError):
            await session.export_notebook()
