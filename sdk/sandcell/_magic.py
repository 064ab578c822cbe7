"""The IPython extension: ``%load_ext sandcell``, then ``%%sandcell`` cells run in a sandbox.

IPython is imported only when the extension is loaded, so ``import sandcell`` stays light.

Behaviour, chosen to match a local cell:

- stdout/stderr are written to ``sys.stdout``/``sys.stderr`` as the sandbox produces them;
- ``display()`` outputs (images, HTML, DataFrames) are displayed with their full mime bundle,
  ``update_display``/``clear_output`` are applied;
- the cell's value is the magic's return value (a ``sandcell.Result``), so IPython shows it as
  ``Out[n]`` and binds ``_``;
- code that raises shows the *remote* traceback as the cell's error and fails the cell
  (``RemoteExecutionError``, a ``sandcell.ExecutionError`` with ``ename``/``evalue``), so
  nbclient and nbval see a failed cell just as for a local exception;
- one sandbox per IPython shell and ``--session`` name, kept across cells until
  ``%sandcell close`` (or the shell exits, or the sandbox's time to live ends).
"""

from __future__ import annotations

import argparse
import atexit
import shlex
import sys
from typing import Any

from ._exceptions import ExecutionError, SandcellError
from ._models import (
    ClearOutputEvent,
    ErrorEvent,
    ExecutionEvent,
    Result,
    ResultEvent,
    StreamEvent,
)
from ._sync import Client, Session

__all__ = ["RemoteExecutionError", "SandcellMagic", "load_ipython_extension", "unload_ipython_extension"]

DEFAULT_SESSION = "default"
USAGE = """\
%%sandcell [--session NAME] [--template NAME] [--timeout SECONDS]
    run the cell in the session's sandbox (created on first use)
%sandcell status              list this shell's sessions
%sandcell close [NAME]        delete a session's sandbox (default: "default")
%sandcell export PATH [NAME]  save a session's history as a .ipynb"""


class RemoteExecutionError(ExecutionError):
    """The code in a ``%%sandcell`` cell raised; IPython shows the sandbox's own traceback.

    Example::

        try:
            get_ipython().run_cell_magic("sandcell", "", "1/0")
        except sandcell.ExecutionError as exc:
            assert exc.ename == "ZeroDivisionError"
    """

    def _render_traceback_(self) -> list[str]:  # IPython's hook for foreign tracebacks
        return list(self.traceback) or [str(self)]


def _brief(exc: SandcellError) -> SandcellError:
    """Show a Sandcell failure (timeout, gateway error) as one line, not the SDK's stack."""
    setattr(exc, "_render_traceback_", lambda: [f"{type(exc).__name__}: {exc}"])
    return exc


def _cell_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="%%sandcell", add_help=False, exit_on_error=False)
    parser.add_argument("--session", default=DEFAULT_SESSION)
    parser.add_argument("--template", default=None)
    parser.add_argument("--timeout", type=float, default=None)
    return parser


