"""The exception tree and the mapping of responses and httpx errors onto it."""

from __future__ import annotations

import builtins
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest

import sandcell
from sandcell._core import error_from_response, transport_errors


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (sandcell.APIConnectionError, sandcell.SandcellError),
        (sandcell.APITimeoutError, sandcell.APIConnectionError),
        (sandcell.APIStatusError, sandcell.SandcellError),
        (sandcell.BadRequestError, sandcell.APIStatusError),
        (sandcell.AuthenticationError, sandcell.APIStatusError),
        (sandcell.PermissionDeniedError, sandcell.APIStatusError),
        (sandcell.NotFoundError, sandcell.APIStatusError),
        (sandcell.ConflictError, sandcell.APIStatusError),
        (sandcell.PayloadTooLargeError, sandcell.APIStatusError),
        (sandcell.RateLimitError, sandcell.APIStatusError),
        (sandcell.InternalServerError, sandcell.APIStatusError),
        (sandcell.ServiceUnavailableError, sandcell.InternalServerError),
        (sandcell.ExecutionError, sandcell.SandcellError),
        (sandcell.SandboxError, sandcell.SandcellError),
        (sandcell.TimeoutError, sandcell.SandcellError),
        (sandcell.TimeoutError, builtins.TimeoutError),
    ],
)
def test_the_tree(child: type, parent: type) -> None:
    assert issubclass(child, parent)


def test_the_tree_is_drawn_in_the_module_docstring() -> None:
    import sandcell._exceptions as module

    assert module.__doc__ is not None
    for name in module.__all__:
        assert name in module.__doc__


def test_a_sandcell_timeout_is_caught_by_except_timeout_error() -> None:
    with pytest.raises(builtins.TimeoutError):
        raise sandcell.TimeoutError(3.0)
    assert "3 s" in str(sandcell.TimeoutError(3.0))


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, sandcell.BadRequestError),
        (401, sandcell.AuthenticationError),
        (403, sandcell.PermissionDeniedError),
        (404, sandcell.NotFoundError),
        (409, sandcell.ConflictError),
        (413, sandcell.PayloadTooLargeError),
        (418, sandcell.APIStatusError),
        (429, sandcell.RateLimitError),
        (500, sandcell.InternalServerError),
        (504, sandcell.InternalServerError),
        (503, sandcell.ServiceUnavailableError),
    ],
)
def test_error_from_response_picks_the_class_by_status(status: int, error_type: type) -> None:
    response = httpx.Response(status, json={"error": {"code": "c", "message": "m", "request_id": "r1"}})
    error = error_from_response(response)
    assert type(error) is error_type
    assert (error.status_code, error.code, error.message, error.request_id) == (status, "c", "m", "r1")
    assert error.response is response
    assert str(error).startswith(f"{status} c: m (request id r1)")


def test_the_request_id_header_is_used_when_the_body_has_none() -> None:
    response = httpx.Response(404, json={"error": {"code": "not_found", "message": "m"}}, headers={"X-Request-Id": "h1"})
    assert error_from_response(response).request_id == "h1"


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(502, text="upstream died"), "upstream died"),
        (httpx.Response(500, json={"detail": "not our shape"}), '{"detail":"not our shape"}'),
        (httpx.Response(503), "Service Unavailable"),
    ],
)
def test_bodies_that_are_not_gateway_errors_still_give_a_message(response: httpx.Response, message: str) -> None:
    error = error_from_response(response)
    assert error.code is None
    assert error.message == message


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_accepts_seconds(header: str | None, seconds: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    error = error_from_response(httpx.Response(429, headers=headers))
    assert isinstance(error, sandcell.RateLimitError)
    assert error.retry_after == seconds


def test_retry_after_accepts_an_http_date() -> None:
    later = datetime.now(timezone.utc) + timedelta(seconds=90)
    error = error_from_response(httpx.Response(429, headers={"Retry-After": format_datetime(later, usegmt=True)}))
    assert isinstance(error, sandcell.RateLimitError)
    assert error.retry_after is not None and 80 < error.retry_after <= 90


def test_transport_errors_map_once_and_keep_the_cause() -> None:
    request = httpx.Request("GET", "http://gw:1/")
    with pytest.raises(sandcell.APIConnectionError) as refused:
        with transport_errors("http://gw:1"):
            raise httpx.ConnectError("refused", request=request)
    assert type(refused.value) is sandcell.APIConnectionError
    assert isinstance(refused.value.__cause__, httpx.ConnectError)
    with pytest.raises(sandcell.APITimeoutError):
        with transport_errors("http://gw:1"):
            raise httpx.PoolTimeout("pool", request=request)
    with pytest.raises(KeyError):  # not an httpx error: not ours to translate
        with transport_errors("http://gw:1"):
            raise KeyError("x")


def test_execution_error_carries_the_kernel_s_error() -> None:
    error = sandcell.ExecutionError("ValueError", "bad", ["\x1b[0;31mValueError\x1b[0m: bad"])
    assert str(error) == "ValueError: bad"
    assert repr(error) == "ExecutionError(ename='ValueError', evalue='bad')"
    assert error.traceback_text == "ValueError: bad"
    assert error.execution is None


def test_sandbox_error_explains_a_dead_kernel() -> None:
    error = sandcell.SandboxError("kernel_died", "exit code -9")
    assert (error.code, error.message) == ("kernel_died", "exit code -9")
    assert "session.restart()" in str(error)
