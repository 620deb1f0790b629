"""Two processes' worth of registers over one PostgreSQL database: what each holds in memory stays correct.

Workers and replicas are separate processes; here two complete servers in
this process over one database stand in for them (each with its own port,
caches, streams and background work), which is what they share: only the
database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from sqlalchemy import text

from services._gen.registry.v1 import common_pb2, rod_pb2, sandbox_pb2, sandbox_pb2_grpc
from services.bootstrap import ALL_SERVICES, RunningSandbox, build
from services.common.caller import SANDBOX_KEY
from services.common.database import Claim, make_engine
from services.common.settings import Settings
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import FeedbackCollector, rod_in
from tests.integration.test_sandbox_keys import OK, REFUSED, _call_every_register

pytestmark = pytest.mark.postgres

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 15)
TEEN = dt.date(2014, 5, 5)


@pytest.fixture
async def second(postgres_url: str) -> AsyncIterator[RunningSandbox]:
    """A second server of every register over the same database."""
    settings = Settings(database_url=postgres_url, port=0, stream_poll_seconds=0.2, shutdown_grace_seconds=0.5)
    running = build(ALL_SERVICES, settings)
    await running.server.start()
    try:
        yield running
    finally:
        await running.server.stop(0.5)
        await running.peers.close()
        running.database.engine.dispose()


@pytest.fixture
async def first(postgres_url: str) -> AsyncIterator[SandboxHarness]:
    settings = Settings(database_url=postgres_url, port=0, stream_poll_seconds=0.2, shutdown_grace_seconds=0.5)
    running = build(ALL_SERVICES, settings)
    await running.server.start()
    channel = grpc.aio.insecure_channel(running.server.address)
    created = await sandbox_pb2_grpc.SandboxAdminStub(channel).CreateSandbox(
        sandbox_pb2.CreateSandboxRequest(name="test")
    )
    try:
        yield SandboxHarness(running, channel, created.sandbox_key, created.sandbox.sandbox_id)
    finally:
        await channel.close()
        await running.server.stop(0.5)
        await running.peers.close()
        running.database.engine.dispose()


async def test_a_key_revoked_in_one_process_is_refused_at_once_by_the_other_processes_registers(
    first: SandboxHarness, second: RunningSandbox
) -> None:
    admin = sandbox_pb2_grpc.SandboxAdminStub(first.channel)
    old = first.sandbox_key
    new = (
        await admin.RotateSandboxKey(
            sandbox_pb2.RotateSandboxKeyRequest(idempotency_key="rotate-1"), metadata=first.metadata()
        )
    ).sandbox_key
    async with grpc.aio.insecure_channel(second.server.address) as other:
        # The second process's registers look the old key up, follow their SandboxAdmin's revocations and cache it.
        assert await _call_every_register(other, old) == OK
        await asyncio.sleep(0.5)
        assert await _call_every_register(other, old) == OK
        keys = (await admin.ListSandboxKeys(sandbox_pb2.ListSandboxKeysRequest(), metadata=((SANDBOX_KEY, new),))).keys
        await admin.RevokeSandboxKey(
            sandbox_pb2.RevokeSandboxKeyRequest(idempotency_key="revoke-1", key_id=keys[0].key_id),
            metadata=((SANDBOX_KEY, new),),
        )
        # Revoked through the first process; the second's registers refuse it on the very next call.
        assert await _call_every_register(other, old) == REFUSED
        assert await _call_every_register(other, new) == OK


async def test_while_the_relay_is_down_no_register_honours_a_key_from_memory(
    first: SandboxHarness, second: RunningSandbox
) -> None:
    admin = sandbox_pb2_grpc.SandboxAdminStub(first.channel)
    old = first.sandbox_key
    new = (
        await admin.RotateSandboxKey(
            sandbox_pb2.RotateSandboxKeyRequest(idempotency_key="rotate-1"), metadata=first.metadata()
        )
    ).sandbox_key
    async with grpc.aio.insecure_channel(second.server.address) as other:
        assert await _call_every_register(other, old) == OK
        await asyncio.sleep(0.5)
        assert await _call_every_register(other, old) == OK  # cached by now
        # Both processes lose the connection that hears other processes' revocations (a database restart).
        with first.running.database.engine.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'registry-sandbox-revocations'"
                )
            )
        await asyncio.sleep(0.2)
        keys = (await admin.ListSandboxKeys(sandbox_pb2.ListSandboxKeysRequest(), metadata=((SANDBOX_KEY, new),))).keys
        await admin.RevokeSandboxKey(
            sandbox_pb2.RevokeSandboxKeyRequest(idempotency_key="revoke-1", key_id=keys[0].key_id),
            metadata=((SANDBOX_KEY, new),),
        )
        # Revoked while nothing could relay it: the second process's registers dropped their caches when
        # their revocation streams ended, so they ask SandboxAdmin and refuse the key.
        assert await _call_every_register(other, old) == REFUSED
        assert await _call_every_register(other, new) == OK


async def test_one_process_at_a_time_holds_a_claim_and_a_dead_holder_lets_it_go(postgres_url: str) -> None:
    engines = [make_engine(postgres_url), make_engine(postgres_url)]
    try:
        held = Claim.try_take(engines[0], "sweep:x")
        assert held is not None
        assert Claim.try_take(engines[1], "sweep:x") is None
        assert Claim.try_take(engines[1], "sweep:y") is not None
        held.release()
        again = Claim.try_take(engines[1], "sweep:x")
        assert again is not None
        # A holder whose connection ends (its process died) holds nothing any more.
        with engines[0].connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                )
            )
        assert await _eventually(lambda: Claim.try_take(engines[0], "sweep:x") is not None)
    finally:
        for engine in engines:
            engine.dispose()


async def _eventually(check: Callable[[], bool], within: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_the_count_date_sweep_of_a_sandbox_waits_while_another_process_claims_it(
    first: SandboxHarness,
) -> None:
    rod = await rod_in(first, TODAY)
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    await school.register(offering, START, bsn=await rod.world.person(TEEN))
    # Another process is sweeping this sandbox: this one leaves it alone, however far its clock moves.
    other = Claim.try_take(first.running.database.engine, f"rod_count_date_sweep:{first.sandbox_id}")
    assert other is not None
    async with FeedbackCollector(school) as feed:
        try:
            await rod.set_clock(dt.datetime(2027, 10, 30, 12, tzinfo=dt.UTC))
            await asyncio.sleep(1.5)  # several sweep intervals (0.4 s here)
            assert not [f for f in feed.received if f.trigger == rod_pb2.FEEDBACK_TRIGGER_COUNT_DATE]
        finally:
            other.release()
        # The claim let go (its holder finished or died): the sweep happens, once.
        await feed.until(lambda got: any(f.trigger == rod_pb2.FEEDBACK_TRIGGER_COUNT_DATE for f in got))
        await asyncio.sleep(1.0)
    assert len([f for f in feed.received if f.trigger == rod_pb2.FEEDBACK_TRIGGER_COUNT_DATE]) == 1
