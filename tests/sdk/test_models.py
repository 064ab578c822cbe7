"""Result, Execution and SandboxInfo: accessors, reprs, and notebook rendering."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

import sandcell

PNG = b"\x89PNG\r\n\x1a\nfake"
JPEG = b"\xff\xd8\xfffake"
BUNDLE = {
    "text/plain": "<Figure>",
    "text/html": "<b>hi</b>",
    "text/markdown": "**hi**",
    "image/svg+xml": "<svg/>",
    "image/png": base64.b64encode(PNG).decode(),
    "image/jpeg": base64.b64encode(JPEG).decode(),
    "text/latex": "$x$",
    "application/json": {"a": 1},
    "application/javascript": "alert(1)",
    "application/vnd.custom+json": {"b": 2},
}


def test_result_exposes_each_format_by_name() -> None:
    result = sandcell.Result(BUNDLE)
    assert (result.text, result.html, result.markdown, result.svg) == ("<Figure>", "<b>hi</b>", "**hi**", "<svg/>")
    assert (result.png, result.jpeg) == (BUNDLE["image/png"], BUNDLE["image/jpeg"])
    assert (result.latex, result.json, result.javascript) == ("$x$", {"a": 1}, "alert(1)")
    assert result.formats() == [
        "text", "html", "markdown", "svg", "png", "jpeg", "latex", "json", "javascript",
        "application/vnd.custom+json",
    ]  # fmt: skip


def test_result_reprs_return_what_ipython_expects() -> None:
    result = sandcell.Result(BUNDLE)
    assert result._repr_png_() == PNG  # decoded bytes, not base64
    assert result._repr_jpeg_() == JPEG
    assert result._repr_html_() == "<b>hi</b>"
    assert result._repr_markdown_() == "**hi**"
    assert result._repr_svg_() == "<svg/>"
    assert result._repr_latex_() == "$x$"
    assert result._repr_json_() == {"a": 1}
    assert result._repr_javascript_() == "alert(1)"
    empty = sandcell.Result({"text/plain": "x"})
    assert empty._repr_png_() is None and empty._repr_html_() is None


def test_result_mimebundle_honours_include_and_exclude() -> None:
    result = sandcell.Result({"text/plain": "t", "text/html": "h"}, metadata={"text/html": {"isolated": True}})
    assert result._repr_mimebundle_() == ({"text/plain": "t", "text/html": "h"}, {"text/html": {"isolated": True}})
    assert result._repr_mimebundle_(include={"text/html"})[0] == {"text/html": "h"}
    assert result._repr_mimebundle_(exclude={"text/html"})[0] == {"text/plain": "t"}


def test_result_str_is_its_text_and_repr_is_short() -> None:
    assert str(sandcell.Result({"text/plain": "42"})) == "42"
    assert str(sandcell.Result({"image/png": "iVBO"})) == ""
    assert repr(sandcell.Result({"text/plain": "42"})) == "Result(text='42')"
    assert repr(sandcell.Result({"image/png": "iVBO"})) == "Result(formats=['png'])"
    assert len(repr(sandcell.Result({"text/plain": "x" * 10_000}))) < 100


def test_ipython_renders_a_result_from_its_bundle() -> None:
    formatters = pytest.importorskip("IPython.core.formatters")
    data, metadata = formatters.DisplayFormatter().format(sandcell.Result(BUNDLE))
    assert data["image/png"] == BUNDLE["image/png"]
    assert data["text/html"] == "<b>hi</b>"
    assert data["text/plain"] == "<Figure>"


def test_ipython_renders_an_execution_as_its_main_result() -> None:
    formatters = pytest.importorskip("IPython.core.formatters")
    execution = sandcell.Execution(
        results=[sandcell.Result({"text/plain": "shown"}), sandcell.Result({"text/html": "<i>v</i>"}, is_main_result=True)]
    )
    data, _ = formatters.DisplayFormatter().format(execution)
    assert data["text/html"] == "<i>v</i>"


def test_execution_joins_its_logs_and_finds_its_value() -> None:
    execution = sandcell.Execution(
        results=[sandcell.Result({"text/plain": "display"}), sandcell.Result({"text/plain": "7"}, is_main_result=True)],
        logs=sandcell.Logs(stdout=["a", "b"], stderr=["c"]),
    )
    assert (execution.stdout, execution.stderr, execution.text) == ("ab", "c", "7")
    only_display = sandcell.Execution(results=[sandcell.Result({"text/plain": "display"})])
    assert only_display.text is None


def test_execution_raise_for_error() -> None:
    fine = sandcell.Execution()
    assert fine.raise_for_error() is fine
    error = sandcell.ExecutionError("KeyError", "'k'", [])
    with pytest.raises(sandcell.ExecutionError) as caught:
        sandcell.Execution(error=error).raise_for_error()
    assert caught.value is error


def test_execution_repr_summarises_it() -> None:
    execution = sandcell.Execution(
        results=[sandcell.Result({"text/plain": "42"}, is_main_result=True)],
        logs=sandcell.Logs(stdout=["hi\n"]),
        execution_count=3,
        status="ok",
    )
    assert repr(execution) == (
        "Execution(status='ok', execution_count=3, stdout='hi\\n', stderr='', "
        "results=[Result(text='42')], error=None)"
    )
    long = sandcell.Execution(logs=sandcell.Logs(stdout=["x" * 10_000]))
    assert len(repr(long)) < 300


def test_execution_mimebundle_falls_back_to_the_last_display_then_to_text() -> None:
    shown = sandcell.Execution(results=[sandcell.Result({"image/png": "A"}), sandcell.Result({"image/png": "B"})])
    assert shown._repr_mimebundle_() == ({"image/png": "B"}, {})
    bare = sandcell.Execution(logs=sandcell.Logs(stdout=["hi"]))
    assert bare._repr_mimebundle_() == ({"text/plain": repr(bare)}, {})


def test_sandbox_info_parses_the_gateway_s_sandbox_object() -> None:
    info = sandcell.SandboxInfo.from_json(
        {
            "id": "sbx_1",
            "template": "python",
            "state": "busy",
            "created_at": "2026-11-23T10:00:00Z",
            "expires_at": "2026-11-23T11:00:00+00:00",
            "metadata": {"owner": "me"},
            "added_later": True,
        }
    )
    assert (info.id, info.template, info.state, info.metadata) == ("sbx_1", "python", "busy", {"owner": "me"})
    assert info.created_at == datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
    assert info.expires_at == datetime(2026, 11, 23, 11, tzinfo=timezone.utc)
    assert sandcell.SandboxInfo.from_json({"id": "sbx_2"}).created_at is None
