"""SandboxAdmin over gRPC: create, read, seed and reset sandboxes; read and move their clocks."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid

import grpc
from sqlmodel import Session, select

from services._gen.registry.v1 import (
    brp_pb2_grpc,
    common_pb2,
    rio_pb2_grpc,
    rod_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
)
from services.common import idempotency
from services.common.caller import CallerResolver, internal_metadata
from services.common.clock import ClockSetting, real_now, register_date
from services.common.database import Database
from services.common.dates import to_proto_date, to_timestamp
from services.common.errors import FieldViolation, invalid_argument
from services.common.peers import Peers
from services.sandbox.tables import SandboxIdempotentResponse, SandboxRecord

log = logging.getLogger(__name__)

_SEED_SIZES = {
    sandbox_pb2.SEED_SIZE_UNSPECIFIED: "small",
    sandbox_pb2.SEED_SIZE_SMALL: "small",
    sandbox_pb2.SEED_SIZE_MEDIUM: "medium",
    sandbox_pb2.SEED_SIZE_FULL: "full",
}


def clock_setting(record: SandboxRecord) -> ClockSetting:
    frozen = record.clock_frozen_at
    if frozen is not None and frozen.tzinfo is None:
        frozen = frozen.replace(tzinfo=dt.UTC)
    return ClockSetting(offset=dt.timedelta(seconds=record.clock_offset_seconds), frozen_at=frozen)


def clock_message(record: SandboxRecord) -> sandbox_pb2.SandboxClock:
    now = clock_setting(record).now(real_now())
    return sandbox_pb2.SandboxClock(
        now=to_timestamp(now), today=to_proto_date(register_date(now)), frozen=record.clock_frozen_at is not None
    )


def sandbox_message(record: SandboxRecord) -> sandbox_pb2.Sandbox:
    return sandbox_pb2.Sandbox(
        sandbox_id=record.sandbox_id,
        name=record.name,
        created_at=to_timestamp(record.created_at),
        clock=clock_message(record),
    )


def find_by_key(session: Session, key: str) -> SandboxRecord | None:
    return session.exec(select(SandboxRecord).where(SandboxRecord.sandbox_key == key)).first()


def new_sandbox_key() -> str:
    return "sk_test_" + secrets.token_urlsafe(24)


class SandboxAdminServicer(sandbox_pb2_grpc.SandboxAdminServicer):
    def __init__(self, database: Database, peers: Peers, internal_token: str) -> None:
        self._db = database
        self._peers = peers
        self._token = internal_token
        self.callers = CallerResolver(self._sandbox_id_for_key, internal_token)

    async def _sandbox_id_for_key(self, key: str) -> str | None:
        record = await self._db.run(lambda s: find_by_key(s, key))
        return record.sandbox_id if record else None

    async def _record(self, context: grpc.aio.ServicerContext) -> SandboxRecord:
        sandbox_id = (await self.callers.resolve(context)).require_sandbox()
        record = await self._db.run(lambda s: s.get(SandboxRecord, sandbox_id))
        if record is None:
            raise invalid_argument([FieldViolation("x-sandbox-id", "no such sandbox", "NOT_FOUND")])
        return record

    async def CreateSandbox(
        self, request: sandbox_pb2.CreateSandboxRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.CreateSandboxResponse:
        if len(request.name) > 200:
            raise invalid_argument([FieldViolation("name", "at most 200 characters", "TOO_LONG")])
        # Creation needs no sandbox, so its idempotency keys live in a global scope.
        scope = "global"

        def create(session: Session) -> sandbox_pb2.CreateSandboxResponse:
            def respond() -> sandbox_pb2.CreateSandboxResponse:
                record = SandboxRecord(
                    sandbox_id="sbx_" + uuid.uuid4().hex[:20],
                    sandbox_key=new_sandbox_key(),
                    name=request.name or "unnamed sandbox",
                    created_at=real_now(),
                )
                session.add(record)
                return sandbox_pb2.CreateSandboxResponse(
                    sandbox=sandbox_message(record), sandbox_key=record.sandbox_key
                )

            return idempotency.once(
                session,
                SandboxIdempotentResponse,
                sandbox_id=scope,
                method="CreateSandbox",
                request=request,
                response_type=sandbox_pb2.CreateSandboxResponse,
                respond=respond,
            )

        return await self._db.run(create)

    async def GetSandbox(
        self, request: sandbox_pb2.GetSandboxRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.Sandbox:
        return sandbox_message(await self._record(context))

    async def GetClock(
        self, request: sandbox_pb2.GetClockRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.SandboxClock:
        return clock_message(await self._record(context))

    async def SetClock(
        self, request: sandbox_pb2.SetClockRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.SandboxClock:
        record = await self._record(context)
        target = request.WhichOneof("target")
        if target is None:
            raise invalid_argument(
                [FieldViolation("target", "set one of travel_to, freeze_at, reset_to_real_time", "REQUIRED")]
            )
        now = real_now()
        if target == "travel_to":
            setting = ClockSetting.travel_to(request.travel_to.ToDatetime(tzinfo=dt.UTC), now)
        elif target == "freeze_at":
            setting = ClockSetting.freeze(request.freeze_at.ToDatetime(tzinfo=dt.UTC))
        else:
            setting = ClockSetting()

        def store(session: Session) -> sandbox_pb2.SandboxClock:
            row = session.get(SandboxRecord, record.sandbox_id)
            assert row is not None
            row.clock_offset_seconds = setting.offset.total_seconds()
            row.clock_frozen_at = setting.frozen_at
            session.add(row)
            return clock_message(row)

        # Setting the clock is naturally idempotent: the same target gives the same setting.
        return await self._db.run(store)

    async def SeedSandbox(
        self, request: sandbox_pb2.SeedSandboxRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.SeedSandboxResponse:
        record = await self._record(context)
        size = _SEED_SIZES.get(request.size)
        if size is None:
            raise invalid_argument([FieldViolation("size", "unknown seed size", "INVALID_ENUM")])
        metadata = internal_metadata(self._token, record.sandbox_id)
        seed = common_pb2.SeedRegisterRequest(idempotency_key=request.idempotency_key, size=size, seed=request.seed)
        created: dict[str, int] = {}
        # RIO first: BRP sizes its persons by the schools RIO created.
        rio = rio_pb2_grpc.RioServiceStub(self._peers.channel("rio"))
        brp = brp_pb2_grpc.BrpServiceStub(self._peers.channel("brp"))
        for stub in (rio, brp):
            answer = await stub.SeedRegister(seed, metadata=metadata)
            created.update(answer.created)
        return sandbox_pb2.SeedSandboxResponse(created=created)

    async def ResetSandbox(
        self, request: sandbox_pb2.ResetSandboxRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.Sandbox:
        record = await self._record(context)
        metadata = internal_metadata(self._token, record.sandbox_id)
        purge = common_pb2.PurgeSandboxRequest(idempotency_key=request.idempotency_key)
        # ROD first, so no re-evaluation runs against half-purged registers.
        await rod_pb2_grpc.RodServiceStub(self._peers.channel("rod")).PurgeSandbox(purge, metadata=metadata)
        await rio_pb2_grpc.RioServiceStub(self._peers.channel("rio")).PurgeSandbox(purge, metadata=metadata)
        await brp_pb2_grpc.BrpServiceStub(self._peers.channel("brp")).PurgeSandbox(purge, metadata=metadata)

        def reset_clock(session: Session) -> sandbox_pb2.Sandbox:
            row = session.get(SandboxRecord, record.sandbox_id)
            assert row is not None
            row.clock_offset_seconds = 0.0
            row.clock_frozen_at = None
            session.add(row)
            return sandbox_message(row)

        return await self._db.run(reset_clock)


async def ensure_default_sandbox(database: Database, name: str = "default") -> tuple[str, str, bool]:
    """The (sandbox_id, key, created) of the sandbox named `name`, creating it when absent (used by `sandbox up`)."""

    def find_or_create(session: Session) -> tuple[str, str, bool]:
        existing = session.exec(select(SandboxRecord).where(SandboxRecord.name == name)).first()
        if existing is not None:
            return existing.sandbox_id, existing.sandbox_key, False
        record = SandboxRecord(
            sandbox_id="sbx_" + uuid.uuid4().hex[:20], sandbox_key=new_sandbox_key(), name=name, created_at=real_now()
        )
        session.add(record)
        return record.sandbox_id, record.sandbox_key, True

    return await database.run(find_or_create)
