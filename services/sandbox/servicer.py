"""SandboxAdmin over gRPC, a thin adapter: resolve the caller, decode (codec), run the use case (service), encode."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from sqlmodel import Session

from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.common import idempotency
from services.common.caller import SANDBOX_KEY, Caller, CallerResolver, metadata_of
from services.common.clock import real_now
from services.common.database import Database
from services.common.errors import unauthenticated
from services.common.idempotency import IdempotentRequest
from services.common.mutation import MutationPath
from services.sandbox import codec, rules, service
from services.sandbox.clocks import ClockHub, ClockMoved
from services.sandbox.peers import Registers
from services.sandbox.revocations import KeyRevocation, RevocationHub
from services.sandbox.rules import Sandbox
from services.sandbox.tables import SandboxIdempotentResponse

ResponseT = TypeVar("ResponseT", bound=Message)
OutcomeT = TypeVar("OutcomeT")
Work = Callable[[Session], ResponseT]


class SandboxAdminServicer(sandbox_pb2_grpc.SandboxAdminServicer):
    def __init__(
        self, database: Database, registers: Registers, internal_token: str, sandboxes_per_creator: int = 0
    ) -> None:
        self._db = database
        self.sandboxes_per_creator = sandboxes_per_creator
        self.registers = registers
        self.callers = CallerResolver(self._sandbox_id_for_key, internal_token)
        self._mutations = MutationPath(database, SandboxIdempotentResponse)
        self.revocations = RevocationHub()
        self.clocks = ClockHub()
        # Reading a moved clock and publishing it happen one at a time, so the last news is the newest setting.
        self._clock_news = asyncio.Lock()
        # One call at a time per idempotency key while the registers work (see _after_registers).
        self._key_locks: weakref.WeakValueDictionary[tuple[str, str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    async def _sandbox_id_for_key(self, key: str) -> str | None:
        return await self._db.run(lambda s: service.sandbox_id_for_key(s, key))

    async def _sandbox(self, context: grpc.aio.ServicerContext) -> tuple[Caller, Sandbox]:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        return caller, await self._db.run(lambda s: service.get_sandbox(s, sandbox_id))

    async def _creator(self, context: grpc.aio.ServicerContext) -> tuple[Caller, str]:
        """CreateSandbox's caller (a vendor's own sandbox when it sends its key, else the connection it calls
        on), and who the new sandbox counts against."""
        key = metadata_of(context).get(SANDBOX_KEY, "")
        sandbox_id = await self._sandbox_id_for_key(key) if key else None
        if key and sandbox_id is None:
            raise unauthenticated(f"unknown {SANDBOX_KEY}; leave it out to create a sandbox without one")
        peer = context.peer()
        return Caller(rules.creator_scope(sandbox_id, peer)), rules.quota_holder(sandbox_id, peer)

    async def CreateSandbox(
        self, request: sandbox_pb2.CreateSandboxRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.CreateSandboxResponse:
        # The mutation path needs a sandbox, which does not exist yet: the creator's scope stands in for it,
        # so one caller's keys never replay another caller's answer (and its secret key).
        creator, holder = await self._creator(context)
        now = real_now()

        def work(session: Session) -> sandbox_pb2.CreateSandboxResponse:
            created = service.create_sandbox(
                session, name=request.name, now=now, created_by=holder, quota=self.sandboxes_per_creator
            )
            return codec.created_message(created, now)

        return await self._mutate(
            creator,
            request,
            sandbox_pb2.CreateSandboxResponse,
            work,
            keep_for_replay=codec.without_secret,
            locks=(f"sandbox-quota:{holder}",),
        )

    async def RotateSandboxKey(
        self, request: sandbox_pb2.RotateSandboxKeyRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.RotateSandboxKeyResponse:
        caller, sandbox = await self._sandbox(context)
        now = real_now()

        def work(session: Session) -> sandbox_pb2.RotateSandboxKeyResponse:
            return codec.rotated_message(*service.rotate_key(session, sandbox_id=sandbox.sandbox_id, now=now))

        return await self._mutate(
            caller, request, sandbox_pb2.RotateSandboxKeyResponse, work, keep_for_replay=codec.without_secret
        )

    async def RevokeSandboxKey(
        self, request: sandbox_pb2.RevokeSandboxKeyRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.SandboxKey:
        caller, sandbox = await self._sandbox(context)
        key_id = codec.key_id(request)
        now = real_now()
        revoked: list[KeyRevocation] = []

        def work(session: Session) -> sandbox_pb2.SandboxKey:
            key = service.revoke_key(session, sandbox_id=sandbox.sandbox_id, key_id=key_id, now=now)
            revoked.append(KeyRevocation(key.key_hash, key.sandbox_id))
            return codec.key_message(key)

        answer = await self._mutate(caller, request, sandbox_pb2.SandboxKey, work)
        # Answer only once every register following revocations has been told: from then on it refuses the key.
        for revocation in revoked:
            await self.revocations.publish(revocation)
        return answer

    async def ListSandboxKeys(
        self, request: sandbox_pb2.ListSandboxKeysRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.ListSandboxKeysResponse:
        _, sandbox = await self._sandbox(context)
        keys = await self._db.run(lambda s: service.list_keys(s, sandbox_id=sandbox.sandbox_id))
        return sandbox_pb2.ListSandboxKeysResponse(keys=[codec.key_message(k) for k in keys])

    async def StreamKeyRevocations(
        self, request: sandbox_pb2.StreamKeyRevocationsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sandbox_pb2.KeyRevocation]:
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        caller.require_internal()
        await self.revocations.ready()
        subscription = self.revocations.subscribe()
        try:
            # An empty first message says "subscribed": from here on the follower misses nothing and may cache.
            yield sandbox_pb2.KeyRevocation()
            async for revocation, delivered in subscription:
                yield sandbox_pb2.KeyRevocation(key_hash=revocation.key_hash, sandbox_id=revocation.sandbox_id)
                # gRPC asks for the next message once this one is written: only then is it confirmed.
                delivered()
        finally:
            subscription.close()

    async def GetSandbox(
        self, request: sandbox_pb2.GetSandboxRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.Sandbox:
        _, sandbox = await self._sandbox(context)
        return codec.sandbox_message(sandbox, real_now())

    async def GetClock(
        self, request: sandbox_pb2.GetClockRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.SandboxClock:
        _, sandbox = await self._sandbox(context)
        return codec.clock_message(sandbox, real_now())

    async def SetClock(
        self, request: sandbox_pb2.SetClockRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.SandboxClock:
        caller, sandbox = await self._sandbox(context)
        target = codec.clock_target(request)
        now = real_now()

        def work(session: Session) -> sandbox_pb2.SandboxClock:
            moved = service.set_clock(session, sandbox_id=sandbox.sandbox_id, target=target, real_now=now)
            return codec.clock_message(moved, now)

        answer = await self._mutate(caller, request, sandbox_pb2.SandboxClock, work)
        await self._tell_clock_followers(sandbox.sandbox_id)
        return answer

    async def _tell_clock_followers(self, sandbox_id: str) -> None:
        """Publishes the sandbox's clock as committed now; returns once every follower has been told.

        Read after the commit and published under one lock: whatever order
        concurrent moves commit in, the last news a follower gets is the
        setting in the database. A replayed SetClock tells them again (harmless).
        """
        async with self._clock_news:
            current = await self._db.run(lambda s: service.get_sandbox(s, sandbox_id))
            await self.clocks.publish(ClockMoved(sandbox_id, current.clock))

    async def StreamClockChanges(
        self, request: sandbox_pb2.StreamClockChangesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sandbox_pb2.ClockChange]:
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        caller.require_internal()
        subscription = self.clocks.subscribe()
        try:
            # An empty first message says "subscribed": from here on the follower misses nothing and may keep
            # clocks. Only on SQLite (one SandboxAdmin process): see services.sandbox.clocks.
            if self._db.engine.dialect.name == "sqlite":
                yield sandbox_pb2.ClockChange()
            async for moved, delivered in subscription:
                yield codec.clock_change(moved, real_now())
                # gRPC asks for the next message once this one is written: only then is it confirmed.
                delivered()
        finally:
            subscription.close()

    async def SeedSandbox(
        self, request: sandbox_pb2.SeedSandboxRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.SeedSandboxResponse:
        caller, sandbox = await self._sandbox(context)
        size = codec.seed_size(request)
        national_pupils = codec.national_pupils(request)
        return await self._after_registers(
            caller,
            request,
            sandbox_pb2.SeedSandboxResponse,
            lambda: service.seed_registers(
                self.registers,
                sandbox_id=sandbox.sandbox_id,
                size=size,
                seed=request.seed,
                idempotency_key=request.idempotency_key,
                synthetic_bsns=request.synthetic_bsns,
                national_pupils=national_pupils,
            ),
            lambda _session, created: codec.seeded_message(created),
        )

    async def ResetSandbox(
        self, request: sandbox_pb2.ResetSandboxRequest, context: grpc.aio.ServicerContext
    ) -> sandbox_pb2.Sandbox:
        caller, sandbox = await self._sandbox(context)
        now = real_now()
        answer = await self._after_registers(
            caller,
            request,
            sandbox_pb2.Sandbox,
            lambda: service.purge_registers(
                self.registers, sandbox_id=sandbox.sandbox_id, idempotency_key=request.idempotency_key
            ),
            lambda s, _: codec.sandbox_message(
                service.reset_clock(s, sandbox_id=sandbox.sandbox_id, real_now=now), now
            ),
        )
        await self._tell_clock_followers(sandbox.sandbox_id)
        return answer

    async def _after_registers(
        self,
        caller: Caller,
        request: IdempotentRequest,
        response_type: type[ResponseT],
        effect: Callable[[], Awaitable[OutcomeT]],
        finish: Callable[[Session, OutcomeT], ResponseT],
    ) -> ResponseT:
        """The mutation path of a call whose effect happens in the registers (seed, reset).

        The registers cannot join this service's transaction, so: one call per
        key at a time in this process, a stored answer replayed before any
        register is asked again, then the registers (each idempotent under the
        same key), then the answer stored on the mutation path.
        """
        sandbox_id = caller.require_sandbox()
        method = type(request).__name__.removesuffix("Request")
        key = request.idempotency_key
        lock = self._key_locks.setdefault((sandbox_id, method, key), asyncio.Lock()) if key else asyncio.Lock()
        async with lock:
            stored = await self._db.run(
                lambda s: idempotency.replay(
                    s, SandboxIdempotentResponse, sandbox_id=sandbox_id, method=method, request=request, key=key
                )
            )
            if stored is not None:
                return response_type.FromString(stored)
            outcome = await effect()
            return await self._mutate(caller, request, response_type, lambda s: finish(s, outcome))

    async def _mutate(
        self,
        caller: Caller,
        request: IdempotentRequest,
        response_type: type[ResponseT],
        work: Work[ResponseT],
        keep_for_replay: Callable[[ResponseT], ResponseT] | None = None,
        locks: tuple[str, ...] = (),
    ) -> ResponseT:
        """Runs a write on the mutation path, named by the request's type (SetClockRequest: "SetClock")."""
        method = type(request).__name__.removesuffix("Request")
        return await self._mutations.run(
            caller=caller,
            method=method,
            request=request,
            response_type=response_type,
            work=work,
            keep_for_replay=keep_for_replay,
            locks=locks,
        )
