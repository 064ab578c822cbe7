"""``%%sandcell`` in a real IPython shell, against the real gateway (issue 3, part 2)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

import sandcell
from sandcell._magic import SandcellMagic

from .conftest import Gateway

pytestmark = pytest.mark.docker


@pytest.fixture
def shell(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    gateway.wait_ready()  # claims are then instant, even on a loaded machine
    monkeypatch.setenv("SANDCELL_URL", gateway.url)
    monkeypatch.setenv("SANDCELL_TOKEN", gateway.token)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_cell("%load_ext sandcell", store_history=False)
    try:
        yield shell
    finally:
        shell.run_cell("%unload_ext sandcell", store_history=False)
        InteractiveShell.clear_instance()


def magic_of(shell: InteractiveShell) -> SandcellMagic:
    magic = shell.magics_manager.magics["cell"]["sandcell"]
    assert isinstance(magic, SandcellMagic)
    return magic


class TimedStream:
    """A stand-in for sys.stdout that remembers when each piece arrived."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((time.monotonic(), text))
        return len(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.writes)


class Witness:
    """Interrupts the sandbox once every awaited line has been shown here, while the cell
    still runs: only output that streams in live can get it there."""

    def __init__(self, gateway: Gateway, shell: InteractiveShell, *awaited: str) -> None:
        self.gateway, self.shell = gateway, shell
        self.missing = set(awaited)

    def shown(self, text: str) -> None:
        if not self.missing:
            return  # interrupted already
        self.missing -= set(text.split())
        if not self.missing:
            sandbox_id = magic_of(self.shell).sessions["default"].id
            with self.gateway.http() as http:
                assert http.post(f"/api/v1/sandboxes/{sandbox_id}/interrupt").status_code == 204


class WitnessedStream(TimedStream):
    def __init__(self, witness: Witness) -> None:
        super().__init__()
        self.witness = witness

    def write(self, text: str) -> int:
        written = super().write(text)
        self.witness.shown(text)
        return written


def test_stdout_and_stderr_arrive_live(gateway: Gateway, shell: InteractiveShell,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The cell prints 'last' only once interrupted, and the interrupt comes only once
    'first' and 'oops' are shown here: an order, whatever the machine's load."""
    witness = Witness(gateway, shell, "first", "oops")
    out, err = WitnessedStream(witness), WitnessedStream(witness)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = ("%%sandcell\nimport sys, time\ntry:\n    print('first', flush=True)\n"
            "    print('oops', file=sys.stderr, flush=True)\n    time.sleep(60)\n"
            "except KeyboardInterrupt:\n    print('last')")
    result = shell.run_cell(code)
    assert result.success, result.error_in_exec
    assert out.text == "first\nlast\n" and err.text == "oops\n"


def test_state_persists_across_cells_and_the_value_is_the_cell_s_value(
        shell: InteractiveShell) -> None:
    assert shell.run_cell("%%sandcell\nx = 6").success
    result = shell.run_cell("%%sandcell\nx * 7")
    assert isinstance(result.result, sandcell.Result) and result.result.text == "42"
    assert "x" not in shell.user_ns  # it ran remotely
    named = shell.run_cell("%%sandcell --session other\n'x' in dir()")
    assert named.result.text == "False"  # another session is another sandbox
    magic = magic_of(shell)
    assert set(magic.sessions) == {"default", "other"}
    assert magic.sessions["default"].id != magic.sessions["other"].id


def test_rich_outputs_are_displayed_natively(shell: InteractiveShell) -> None:
    code = """%%sandcell
import pandas as pd
import matplotlib.pyplot as plt
from IPython.display import HTML, display
display(HTML("<b>bold</b>"))
display(pd.DataFrame({"a": [1, 2]}))
plt.plot([1, 2, 3]); plt.show()
"""
    with capture_output() as captured:
        result = shell.run_cell(code)
    assert result.success, result.error_in_exec
    bundles = [output.data for output in captured.outputs]
    assert bundles[0]["text/html"] == "<b>bold</b>"
    assert "<table" in bundles[1]["text/html"]
    assert bundles[2]["image/png"] and "Figure" in bundles[2]["text/plain"]


def test_remote_errors_fail_the_cell_with_the_remote_traceback(shell: InteractiveShell) -> None:
    with capture_output() as captured:
        result = shell.run_cell("%%sandcell\nprint('before')\ndef f():\n    1/0\nf()")
    error: Any = result.error_in_exec
    assert isinstance(error, sandcell.ExecutionError) and error.ename == "ZeroDivisionError"
    assert "before\n" in captured.stdout
    shown = sandcell.ExecutionError("", "", [captured.stdout]).traceback_text
    assert "ZeroDivisionError" in shown and "1/0" in shown and "f()" in shown
    assert "_magic.py" not in shown  # the remote traceback, not the magic's own stack
    assert shell.run_cell("%%sandcell\n'still alive'").result.text == "'still alive'"


def test_options_status_close_and_export(shell: InteractiveShell, tmp_path: Any) -> None:
    with capture_output() as captured:
        timed_out = shell.run_cell("%%sandcell --timeout 0.5\nimport time; time.sleep(30)")
    assert isinstance(timed_out.error_in_exec, sandcell.TimeoutError)
    assert "TimeoutError:" in captured.stdout and "_magic.py" not in captured.stdout
    bad = shell.run_cell("%%sandcell --template nope --session t\n1")
    assert isinstance(bad.error_in_exec, sandcell.BadRequestError)
    assert "unknown_template" in str(bad.error_in_exec)
    assert not shell.run_cell("%%sandcell --bogus\n1").success
    with capture_output() as captured:
        shell.run_cell("%sandcell status")
        shell.run_cell(f"%sandcell export {tmp_path / 'run.ipynb'}")
        shell.run_cell("%sandcell close")
    assert "default: sbx_" in captured.stdout and "state=running" in captured.stdout
    assert "saved" in captured.stdout and (tmp_path / "run.ipynb").exists()
    assert "closed session 'default'" in captured.stdout
    assert magic_of(shell).sessions == {}
    assert not shell.run_cell("%sandcell close").success  # nothing left to close


class InterruptOnFirstWrite(TimedStream):
    """Ctrl-C arriving while the cell's output streams in."""

    def write(self, text: str) -> int:
        if not self.writes:
            self.writes.append((time.monotonic(), text))
            raise KeyboardInterrupt
        return super().write(text)


def test_interrupting_the_cell_interrupts_the_sandbox(shell: InteractiveShell,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", InterruptOnFirstWrite())
        result = shell.run_cell("%%sandcell\nimport time\nprint('go', flush=True)\ntime.sleep(120)")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    started = time.monotonic()
    after = shell.run_cell("%%sandcell --timeout 30\n'free again'")
    assert after.result.text == "'free again'" and time.monotonic() - started < 20


def test_no_gateway_is_a_one_line_error(shell: InteractiveShell,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # a port that is certainly closed: bound by us, never listening, held for the whole test
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("SANDCELL_URL", f"http://127.0.0.1:{closed.getsockname()[1]}")
        with capture_output() as captured:
            result = shell.run_cell("%%sandcell\n1")
    assert isinstance(result.error_in_exec, sandcell.APIConnectionError)
    assert "APIConnectionError: could not reach" in captured.stdout
    assert "Traceback" not in captured.stdout
