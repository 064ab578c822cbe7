"""Everything the SDK raises, under one root.

::

    SandcellError
    ├── APIConnectionError            the gateway could not be reached
    │   └── APITimeoutError           the gateway did not answer in time
    ├── APIStatusError                the gateway answered with an error status
    │   ├── BadRequestError           400  invalid_json, invalid_request, unknown_template
    │   ├── AuthenticationError       401  unauthorized
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404  not_found
    │   ├── ConflictError             409  sandbox_closed
    │   ├── PayloadTooLargeError      413  body_too_large
    │   ├── RateLimitError            429  rate_limited, tenant_sandbox_limit,
    │   │                                  gateway_sandbox_limit (retry_after from Retry-After)
    │   └── InternalServerError       5xx  internal_error
    │       └── ServiceUnavailableError   503  pool_exhausted, backend_unavailable
    ├── ExecutionError                the code raised: the value of Execution.error,
    │                                 raised only by Execution.raise_for_error()
    ├── SandboxError                  the gateway could not finish an execution or a
    │                                 command (a gateway_error event, e.g. kernel_died)
    ├── PluginError                   a plugin invocation failed (a failed event:
    │                                 plugin_error, worker_crashed, timeout, ...)
    └── TimeoutError                  an execution's or a command's own timeout
                                      fired; also a builtins.TimeoutError

Code that raises inside a sandbox is data, not an exception: ``session.execute("1/0")``
returns an ``Execution`` whose ``.error`` is an ``ExecutionError``, and a command that
fails is too: ``session.commands.run("false").exit_code`` is 1.
"""

from __future__ import annotations

import builtins
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, ClassVar

import httpx

if TYPE_CHECKING:
    from ._agent_models import CommandResult
    from ._models import Execution

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ExecutionError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PluginError",
    "RateLimitError",
    "SandboxError",
    "SandcellError",
    "ServiceUnavailableError",
    "TimeoutError",
]

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class SandcellError(Exception):
    """The root of every error the SDK raises.

    >>> issubclass(NotFoundError, SandcellError)
    True
    """


class APIConnectionError(SandcellError):
    """The gateway could not be reached (refused, reset, DNS, TLS...).

    >>> err = APIConnectionError("could not reach it", url="http://127.0.0.1:8765")
    >>> err.url
    'http://127.0.0.1:8765'
    """

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class APITimeoutError(APIConnectionError):
    """The gateway did not answer within the client's ``Timeout``.

    >>> issubclass(APITimeoutError, APIConnectionError)
    True
    """


class APIStatusError(SandcellError):
    """The gateway answered with an error status and a JSON error body.

    ``code`` is the gateway's machine-readable error code (see docs/api.md),
    ``request_id`` the ``X-Request-Id`` to quote when reporting a problem.

    >>> response = httpx.Response(404, json={"error": {"code": "not_found", "message": "no sandbox"}})
    >>> err = NotFoundError("no sandbox", response=response, code="not_found")
    >>> (err.status_code, err.code)
    (404, 'not_found')
    """

    hint: ClassVar[str] = ""

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = response.status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        self.response = response
        super().__init__(self._describe())

    def _describe(self) -> str:
        label = f"{self.status_code} {self.code}" if self.code else str(self.status_code)
        text = f"{label}: {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        hint = self._hint()
        return f"{text}. {hint}" if hint else text

    def _hint(self) -> str:
        return self.hint


class BadRequestError(APIStatusError):
    """400: the request was malformed, e.g. an unknown template.

    >>> BadRequestError.hint.startswith("Check")
    True
    """

    hint = "Check the arguments: the template name, and that timeout is a number and env/metadata map strings to strings."


class AuthenticationError(APIStatusError):
    """401: the token is missing or wrong.

    >>> "SANDCELL_TOKEN" in AuthenticationError.hint
    True
    """

    hint = (
        "Pass token=... or set SANDCELL_TOKEN to the token the gateway printed at start "
        "(a gateway on this machine also writes it to its runtime file)."
    )


class PermissionDeniedError(APIStatusError):
    """403: the token is valid but may not do this.

    >>> PermissionDeniedError.hint != ""
    True
    """

    hint = "Use a token that is allowed to do this."


class NotFoundError(APIStatusError):
    """404: no such sandbox (it expired, was deleted, or lives on another gateway).

    >>> "sessions.list()" in NotFoundError.hint
    True
    """

    hint = "The sandbox may have expired or been deleted; client.sessions.list() shows the live ones."


class ConflictError(APIStatusError):
    """409: the sandbox is being deleted or its kernel died.

    >>> "restart" in ConflictError.hint
    True
    """

    hint = "Create a new session, or session.restart() for a fresh kernel."


class PayloadTooLargeError(APIStatusError):
    """413: the request body is over the gateway's limit (1 MiB by default).

    >>> "smaller" in PayloadTooLargeError.hint
    True
    """

    hint = "Send smaller code cells, or raise the gateway's body limit."


