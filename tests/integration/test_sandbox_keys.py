"""Vendor keys: stored hashed, shown once, rotated without downtime, refused everywhere once revoked."""

from __future__ import annotations

import logging

import grpc
import pytest
from sqlalchemy import text

from services._gen.registry.v1 import (
    brp_pb2,
    brp_pb2_grpc,
    rio_pb2,
    rio_pb2_grpc,
    rod_pb2,
    rod_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
)
from services.bootstrap import build
from services.common.caller import SANDBOX_KEY
from services.common.errors import read_details
from services.common.settings import Settings
from tests.conftest import SandboxHarness


async def _call_every_register(channel: grpc.aio.Channel, key: str) -> list[grpc.StatusCode]:
    """One read in each register with this key; the status each answers."""
    metadata = ((SANDBOX_KEY, key),)
    calls = [
        lambda: sandbox_pb2_grpc.SandboxAdminStub(channel).GetClock(sandbox_pb2.GetClockRequest(), metadata=metadata),
        lambda: rio_pb2_grpc.RioServiceStub(channel).ListBoards(rio_pb2.ListBoardsRequest(), metadata=metadata),
        lambda: brp_pb2_grpc.BrpServiceStub(channel).ListPersons(brp_pb2.ListPersonsRequest(), metadata=metadata),
        lambda: rod_pb2_grpc.RodServiceStub(channel).ListFeedback(rod_pb2.ListFeedbackRequest(), metadata=metadata),
    ]
    codes = []
    for call in calls:
        try:
            await call()
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())
    return codes


OK = [grpc.StatusCode.OK] * 4
REFUSED = [grpc.StatusCode.UNAUTHENTICATED] * 4


async def test_rotate_then_revoke_is_refused_at_once_by_every_register(
    sandbox: SandboxHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)
    old = sandbox.sandbox_key
    # Every register has now looked the old key up (and may hold it in its cache).
    assert await _call_every_register(sandbox.channel, old) == OK
    rotated = await admin.RotateSandboxKey(
        sandbox_pb2.RotateSandboxKeyRequest(idempotency_key="rotate-1"), metadata=sandbox.metadata()
    )
    new = rotated.sandbox_key
    assert new.startswith("sk_test_") and new != old
    assert await _call_every_register(sandbox.channel, old) == OK
    assert await _call_every_register(sandbox.channel, new) == OK

    listed = await admin.ListSandboxKeys(sandbox_pb2.ListSandboxKeysRequest(), metadata=((SANDBOX_KEY, new),))
    assert [k.prefix for k in listed.keys] == [old[:12], new[:12]]
    assert old not in str(listed) and new not in str(listed)
    revoked = await admin.RevokeSandboxKey(
        sandbox_pb2.RevokeSandboxKeyRequest(idempotency_key="revoke-1", key_id=listed.keys[0].key_id),
        metadata=((SANDBOX_KEY, new),),
    )
    assert revoked.HasField("revoked_at")
    # The very next calls, in every register, refuse the revoked key; the new one goes on working.
    assert await _call_every_register(sandbox.channel, old) == REFUSED
    assert await _call_every_register(sandbox.channel, new) == OK

    # The secrets are nowhere: not in the database (only hashes), not in any log line.
    with sandbox.running.database.engine.connect() as connection:
        stored = [
            str(row)
            for table in ("sandbox_sandbox", "sandbox_key", "sandbox_idempotent_response")
            for row in connection.execute(text(f"SELECT * FROM {table}")).all()
        ]
    assert not [row for row in stored if old in row or new in row]
    assert not [r.getMessage() for r in caplog.records if old in r.getMessage() or new in r.getMessage()]


async def test_the_last_active_key_cannot_be_revoked_and_another_sandboxs_key_is_not_found(
    sandbox: SandboxHarness,
) -> None:
    admin = sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)
    mine = (await admin.ListSandboxKeys(sandbox_pb2.ListSandboxKeysRequest(), metadata=sandbox.metadata())).keys
    with pytest.raises(grpc.aio.AioRpcError) as last:
        await admin.RevokeSandboxKey(
            sandbox_pb2.RevokeSandboxKeyRequest(key_id=mine[0].key_id), metadata=sandbox.metadata()
        )
    assert last.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_details(last.value)[0] == "SBX-LAST-ACTIVE-KEY"

    other = await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="someone else"))
    theirs = (
        await admin.ListSandboxKeys(sandbox_pb2.ListSandboxKeysRequest(), metadata=((SANDBOX_KEY, other.sandbox_key),))
    ).keys
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await admin.RevokeSandboxKey(
            sandbox_pb2.RevokeSandboxKeyRequest(key_id=theirs[0].key_id), metadata=sandbox.metadata()
        )
    assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _call_every_register(sandbox.channel, other.sandbox_key) == OK


async def test_a_creator_holds_a_bounded_number_of_sandboxes(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, port=0, sandboxes_per_creator=2, shutdown_grace_seconds=0.2)
    running = build(["sandbox"], settings)
    await running.server.start()
    try:
        async with grpc.aio.insecure_channel(running.server.address) as channel:
            admin = sandbox_pb2_grpc.SandboxAdminStub(channel)
            first = await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="one"))
            await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="two"))
            # A new connection from the same host is the same creator.
            async with grpc.aio.insecure_channel(
                running.server.address, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as again:
                with pytest.raises(grpc.aio.AioRpcError) as full:
                    await sandbox_pb2_grpc.SandboxAdminStub(again).CreateSandbox(
                        sandbox_pb2.CreateSandboxRequest(name="three")
                    )
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert read_details(full.value)[0] == "SBX-SANDBOXES-PER-CREATOR"
            # A vendor creating with its own key counts against that sandbox, not the host.
            mine = await admin.CreateSandbox(
                sandbox_pb2.CreateSandboxRequest(name="child"), metadata=((SANDBOX_KEY, first.sandbox_key),)
            )
            assert mine.sandbox_key
    finally:
        await running.server.stop(0.2)
        await running.peers.close()
        running.database.engine.dispose()
