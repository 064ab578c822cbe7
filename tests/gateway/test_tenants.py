"""Tenants without HTTP or Docker: config, token hashes, token buckets, caps, and isolation in
the sandbox service (its containers faked at the runtime seam, its kernels in-process)."""

from __future__ import annotations

import asyncio
import doctest
import hashlib
import io
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandcell_gateway import cli, tenants as tenants_module
from sandcell_gateway.config import ConfigError, TenantConfig, load_config
from sandcell_gateway.errors import NotFound, TooManyRequests
from sandcell_gateway.fake_runtime import FakeRuntime
from sandcell_gateway.service import SandboxService
from sandcell_gateway.store import HistoryStore
from sandcell_gateway.tenants import Tenant, Tenants, TokenBucket, check_caps, hash_token

from .kernels import EchoSandboxes

ALICE_TOKEN, BOB_TOKEN = "alice-secret", "bob-secret"


def test_doctests() -> None:
    assert doctest.testmod(tenants_module).failed == 0


def test_hash_token_is_hex_sha256() -> None:
    assert hash_token(ALICE_TOKEN) == hashlib.sha256(ALICE_TOKEN.encode()).hexdigest()


def _config(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "sandcell.toml"
    path.write_text(text)
    return load_config(path)


def test_tenants_come_from_the_file_with_defaults(tmp_path: Path) -> None:
    config = _config(tmp_path, f'[gateway]\nmax_sandboxes = 9\n'
                               f'[tenants.alice]\ntoken_sha256 = "{hash_token(ALICE_TOKEN).upper()}"\n'
                               'max_sandboxes = 2\nexecute_rate = 0.5\n'
                               '[tenants.default]\ncreate_burst = 3\n')
    assert config.max_sandboxes == 9
    alice = config.tenants["alice"]
    assert alice.token_sha256 == hash_token(ALICE_TOKEN)  # normalised to lower case
    assert (alice.max_sandboxes, alice.execute_rate) == (2, 0.5)
    assert alice.create_rate == TenantConfig("x", token_sha256="0" * 64).create_rate
    assert config.tenants["default"].create_burst == 3


def test_without_tenant_tables_there_is_the_default_tenant() -> None:
    config = load_config()
    assert list(config.tenants) == ["default"] and config.max_sandboxes == 64


@pytest.mark.parametrize(("text", "words"), [
    ('[tenants.alice]\ntoken_sha256 = "%s"\nmax_sandbox = 1\n' % ("a" * 64),
     "[tenants.alice]: unknown key(s) max_sandbox"),
    ("[tenants.alice]\nmax_sandboxes = 1\n", "token_sha256 must be 64 hex digits"),
    ('[tenants.alice]\ntoken_sha256 = "not-a-hash"\n', "sandcell tenants hash-token"),
    ('[tenants.default]\ntoken_sha256 = "%s"\n' % ("a" * 64), "remove token_sha256"),
    ('[tenants.a]\ntoken_sha256 = "%s"\n[tenants.b]\ntoken_sha256 = "%s"\n' % ("a" * 64, "a" * 64),
     "have the same token_sha256"),
    ('[tenants.alice]\ntoken_sha256 = "%s"\ncreate_rate = 0\n' % ("a" * 64), "must be > 0"),
    ('[tenants.alice]\ntoken_sha256 = "%s"\nexecute_burst = 0\n' % ("a" * 64), "execute_burst >= 1"),
    ('[tenants."bad name"]\ntoken_sha256 = "%s"\n' % ("a" * 64), "a tenant name is"),
    ("[gateway]\nmax_sandboxes = -1\n", "max_sandboxes must be >= 0"),
    ("tenants = 3\n", "[tenants] must be a table"),
])
def test_bad_tenant_tables_are_clear_errors(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, text)
    assert words in str(info.value)


def _tenants(clock: Any = None, **alice: Any) -> Tenants:
    configs = {"alice": TenantConfig("alice", token_sha256=hash_token(ALICE_TOKEN), **alice),
               "bob": TenantConfig("bob", token_sha256=hash_token(BOB_TOKEN))}
    return Tenants(configs, default_token="default-secret", clock=clock or (lambda: 0.0))


def test_a_token_authenticates_to_exactly_its_tenant() -> None:
    tenants = _tenants()
    assert tenants.authenticate(ALICE_TOKEN) is tenants["alice"]
    assert tenants.authenticate(BOB_TOKEN) is tenants["bob"]
    assert tenants.authenticate("default-secret") is tenants["default"]
    assert tenants.authenticate(hash_token(ALICE_TOKEN)) is None  # the hash is not the token
    assert tenants.authenticate("") is None and tenants.authenticate("alice-secre") is None


@pytest.mark.parametrize("token", [ALICE_TOKEN, BOB_TOKEN, "default-secret", "wrong"])
def test_every_tenants_hash_is_compared_in_constant_time_with_no_early_return(
        monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    """README: tokens are "compared in constant time"; docs/api.md: "as hashes ... against
    every tenant's". So the token's sha256 meets each stored hash once, through
    ``hmac.compare_digest``, even when the first one already matched (alice is first)."""
    tenants = _tenants()
    calls: list[tuple[bytes, bytes]] = []
    real = tenants_module.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tenants_module.hmac, "compare_digest", recording)
    found = tenants.authenticate(token)
    stored = {hash_token(t).encode() for t in (ALICE_TOKEN, BOB_TOKEN, "default-secret")}
    assert [a for a, _ in calls] == [hash_token(token).encode()] * 3  # the hash, never the token
    assert {b for _, b in calls} == stored
    assert (found.name if found else None) == {ALICE_TOKEN: "alice", BOB_TOKEN: "bob",
                                               "default-secret": "default"}.get(token)


def test_the_default_token_may_not_be_another_tenants() -> None:
    configs = {"alice": TenantConfig("alice", token_sha256=hash_token("same"))}
    with pytest.raises(ConfigError) as info:
        Tenants(configs, default_token="same")
    assert str(info.value) == ("SANDCELL_TOKEN is also [tenants.alice]'s token; "
                               "give the default tenant its own token")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    assert bucket.take() == pytest.approx(0.5)  # a refusal spends nothing
    clock.now += 0.25
    assert bucket.take() == pytest.approx(0.25)
    clock.now += 0.25
    assert bucket.take() == 0.0
    clock.now += 60  # a quiet spell saves up to the burst, no more
    assert [bucket.take() for _ in range(4)][-1] == pytest.approx(0.5)


def test_rate_refusal_is_429_with_whole_seconds_retry_after() -> None:
    clock = Clock()
    tenant = Tenant.from_config(TenantConfig("alice", token_sha256="a" * 64, execute_rate=0.4,
                                             execute_burst=1), clock)
    tenant.admit_execute()
    with pytest.raises(TooManyRequests) as info:
        tenant.admit_execute()
    assert info.value.status == 429 and info.value.code == "rate_limited"
    assert info.value.retry_after == 3  # 2.5 s rounded up
    assert "execute_rate" in info.value.message and "0.4" in info.value.message
    clock.now += 2.5
    tenant.admit_execute()


@pytest.mark.parametrize(("admit", "words"), [
    ("admit_create", "may create 0.5 sandboxes per second (create_rate; create_burst 1)"),
    ("admit_execute", "may run 0.5 executions, commands, file calls or plugin invocations "
                      "per second (execute_rate; execute_burst 1)")])
def test_rate_refusal_says_the_limit_its_value_and_the_wait_as_docs_api_md_shows(
        admit: str, words: str) -> None:
    tenant = Tenant.from_config(TenantConfig("alice", token_sha256="a" * 64, create_rate=0.5,
                                             create_burst=1, execute_rate=0.5, execute_burst=1),
                                Clock())
    getattr(tenant, admit)()
    with pytest.raises(TooManyRequests) as info:
        getattr(tenant, admit)()
    assert info.value.message == (f"tenant 'alice' {words}; retry after 2.00 s, "
                                  "or ask the gateway's operator to raise the limit")


def test_caps_name_the_limit_that_refused() -> None:
    tenant = Tenant.from_config(TenantConfig("alice", token_sha256="a" * 64, max_sandboxes=2))
    check_caps(tenant, owned=1, total=9, gateway_max=10)
    with pytest.raises(TooManyRequests) as info:
        check_caps(tenant, owned=2, total=2, gateway_max=10)
    assert info.value.code == "tenant_sandbox_limit" and "max_sandboxes is 2" in info.value.message
    with pytest.raises(TooManyRequests) as info:
        check_caps(tenant, owned=0, total=10, gateway_max=10)
    assert info.value.code == "gateway_sandbox_limit" and "max_sandboxes is 10" in info.value.message
    assert info.value.retry_after >= 1


def test_cap_refusals_are_worded_and_timed_as_docs_api_md_says() -> None:
    """docs/api.md: both caps answer ``Retry-After: 5``, a polling hint."""
    tenant = Tenant.from_config(TenantConfig("alice", token_sha256="a" * 64, max_sandboxes=2))
    with pytest.raises(TooManyRequests) as mine:
        check_caps(tenant, owned=2, total=2, gateway_max=10)
    with pytest.raises(TooManyRequests) as gateway:
        check_caps(tenant, owned=0, total=10, gateway_max=10)
    assert (mine.value.retry_after, gateway.value.retry_after) == (5, 5)
    assert mine.value.message == \
        "tenant 'alice' has 2 sandbox(es), its max_sandboxes is 2; delete one first"
    assert gateway.value.message == \
        "the gateway holds 10 sandbox(es), its max_sandboxes is 10; retry later"


def test_cli_hash_token_reads_stdin(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(ALICE_TOKEN + "\n"))
    assert cli.main(["tenants", "hash-token"]) == 0
    assert capsys.readouterr().out == f'token_sha256 = "{hash_token(ALICE_TOKEN)}"\n'


def test_cli_new_token_prints_a_table_that_loads(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tenants", "new-token", "carol"]) == 0
    out = capsys.readouterr().out
    token = out.splitlines()[1].removeprefix("# ")
    config = _config(tmp_path, out)
    assert Tenants(config.tenants, "x").authenticate(token) is not None


# --- the service: isolation and limits, over in-process kernels (no Docker) ---------------


@pytest.fixture
def sandboxes() -> Iterator[EchoSandboxes]:
    sandboxes = EchoSandboxes()
    yield sandboxes
    sandboxes.close()


@pytest.fixture
async def service(tmp_path: Path, sandboxes: EchoSandboxes) -> AsyncIterator[SandboxService]:
    config = load_config(store_path=tmp_path / "h.sqlite3", max_sandboxes=3)
    service = SandboxService(config, FakeRuntime(), HistoryStore(config.store_path))
    sandboxes.pool(service)  # every claim is one launch: ``launched`` counts the claims
    await service.store.open()
    yield service
    await service.close()


@pytest.mark.anyio
async def test_a_tenant_sees_only_its_own_sandboxes(service: SandboxService) -> None:
    tenants = _tenants()
    alice, bob = tenants["alice"], tenants["bob"]
    mine = await service.create(alice)
    assert mine.tenant == "alice" and service.list(bob) == [] and service.list(alice) == [mine]
    unknown = "sbx_ffffffffffffffff"
    for sandbox_id in (mine.id, unknown):
        with pytest.raises(NotFound) as info:
            service.get(sandbox_id, bob)
        assert info.value.message == f"no sandbox {sandbox_id!r}"  # same words either way
        for call in (service.delete(sandbox_id, bob), service.interrupt(sandbox_id, bob),
                     service.restart(sandbox_id, bob), service.notebook(sandbox_id, bob)):
            with pytest.raises(NotFound):
                await call
        with pytest.raises(NotFound):
            service.execute(sandbox_id, bob, "1", None)
    assert service.get(mine.id, alice) is mine
    await service.delete(mine.id, alice)
    with pytest.raises(NotFound):  # its history stays alice's after the delete
        await service.notebook(mine.id, bob)
    assert (await service.notebook(mine.id, alice))["metadata"]["sandcell"]["sandbox_id"] == mine.id


@pytest.mark.anyio
async def test_a_refused_create_claims_nothing_and_spends_nothing(
        service: SandboxService, sandboxes: EchoSandboxes) -> None:
    alice = _tenants(max_sandboxes=1, create_burst=2)["alice"]
    first = await service.create(alice)
    with pytest.raises(TooManyRequests) as info:
        await service.create(alice)
    assert info.value.code == "tenant_sandbox_limit" and sandboxes.launched == 1
    await service.delete(first.id, alice)
    await service.create(alice)  # the refusal spent no create token (burst 2, clock stopped)
    assert sandboxes.launched == 2


@pytest.mark.anyio
async def test_past_the_create_rate_nothing_is_claimed(service: SandboxService,
                                                       sandboxes: EchoSandboxes) -> None:
    alice = _tenants(create_burst=1)["alice"]
    await service.create(alice)
    with pytest.raises(TooManyRequests) as info:
        await service.create(alice)
    assert info.value.code == "rate_limited" and "create_rate" in info.value.message
    assert sandboxes.launched == 1 and len(service.list(alice)) == 1


@pytest.mark.anyio
async def test_claims_in_flight_count_against_the_caps(service: SandboxService,
                                                       sandboxes: EchoSandboxes) -> None:
    tenants = _tenants(max_sandboxes=1)
    sandboxes.gate.clear()
    waiting = asyncio.ensure_future(service.create(tenants["alice"]))
    await sandboxes.entered.wait()
    with pytest.raises(TooManyRequests, match="tenant 'alice' has 1 sandbox"):
        await service.create(tenants["alice"])
    sandboxes.gate.set()
    assert (await waiting).tenant == "alice"
    await service.create(tenants["bob"])
    await service.create(tenants["default"])
    with pytest.raises(TooManyRequests) as info:  # the gateway holds 3 = max_sandboxes
        await service.create(tenants["bob"])
    assert info.value.code == "gateway_sandbox_limit" and sandboxes.launched == 3


@pytest.mark.anyio
async def test_executions_spend_the_tenants_execute_rate(service: SandboxService) -> None:
    tenants = _tenants(execute_burst=1)
    sandbox = await service.create(tenants["alice"])
    events = [e async for e in service.execute(sandbox.id, tenants["alice"], "1", None)]
    assert events[-1]["msg_type"] == "execute_reply"
    with pytest.raises(TooManyRequests, match="execute_rate"):
        service.execute(sandbox.id, tenants["alice"], "1", None)
    notebook = await service.notebook(sandbox.id, tenants["alice"])
    assert [c["source"] for c in notebook["cells"]] == ["1"]  # the refused one left no cell