class RateLimitError(APIStatusError):
    """429: your tenant's rate or a sandbox cap refused the request, and nothing was done.

    ``retry_after`` (seconds, from the Retry-After header) says how long to wait; ``code``
    says which limit: ``rate_limited`` (creations or executions per second),
    ``tenant_sandbox_limit`` (your sandboxes at once) or ``gateway_sandbox_limit`` (everyone's).
    The SDK does not retry by itself.

    >>> response = httpx.Response(429, headers={"Retry-After": "2"})
    >>> err = RateLimitError("slow down", response=response, code="rate_limited")
    >>> err.retry_after, err._hint()
    (2.0, 'Retry in 2 s, and pace your calls under the rate.')
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.retry_after = _retry_after(response.headers.get("Retry-After"))
        super().__init__(message, response=response, code=code, request_id=request_id)

    def _hint(self) -> str:
        when = "later" if self.retry_after is None else f"in {self.retry_after:g} s"
        if self.code == "tenant_sandbox_limit":
            return (f"Close sessions you no longer need (client.sessions.list() shows them), "
                    f"or retry {when}.")
        if self.code == "gateway_sandbox_limit":
            return f"The gateway is full for every tenant; retry {when}."
        return f"Retry {when}, and pace your calls under the rate."


class InternalServerError(APIStatusError):
    """5xx: the gateway failed; its log has the details for ``request_id``.

    >>> issubclass(ServiceUnavailableError, InternalServerError)
    True
    """

    hint = "This is a gateway bug or outage; the gateway's log has details for this request id."


class ServiceUnavailableError(InternalServerError):
    """503: no warm sandbox became ready in time, or Docker did not answer.

    >>> "min_ready" in ServiceUnavailableError.hint
    True
    """

    hint = "Retry shortly; if it persists, raise the template pool's min_ready or check that Docker is running."


class ExecutionError(SandcellError):
    """The executed code raised. This is data: it is ``Execution.error``.

    ``raise_for_error()`` raises it; ``.execution`` holds everything the code
    printed and displayed before it failed.

    >>> err = ExecutionError("ZeroDivisionError", "division by zero", ["\\x1b[31mZeroDivisionError\\x1b[0m"])
    >>> str(err), err.traceback_text
    ('ZeroDivisionError: division by zero', 'ZeroDivisionError')
    """

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: list[str],
        *,
        execution: Execution | None = None,
    ) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.execution = execution

    @property
    def traceback_text(self) -> str:
        """The kernel's traceback as plain text (ANSI colours removed)."""
        return _ANSI_ESCAPE.sub("", "\n".join(self.traceback))

    def __repr__(self) -> str:
        return f"ExecutionError(ename={self.ename!r}, evalue={self.evalue!r})"


class SandboxError(SandcellError):
    """The gateway could not finish an execution or a command (a ``gateway_error`` event).

    ``code`` says why, e.g. ``kernel_died``; ``.execution`` (or, for a command, ``.command``)
    holds the partial output.

    >>> SandboxError("kernel_died", "the kernel exited").code
    'kernel_died'
    """

    def __init__(self, code: str, message: str, *, execution: Execution | None = None,
                 command: CommandResult | None = None) -> None:
        super().__init__(_sandbox_message(code, message, "the command" if command is not None else "the execution"))
        self.code = code
        self.message = message
        self.execution = execution
        self.command = command


class PluginError(SandcellError):
    """A plugin invocation ended with a ``failed`` event.

    ``code`` says why: the plugin's own code (e.g. ``plugin_error``), ``invalid_output``,
    ``worker_crashed`` or ``timeout``; ``details`` may hold the plugin's traceback.

    >>> err = PluginError("subtract_numbers", "timeout", "did not finish within 1s")
    >>> (err.plugin, err.code, str(err))
    ('subtract_numbers', 'timeout', 'subtract_numbers failed (timeout): did not finish within 1s')
    """

    def __init__(self, plugin: str, code: str, message: str, *, details: str = "") -> None:
        super().__init__(f"{plugin} failed ({code}): {message}")
        self.plugin = plugin
        self.code = code
        self.message = message
        self.details = details


class TimeoutError(SandcellError, builtins.TimeoutError):
    """An execution's (or a command's) ``timeout`` fired; the gateway interrupted the kernel
    (or killed the command's process group).

    ``.execution`` (or ``.command``) holds the output produced before that.

    >>> err = TimeoutError(5)
    >>> isinstance(err, builtins.TimeoutError), err.timeout
    (True, 5)
    """

    def __init__(self, timeout: float | None, *, execution: Execution | None = None,
                 command: CommandResult | None = None) -> None:
        super().__init__(_timeout_message(timeout) if command is None else _command_timeout_message(timeout))
        self.timeout = timeout
        self.execution = execution
        self.command = command


def _sandbox_message(code: str, message: str, what: str = "the execution") -> str:
    text = f"the sandbox could not finish {what} ({code}): {message}"
    if code == "kernel_died":
        text += ". The kernel died (often out of memory); session.restart() gives a fresh one"
    return text


def _command_timeout_message(timeout: float | None) -> str:
    limit = f"its {timeout:g} s timeout" if timeout is not None else "its timeout"
    return (
        f"the command did not finish within {limit}; its process group was killed. "
        "Pass a larger timeout= to run(), or start() it in the background. Partial output is in .command"
    )


def _timeout_message(timeout: float | None) -> str:
    limit = f"its {timeout:g} s timeout" if timeout is not None else "its timeout"
    return (
        f"the execution did not finish within {limit}; the kernel was interrupted. "
        "Pass a larger timeout= to execute(), or split the work. Partial output is in .execution"
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return _seconds_until(value)


def _seconds_until(http_date: str) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
