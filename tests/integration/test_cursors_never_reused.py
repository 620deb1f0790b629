"""A reset that deletes the newest log rows never lets another vendor's later entries reuse their cursors."""

from __future__ import annotations

import datetime as dt
import uuid

from services._gen.registry.v1 import brp_pb2, common_pb2, rod_pb2, rod_pb2_grpc, sandbox_pb2, sandbox_pb2_grpc
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import FeedbackCollector, rod_in

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 15)
TEEN = dt.date(2014, 5, 5)


async def _newest_feedback_and_change(harness: SandboxHarness, key: str) -> tuple[int, int]:
    """Registers one enrolment in the sandbox of `key`; returns its feedback cursor and the BRP change cursor."""
    rod = await rod_in(SandboxHarness(harness.running, harness.channel, key, ""), TODAY)
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    bsn = await rod.world.person(TEEN)
    school = rod.school(offering)
    async with FeedbackCollector(school) as feed:
        answer = await school.register(offering, START, bsn=bsn, document_id=str(uuid.uuid4()))
        await feed.until(lambda got: any(f.cursor == answer.feedback_cursor for f in got))
    changes = rod.world.brp.StreamPersonChanges(brp_pb2.StreamPersonChangesRequest(), metadata=rod.admin_metadata)
    newest = 0
    async for change in changes:
        newest = max(newest, change.cursor)
        if change.bsn == bsn:
            changes.cancel()
            break
    return answer.feedback_cursor, newest


async def test_cursors_after_a_reset_are_higher_than_any_handed_out_before(sandbox: SandboxHarness) -> None:
    admin = sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)
    first_feedback, first_change = await _newest_feedback_and_change(sandbox, sandbox.sandbox_key)
    # The reset deletes exactly the newest rows of the outbox and of the applied-change log.
    await admin.ResetSandbox(sandbox_pb2.ResetSandboxRequest(idempotency_key="reset-1"), metadata=sandbox.metadata())
    other = await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="next vendor"))
    second_feedback, second_change = await _newest_feedback_and_change(sandbox, other.sandbox_key)
    assert second_feedback > first_feedback
    assert second_change > first_change
    # And what the first vendor sees after its reset starts fresh: nothing of before.
    listed = await rod_pb2_grpc.RodServiceStub(sandbox.channel).ListFeedback(
        rod_pb2.ListFeedbackRequest(), metadata=sandbox.metadata()
    )
    assert list(listed.feedback) == []
