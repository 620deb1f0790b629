"""The cause trail: from a feedback to the event that caused it, and from that event to every feedback it caused."""

from __future__ import annotations

from typing import Any

import grpc

from clients.explorer.grpc_client import GrpcTargets, to_json
from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, rio_pb2, rio_pb2_grpc, rod_pb2, rod_pb2_grpc
from services.common.caller import SANDBOX_KEY

RIO_PREFIX = "rio:"
COUNT_DATE_PREFIX = "teldatum:"
# One page of ListFeedback's maximum; a trail longer than this says so.
MAX_FEEDBACK = 500


class TrailError(ValueError):
    """A cause id that names nothing the trail can follow."""


def kind_of(cause_id: str, trigger: str) -> str:
    if cause_id.startswith(RIO_PREFIX) or trigger == "FEEDBACK_TRIGGER_RIO_CHANGE":
        return "rio_change"
    if cause_id.startswith(COUNT_DATE_PREFIX) or trigger == "FEEDBACK_TRIGGER_COUNT_DATE":
        return "count_date"
    if trigger == "FEEDBACK_TRIGGER_BRP_CHANGE":
        return "brp_message"
    return "school_message"


async def follow(
    targets: GrpcTargets, sandbox_key: str, cause_id: str, trigger: str = "", bsn: str = ""
) -> dict[str, Any]:
    """Everything one cause led to, as the sandbox admin sees it (every school), plus the cause itself."""
    if not cause_id.strip():
        raise TrailError("cause_id is empty: take it from a feedback's cause.id")
    metadata = ((SANDBOX_KEY, sandbox_key),)
    rod = rod_pb2_grpc.RodServiceStub(targets.channel("registry.v1.RodService"))
    answer = await rod.ListFeedback(
        rod_pb2.ListFeedbackRequest(cause_id=cause_id, page=common_pb2.PageRequest(page_size=MAX_FEEDBACK)),
        metadata=metadata,
    )
    feedback = [to_json(f) for f in answer.feedback]
    kind = kind_of(cause_id, trigger)
    event: dict[str, Any] = {}
    if kind == "rio_change":
        event = await _rio_change(targets, metadata, cause_id)
    elif kind == "brp_message":
        pupil = bsn or next((f.pupil.bsn for f in answer.feedback if f.pupil.bsn), "")
        event = await _brp_message(targets, metadata, cause_id, pupil)
    elif kind == "count_date":
        event = {"count_date": cause_id.removeprefix(COUNT_DATE_PREFIX)}
    else:
        event = {"document_id": cause_id}
    schools = sorted({f["institution_code"] for f in feedback})
    return {
        "cause": {"id": cause_id, "kind": kind, "event": event},
        "feedback": feedback,
        "schools": schools,
        "truncated": bool(answer.page.next_page_token),
    }


async def _rio_change(targets: GrpcTargets, metadata: tuple[tuple[str, str], ...], cause_id: str) -> dict[str, Any]:
    try:
        cursor = int(cause_id.removeprefix(RIO_PREFIX))
    except ValueError as error:
        raise TrailError(f"{cause_id!r} is not rio:<cursor>") from error
    rio = rio_pb2_grpc.RioServiceStub(targets.channel("registry.v1.RioService"))
    changes = await rio.ListChanges(rio_pb2.ListChangesRequest(after_cursor=cursor - 1, limit=1), metadata=metadata)
    match = [c for c in changes.changes if c.cursor == cursor]
    return to_json(match[0]) if match else {}


async def _brp_message(
    targets: GrpcTargets, metadata: tuple[tuple[str, str], ...], message_id: str, bsn: str
) -> dict[str, Any]:
    if not bsn:
        return {"message_id": message_id}
    brp = brp_pb2_grpc.BrpServiceStub(targets.channel("registry.v1.BrpService"))
    try:
        person = await brp.GetPerson(brp_pb2.GetPersonRequest(bsn=bsn, include_history=True), metadata=metadata)
    except grpc.aio.AioRpcError:
        return {"message_id": message_id, "bsn": bsn}
    match = [c for c in person.history if c.message_id == message_id]
    return to_json(match[0]) if match else {"message_id": message_id, "bsn": bsn}
