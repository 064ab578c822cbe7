"""The sync and async twins have the same names and signatures."""

from __future__ import annotations

import inspect

import pytest

import sandcell

TWINS = [
    (sandcell.Client, sandcell.AsyncClient),
    (sandcell.Sessions, sandcell.AsyncSessions),
    (sandcell.Session, sandcell.AsyncSession),
    (sandcell.ExecutionStream, sandcell.AsyncExecutionStream),
    (sandcell.Files, sandcell.AsyncFiles),
    (sandcell.Commands, sandcell.AsyncCommands),
    (sandcell.CommandHandle, sandcell.AsyncCommandHandle),
]
PROTOCOLS = {"__enter__": "__aenter__", "__exit__": "__aexit__", "__iter__": "__aiter__", "__next__": "__anext__"}


def test_clients_sessions_and_streams_are_context_managers() -> None:
    for sync, async_ in TWINS:
        if sync not in (sandcell.Sessions, sandcell.Files, sandcell.Commands):
            assert hasattr(sync, "__enter__") and hasattr(async_, "__aenter__"), sync


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.mark.parametrize(("sync", "async_"), TWINS)
def test_twins_have_the_same_public_names(sync: type, async_: type) -> None:
    assert public_names(sync) == public_names(async_)
    assert public_names(sync)  # a class with no public names would pass vacuously


@pytest.mark.parametrize(("sync", "async_"), TWINS)
def test_twins_have_the_same_signatures(sync: type, async_: type) -> None:
    for name in public_names(sync) | {"__init__"}:
        sync_member, async_member = getattr(sync, name), getattr(async_, name)
        if callable(sync_member):
            assert str(inspect.signature(sync_member)).replace("Async", "") == str(
                inspect.signature(async_member)
            ).replace("Async", ""), name


@pytest.mark.parametrize(("sync", "async_"), TWINS)
def test_async_twins_await_exactly_where_sync_twins_block(sync: type, async_: type) -> None:
    for name in public_names(sync):
        sync_member, async_member = getattr(sync, name), getattr(async_, name)
        if callable(sync_member):
            assert not inspect.iscoroutinefunction(sync_member), name
            # execute_stream returns its handle at once in both twins; the rest await.
            assert inspect.iscoroutinefunction(async_member) is (name != "execute_stream"), name


@pytest.mark.parametrize(("sync", "async_"), TWINS)
def test_twins_speak_the_matching_protocols(sync: type, async_: type) -> None:
    for sync_name, async_name in PROTOCOLS.items():
        assert hasattr(sync, sync_name) == hasattr(async_, async_name), sync_name
