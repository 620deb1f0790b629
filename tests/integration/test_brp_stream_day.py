"""The simulator streams a day into the real ingester at N times real speed, in order, bounded in time."""

from __future__ import annotations

import datetime as dt
import time

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, sandbox_pb2, sandbox_pb2_grpc
from services.brp_sync.rules import Mutatie
from services.brp_sync.simulator import read_persons, simulate_day, stream_day
from tests.conftest import SandboxHarness

DAY = dt.date(2026, 11, 28)
WHOLE_DAY_IN_ABOUT_TWO_SECONDS = 86_400 / 2


async def _day(sandbox: SandboxHarness, count: int) -> tuple[brp_pb2_grpc.BrpServiceStub, list[Mutatie]]:
    await sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel).SeedSandbox(
        sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_SMALL, seed=3), metadata=sandbox.metadata()
    )
    stub = brp_pb2_grpc.BrpServiceStub(sandbox.channel)
    persons = await read_persons(stub, sandbox.metadata())
    return stub, simulate_day(persons, DAY, count=count, seed=11)


async def test_a_streamed_day_is_submitted_in_registration_order_and_every_message_is_applied(
    sandbox: SandboxHarness,
) -> None:
    stub, mutaties = await _day(sandbox, 300)
    sent: list[str] = []

    async def submit(document: bytes) -> brp_pb2.SubmitChangesResponse:
        answer = await stub.SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=document), metadata=sandbox.metadata()
        )
        sent.extend(r.message_id for r in answer.results)
        return answer

    report = await stream_day(mutaties, submit, speed=WHOLE_DAY_IN_ABOUT_TWO_SECONDS, max_seconds=30, max_batch=50)

    assert sent == [m.bericht_id for m in mutaties]
    assert report.submitted == len(mutaties) == 300
    assert report.applied == 300 and report.rejected == 0
    # Spread over the (compressed) day, not sent in one go.
    assert report.documents > 300 // 50
    # Every one is in the register's applied-change log.
    changes = stub.StreamPersonChanges(
        brp_pb2.StreamPersonChangesRequest(after_cursor=0),
        metadata=sandbox.metadata(),
        timeout=3,
    )
    applied: set[str] = set()
    async for change in changes:
        applied.add(change.message_id)
        if len(applied) == 300:
            changes.cancel()
            break
    assert applied == set(sent)


async def test_streaming_stops_at_its_time_bound(sandbox: SandboxHarness) -> None:
    stub, mutaties = await _day(sandbox, 100)

    async def submit(document: bytes) -> brp_pb2.SubmitChangesResponse:
        return await stub.SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=document), metadata=sandbox.metadata()
        )

    began = time.monotonic()
    # At real speed a day takes a day: the bound must end it.
    report = await stream_day(mutaties, submit, speed=1.0, max_seconds=0.5)
    assert time.monotonic() - began < 5
    assert report.submitted < len(mutaties)
