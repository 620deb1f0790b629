"""The sandbox admin's protobuf codec: requests decoded and checked (typed field violations), answers encoded."""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from services._gen.registry.v1 import sandbox_pb2
from services.common.clock import ClockSetting, register_date
from services.common.dates import to_proto_date, to_timestamp
from services.common.errors import FieldViolation, invalid_argument
from services.common.seeding import check_national_pupils
from services.sandbox.clocks import ClockMoved
from services.sandbox.rules import ClockMove, ClockTarget, Sandbox, SandboxKey

MessageT = TypeVar("MessageT", sandbox_pb2.CreateSandboxResponse, sandbox_pb2.RotateSandboxKeyResponse)

SEED_SIZES = {
    sandbox_pb2.SEED_SIZE_UNSPECIFIED: "small",
    sandbox_pb2.SEED_SIZE_SMALL: "small",
    sandbox_pb2.SEED_SIZE_MEDIUM: "medium",
    sandbox_pb2.SEED_SIZE_FULL: "full",
}


# ---- requests ----


def clock_target(request: sandbox_pb2.SetClockRequest) -> ClockTarget:
    """The clock move a SetClock request asks for; INVALID_ARGUMENT without one or with an invalid timestamp."""
    which = request.WhichOneof("target")
    if which is None:
        raise invalid_argument(
            [FieldViolation("target", "set one of travel_to, freeze_at, reset_to_real_time", "SBX-REQUIRED")]
        )
    move = ClockMove(which)
    if move is ClockMove.REAL_TIME:
        return ClockTarget(move)
    return ClockTarget(move, _moment(getattr(request, which), which))


def _moment(timestamp: Timestamp, field: str) -> dt.datetime:
    try:
        return timestamp.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError) as error:
        raise invalid_argument(
            [FieldViolation(field, f"not a valid timestamp: {error}", "SBX-INVALID-TIMESTAMP")]
        ) from None


def seed_size(request: sandbox_pb2.SeedSandboxRequest) -> str:
    size = SEED_SIZES.get(request.size)
    if size is None:
        raise invalid_argument([FieldViolation("size", "unknown seed size", "SBX-INVALID-ENUM")])
    return size


def national_pupils(request: sandbox_pb2.SeedSandboxRequest) -> int:
    """The national seed's pupil count; refused (typed) without synthetic_bsns, before any register is asked."""
    return check_national_pupils(request.national_pupils, synthetic_bsns=request.synthetic_bsns)


# ---- answers ----


def clock_message(sandbox: Sandbox, real_now: dt.datetime) -> sandbox_pb2.SandboxClock:
    return setting_message(sandbox.clock, real_now)


def setting_message(clock: ClockSetting, real_now: dt.datetime) -> sandbox_pb2.SandboxClock:
    now = clock.now(real_now)
    message = sandbox_pb2.SandboxClock(
        now=to_timestamp(now), today=to_proto_date(register_date(now)), frozen=clock.frozen_at is not None
    )
    message.offset.FromTimedelta(clock.offset)
    return message


def clock_change(moved: ClockMoved, real_now: dt.datetime) -> sandbox_pb2.ClockChange:
    return sandbox_pb2.ClockChange(sandbox_id=moved.sandbox_id, clock=setting_message(moved.clock, real_now))


def sandbox_message(sandbox: Sandbox, real_now: dt.datetime) -> sandbox_pb2.Sandbox:
    return sandbox_pb2.Sandbox(
        sandbox_id=sandbox.sandbox_id,
        name=sandbox.name,
        created_at=to_timestamp(sandbox.created_at),
        clock=clock_message(sandbox, real_now),
    )


def created_message(sandbox: Sandbox, real_now: dt.datetime) -> sandbox_pb2.CreateSandboxResponse:
    return sandbox_pb2.CreateSandboxResponse(sandbox=sandbox_message(sandbox, real_now), sandbox_key=sandbox.key)


def seeded_message(created: dict[str, int]) -> sandbox_pb2.SeedSandboxResponse:
    return sandbox_pb2.SeedSandboxResponse(created=created)


def key_message(key: SandboxKey) -> sandbox_pb2.SandboxKey:
    message = sandbox_pb2.SandboxKey(key_id=key.key_id, prefix=key.prefix, created_at=to_timestamp(key.created_at))
    if key.revoked_at is not None:
        message.revoked_at.CopyFrom(to_timestamp(key.revoked_at))
    return message


def rotated_message(key: SandboxKey, secret: str) -> sandbox_pb2.RotateSandboxKeyResponse:
    return sandbox_pb2.RotateSandboxKeyResponse(key=key_message(key), sandbox_key=secret)


def key_id(request: sandbox_pb2.RevokeSandboxKeyRequest) -> str:
    if not request.key_id:
        raise invalid_argument([FieldViolation("key_id", "required: a key_id from ListSandboxKeys", "SBX-REQUIRED")])
    if len(request.key_id) > 40:
        raise invalid_argument([FieldViolation("key_id", "at most 40 characters", "SBX-TOO-LONG")])
    return request.key_id


def without_secret(answer: MessageT) -> MessageT:
    """What is stored for replays of an answer that carries a secret key: the answer without it."""
    stored = type(answer)()
    stored.CopyFrom(answer)
    stored.ClearField("sandbox_key")
    return stored
