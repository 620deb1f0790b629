"""RIO's change log over real gRPC on SQLite and PostgreSQL: pages, the live stream, resuming from a cursor."""

from __future__ import annotations

import asyncio

import grpc

from services._gen.registry.v1 import rio_pb2, sandbox_pb2, sandbox_pb2_grpc
from services.common.caller import INTERNAL_TOKEN
from tests.conftest import SandboxHarness
from tests.helpers.rio import B1, all_changes, d, register, rio


async def test_every_committed_change_is_one_entry_with_the_record_after_it(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, md = rio(sandbox), sandbox.metadata()
    await stub.UpdateProvider(
        rio_pb2.UpdateProviderRequest(provider_code=codes["provider"], effective_date=d(2024, 8, 1), name="Nieuw"),
        metadata=md,
    )
    await stub.EndCourseOffering(rio_pb2.EndRecordRequest(code=codes["offering"], end_date=d(2025, 7, 31)), metadata=md)
    changes = await all_changes(stub, md)
    kinds = [(c.record_kind, c.change_kind) for c in changes]
    created = rio_pb2.RIO_CHANGE_KIND_CREATED
    assert kinds == [
        (rio_pb2.RIO_RECORD_KIND_BOARD, created),
        (rio_pb2.RIO_RECORD_KIND_BOARD, created),
        (rio_pb2.RIO_RECORD_KIND_COURSE, created),
        (rio_pb2.RIO_RECORD_KIND_PROVIDER, created),
        # A new location starts its board's use of it (onderwijslocatiegebruik), logged right after it.
        (rio_pb2.RIO_RECORD_KIND_LOCATION, created),
        (rio_pb2.RIO_RECORD_KIND_LOCATION_USE, created),
        (rio_pb2.RIO_RECORD_KIND_LOCATION, created),
        (rio_pb2.RIO_RECORD_KIND_LOCATION_USE, created),
        (rio_pb2.RIO_RECORD_KIND_COURSE_OFFERING, created),
        (rio_pb2.RIO_RECORD_KIND_PROVIDER, rio_pb2.RIO_CHANGE_KIND_UPDATED),
        (rio_pb2.RIO_RECORD_KIND_COURSE_OFFERING, rio_pb2.RIO_CHANGE_KIND_ENDED),
    ]
    cursors = [c.cursor for c in changes]
    assert cursors == sorted(set(cursors))
    assert all(c.sandbox_id == sandbox.sandbox_id for c in changes)
    assert changes[5].location_use.location_code == codes["l1"] and changes[5].location_use.board_code == B1
    assert changes[5].code == changes[5].location_use.use_id
    assert changes[9].provider.name == "Nieuw" and changes[9].provider.version == 2
    assert changes[10].code == codes["offering"]
    assert changes[10].course_offering.validity.end_date == d(2025, 7, 31)

    # Paging by three gives the same entries, and says when more are waiting.
    first = await stub.ListChanges(rio_pb2.ListChangesRequest(limit=3), metadata=md)
    assert len(first.changes) == 3 and first.has_more and first.next_cursor == cursors[2]
    assert await all_changes(stub, md, limit=3) == changes
    last = await stub.ListChanges(rio_pb2.ListChangesRequest(after_cursor=cursors[-1]), metadata=md)
    assert not last.changes and not last.has_more and last.next_cursor == cursors[-1]


async def test_the_stream_gives_backlog_then_live_changes_and_resumes_without_gaps_or_duplicates(
    sandbox: SandboxHarness,
) -> None:
    codes = await register(sandbox)
    stub, md = rio(sandbox), sandbox.metadata(x_board_code=B1)
    backlog = await all_changes(stub, md)

    seen: list[rio_pb2.RioChange] = []
    stream = stub.StreamChanges(rio_pb2.StreamChangesRequest(after_cursor=backlog[2].cursor), metadata=md)
    for _ in backlog[3:]:
        seen.append(await asyncio.wait_for(stream.read(), timeout=5))
    # Committed while the stream is live: it arrives without asking.
    await stub.EndCourseOffering(rio_pb2.EndRecordRequest(code=codes["offering"], end_date=d(2025, 7, 31)), metadata=md)
    live = await asyncio.wait_for(stream.read(), timeout=5)
    assert live.change_kind == rio_pb2.RIO_CHANGE_KIND_ENDED and live.code == codes["offering"]
    seen.append(live)
    stream.cancel()

    # Changes while disconnected are waiting on reconnect from the last processed cursor.
    await stub.UpdateProvider(
        rio_pb2.UpdateProviderRequest(provider_code=codes["provider"], effective_date=d(2024, 8, 1), name="Later"),
        metadata=md,
    )
    await stub.EndLocation(
        rio_pb2.EndRecordRequest(code=codes["l2"], end_date=d(2030, 1, 1)), metadata=sandbox.metadata()
    )
    resumed = stub.StreamChanges(rio_pb2.StreamChangesRequest(after_cursor=seen[-1].cursor), metadata=md)
    # The provider's new version, the location's end and the end of its use, which cannot outlast it.
    for _ in range(3):
        seen.append(await asyncio.wait_for(resumed.read(), timeout=5))
    resumed.cancel()
    assert seen[-1].location_use.validity.end_date == d(2030, 1, 1)

    everything = await all_changes(stub, md)
    assert [c.cursor for c in backlog[:3] + seen] == [c.cursor for c in everything]
    assert backlog[:3] + seen == everything


async def test_an_internal_follower_without_a_sandbox_sees_every_sandbox(sandbox: SandboxHarness) -> None:
    await register(sandbox)
    other = await sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel).CreateSandbox(
        sandbox_pb2.CreateSandboxRequest(name="other vendor")
    )
    stub = rio(sandbox)
    internal = ((INTERNAL_TOKEN, sandbox.internal_token),)
    stream = stub.StreamChanges(rio_pb2.StreamChangesRequest(), metadata=internal)
    # First an empty message: the follower is registered, and every write now waits until it was handed to it.
    registered = await asyncio.wait_for(stream.read(), timeout=5)
    assert registered == rio_pb2.RioChange()
    mine = [await asyncio.wait_for(stream.read(), timeout=5) for _ in range(9)]
    await stub.CreateBoard(
        rio_pb2.CreateBoardRequest(board_code=B1, name="Elders"), metadata=(("x-sandbox-key", other.sandbox_key),)
    )
    theirs = await asyncio.wait_for(stream.read(), timeout=5)
    stream.cancel()
    assert {c.sandbox_id for c in mine} == {sandbox.sandbox_id}
    assert theirs.sandbox_id == other.sandbox.sandbox_id and theirs.board.name == "Elders"

    wrong = stub.StreamChanges(rio_pb2.StreamChangesRequest(), metadata=((INTERNAL_TOKEN, "guess"),))
    try:
        await asyncio.wait_for(wrong.read(), timeout=5)
        raise AssertionError("a wrong internal token must be refused")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
