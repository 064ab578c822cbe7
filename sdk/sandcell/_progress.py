"""Where a plugin's progress goes: a widget in a notebook, a bar on a terminal, lines elsewhere.

A tqdm bar redraws itself with ``\\r``: on a terminal that is one moving line, but in a file
or a pipe (a script's log, CI, ``| tee``) every redraw stays, as ``add_numbers:   0%|...``
fragments. So the bar is drawn only where it can be redrawn; any other stream gets one plain
line per quarter of the way (at most five per invocation).

Example::

    sink = progress_sink("add_numbers")  # what suits sys.stderr right now
    sink.update(50.0, "half way")
    sink.close()
"""

from __future__ import annotations

import sys
import warnings
from typing import IO, Any, Literal, Protocol

ProgressStyle = Literal["widget", "bar", "lines"]
QUARTER = 25.0  # lines mode: one line per this many percent


class ProgressSink(Protocol):
    def update(self, percent: float, message: str) -> None: ...

    def close(self) -> None: ...


def progress_style(stream: IO[str] | Any, in_notebook: bool | None = None) -> ProgressStyle:
    """``widget`` in a Jupyter kernel, ``bar`` when ``stream`` is a terminal, else ``lines``.

    >>> import io
    >>> progress_style(io.StringIO(), in_notebook=False)
    'lines'
    >>> progress_style(io.StringIO(), in_notebook=True)
    'widget'
    """
    if in_notebook is None:
        in_notebook = in_jupyter_kernel()
    if in_notebook:
        return "widget"  # a kernel's stderr is no TTY, yet its front end draws widgets
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        tty = False
    return "bar" if tty else "lines"


def in_jupyter_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel; the test tqdm.autonotebook makes, without
    importing IPython (``import sandcell`` stays light)."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_sink(name: str, stream: IO[str] | None = None) -> ProgressSink:
    """The sink :func:`progress_style` picks for ``stream`` (default: ``sys.stderr``, where
    tqdm draws); without tqdm installed, lines everywhere."""
    stream = sys.stderr if stream is None else stream
    style = progress_style(stream)
    bar = _tqdm_bar(name, stream, style) if style != "lines" else None
    return bar if bar is not None else LineProgress(name, stream)


class LineProgress:
    """Plain lines, one per quarter reached, for logs and pipes.

    >>> import io
    >>> out = io.StringIO()
    >>> lines = LineProgress("add_numbers", out)
    >>> for percent in (0, 10, 20, 30, 60, 100):
    ...     lines.update(percent, "step")
    >>> print(out.getvalue(), end="")
    add_numbers:   0% step
    add_numbers:  30% step
    add_numbers:  60% step
    add_numbers: 100% step
    """

    def __init__(self, name: str, stream: IO[str]) -> None:
        self.name = name
        self.stream = stream
        self._quarter = -1.0

    def update(self, percent: float, message: str) -> None:
        quarter = min(percent, 100.0) // QUARTER
        if quarter <= self._quarter:
            return
        self._quarter = quarter
        self.stream.write(f"{self.name}: {percent:3.0f}% {message}".rstrip() + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass  # each line is complete as written: nothing to erase or finish


class _TqdmSink:
    """A tqdm bar fed absolute percents (tqdm counts increments)."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._at = 0.0

    def update(self, percent: float, message: str) -> None:
        self._bar.update(max(0.0, percent - self._at))
        self._at = max(self._at, percent)
        if message:
            self._bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        self._bar.close()


def _tqdm_bar(name: str, stream: IO[str], style: ProgressStyle) -> _TqdmSink | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tqdm.auto may warn about notebook detection
            if style == "widget":
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
    except ImportError:
        return None
    kwargs = {} if style == "widget" else {"file": stream}
    return _TqdmSink(tqdm(total=100, desc=name, unit="%", leave=False,
                          bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}", **kwargs))
