"""Which progress display a plugin call gets: a widget, a bar on a real terminal, or lines."""

from __future__ import annotations

import doctest
import io
import os
import sys
import types
from collections.abc import Iterator
from typing import IO

import pytest

from sandcell import _plugin_models, _progress
from sandcell._progress import LineProgress, progress_sink, progress_style


@pytest.fixture
def terminal() -> Iterator[IO[str]]:
    """The writing end of a real pseudo-terminal, as a user's shell gives a script."""
    leader, follower = os.openpty()
    stream = os.fdopen(follower, "w")
    try:
        yield stream
    finally:
        stream.close()
        os.close(leader)


@pytest.fixture
def pipe() -> Iterator[IO[str]]:
    reader, writer = os.pipe()
    stream = os.fdopen(writer, "w")
    try:
        yield stream
    finally:
        stream.close()
        os.close(reader)


def test_docstring_examples() -> None:
    results = doctest.testmod(_progress)
    assert results.attempted > 0 and results.failed == 0


def test_a_terminal_gets_a_bar_a_pipe_or_file_gets_lines(terminal: IO[str],
                                                          pipe: IO[str]) -> None:
    assert progress_style(terminal, in_notebook=False) == "bar"
    assert progress_style(pipe, in_notebook=False) == "lines"
    assert progress_style(io.StringIO(), in_notebook=False) == "lines"
    closed = io.StringIO()
    closed.close()
    assert progress_style(closed, in_notebook=False) == "lines"  # isatty() raises ValueError
    assert progress_style(object(), in_notebook=False) == "lines"  # no isatty at all


def test_a_notebook_gets_the_widget_though_its_stderr_is_no_terminal(
        pipe: IO[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert progress_style(pipe, in_notebook=True) == "widget"
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    fake_ipython = types.SimpleNamespace(get_ipython=lambda: shell)
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    assert _progress.in_jupyter_kernel() and progress_style(pipe) == "widget"
    shell.config = {}  # a terminal IPython: not a kernel
    assert not _progress.in_jupyter_kernel() and progress_style(pipe) == "lines"


def test_the_sink_follows_the_style(terminal: IO[str], pipe: IO[str]) -> None:
    bar = progress_sink("add_numbers", terminal)
    bar.update(50.0, "half")
    bar.close()
    assert type(bar).__name__ == "_TqdmSink"
    assert isinstance(progress_sink("add_numbers", pipe), LineProgress)


def test_without_tqdm_a_terminal_gets_lines(terminal: IO[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    assert isinstance(progress_sink("add_numbers", terminal), LineProgress)


def test_the_reporter_writes_whole_lines_to_a_non_terminal(
        capsys: pytest.CaptureFixture[str]) -> None:
    reporter = _plugin_models.ProgressReporter("add_numbers", True, None)
    for percent, message in ((0.0, "received operands"), (40.0, ""), (45.0, ""), (100.0, "done")):
        reporter(_plugin_models.ProgressEvent(0, "progress", percent, message))
    reporter.close()
    assert capsys.readouterr().err == (
        "add_numbers:   0% received operands\nadd_numbers:  40%\nadd_numbers: 100% done\n")