class SandcellMagic:
    """The state behind ``%sandcell``/``%%sandcell`` for one IPython shell: its sessions.

    Example::

        %load_ext sandcell
        %%sandcell --template python
        x = 6 * 7
        x
    """

    def __init__(self, shell: Any, client: Client | None = None) -> None:
        self.shell = shell
        self._client = client
        self.sessions: dict[str, Session] = {}

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client()  # the SDK's usual lookup: env, runtime file, default
        return self._client

    def __call__(self, line: str, cell: str | None = None) -> Result | None:
        if cell is None:
            self.line(line)
            return None
        return self.run_cell(line, cell)

    def line(self, line: str) -> None:
        """``%sandcell status|close [NAME]|export PATH [NAME]``."""
        from IPython.core.error import UsageError

        words = shlex.split(line)
        command, args = (words[0], words[1:]) if words else ("", [])
        try:
            if command == "status" and not args:
                self.print_status()
            elif command == "close" and len(args) <= 1:
                self.close(*args)
            elif command == "export" and 1 <= len(args) <= 2:
                self.export(*args)
            else:
                raise UsageError(f"unknown %sandcell command {line!r}\n{USAGE}")
        except SandcellError as exc:
            raise _brief(exc)

    def run_cell(self, line: str, cell: str) -> Result | None:
        """Run ``cell`` in the session's sandbox, mirroring its output here as it happens."""
        options = self._parse(line)
        try:
            session = self.session(options.session, options.template)
            return self._stream(session, cell, options.timeout)
        except (ExecutionError, KeyboardInterrupt):
            raise
        except SandcellError as exc:
            raise _brief(exc)

    def _parse(self, line: str) -> argparse.Namespace:
        from IPython.core.error import UsageError

        try:
            options, unknown = _cell_parser().parse_known_args(shlex.split(line))
        except (argparse.ArgumentError, ValueError) as exc:
            raise UsageError(f"{exc}\n{USAGE}") from exc
        if unknown:
            raise UsageError(f"unknown %%sandcell option(s) {' '.join(unknown)}\n{USAGE}")
        return options

    def session(self, name: str = DEFAULT_SESSION, template: str | None = None) -> Session:
        """The named session, created (with ``template``) on first use."""
        from IPython.core.error import UsageError

        session = self.sessions.get(name)
        if session is None:
            session = self.client.sessions.create(template or "python")
            self.sessions[name] = session
        elif template is not None and template != session.info.template:
            raise UsageError(f"session {name!r} runs template {session.info.template!r}; "
                             f"`%sandcell close {name}` first, or pick another --session")
        return session

    def _stream(self, session: Session, code: str, timeout: float | None) -> Result | None:
        value: Result | None = None
        try:
            with session.execute_stream(code, timeout=timeout) as stream:
                for event in stream:
                    value = self._show(event) or value
                execution = stream.result()
        except KeyboardInterrupt:
            session.interrupt()  # Ctrl-C / "interrupt kernel" here stops the remote code too
            raise
        if execution.error is not None:
            error = execution.error
            raise RemoteExecutionError(error.ename, error.evalue, error.traceback,
                                       execution=execution) from None
        return value

    def _show(self, event: ExecutionEvent) -> Result | None:
        """Mirror one event locally; return the cell's value when this event is it."""
        from IPython.display import clear_output, display

        match event:
            case StreamEvent():
                stream = sys.stderr if event.name == "stderr" else sys.stdout
                stream.write(event.text)
                stream.flush()  # live: ipykernel would otherwise batch writes
            case ResultEvent() if event.msg_type == "execute_result":
                return event.result
            case ResultEvent():
                result = event.result
                display(result.data, metadata=result.metadata, raw=True,
                        display_id=result.display_id,
                        update=event.msg_type == "update_display_data")
            case ClearOutputEvent():
                clear_output(wait=event.wait)
            case ErrorEvent():
                pass  # raised once the stream ends, after any output that follows it
        return None

    def print_status(self) -> None:
        if not self.sessions:
            print("no Sandcell sessions in this shell")
            return
        print(f"gateway {self.client.base_url}")
        for name, session in self.sessions.items():
            try:
                info = session.refresh()
                state = info.state
            except SandcellError as exc:
                state = f"unreachable ({type(exc).__name__})"
            print(f"{name}: {session.id} template={session.info.template} state={state}")

    def close(self, name: str = DEFAULT_SESSION) -> None:
        from IPython.core.error import UsageError

        session = self.sessions.pop(name, None)
        if session is None:
            raise UsageError(f"no Sandcell session {name!r} in this shell")
        session.close()
        print(f"closed session {name!r} ({session.id})")

    def export(self, path: str, name: str = DEFAULT_SESSION) -> None:
        from IPython.core.error import UsageError

        session = self.sessions.get(name)
        if session is None:
            raise UsageError(f"no Sandcell session {name!r} in this shell")
        notebook = session.export_notebook(path)
        print(f"saved {len(notebook['cells'])} cell(s) of session {name!r} to {path}")

    def close_all(self) -> None:
        """Delete every sandbox of this shell; quietly, as it also runs at exit."""
        sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            try:
                session.close()
            except SandcellError:
                pass  # the gateway went first; its sandboxes went with it
        if self._client is not None:
            self._client.close()
            self._client = None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext sandcell``: register ``%sandcell`` and ``%%sandcell`` on ``ipython``."""
    magic = SandcellMagic(ipython)
    ipython.register_magic_function(magic, magic_kind="line_cell", magic_name="sandcell")
    atexit.register(magic.close_all)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext sandcell``: delete this shell's sandboxes."""
    magic = ipython.magics_manager.magics["cell"].get("sandcell")
    if isinstance(magic, SandcellMagic):
        magic.close_all()
        atexit.unregister(magic.close_all)
