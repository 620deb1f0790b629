"""BrpService over gRPC, a thin adapter: resolve the caller, decode (codec), run the use case (service), encode."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from sqlmodel import Session

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2
from services.brp_sync import codec, service, store
from services.brp_sync.peers import SandboxGateway
from services.brp_sync.store import LOG_NAME
from services.brp_sync.tables import BrpIdempotentResponse
from services.common.caller import Caller, CallerResolver
from services.common.clock import real_now
from services.common.database import Database
from services.common.idempotency import IdempotentRequest
from services.common.mutation import MutationPath
from services.common.wakeup import LogWakeup

ResponseT = TypeVar("ResponseT", bound=Message)
# A held message older than this is reported as an overdue gap (REGISTRY_BRP_GAP_TIMEOUT_SECONDS overrides it).
DEFAULT_GAP_TIMEOUT = dt.timedelta(hours=1)


class BrpServiceServicer(brp_pb2_grpc.BrpServiceServicer):
    def __init__(
        self,
        database: Database,
        sandboxes: SandboxGateway,
        internal_token: str,
        *,
        wakeup: LogWakeup | None = None,
        gap_timeout: dt.timedelta = DEFAULT_GAP_TIMEOUT,
    ) -> None:
        self._db = database
        self.sandboxes = sandboxes
        self.callers = CallerResolver(sandboxes.sandbox_id_for_key, internal_token)
        self.wakeup = wakeup or LogWakeup()
        self.gap_timeout = gap_timeout
        # Every writer of the applied-change log takes its lock; only ingestion appends, so only it wakes followers.
        self._ingestions = MutationPath(
            database, BrpIdempotentResponse, register_locks=(LOG_NAME,), followers=(self.wakeup,)
        )
        self._mutations = MutationPath(database, BrpIdempotentResponse)

    async def _caller(self, context: grpc.aio.ServicerContext) -> tuple[Caller, str]:
        caller = await self.callers.resolve(context)
        return caller, await service.require_known_sandbox(self.sandboxes, caller)

    # ---- persons ----

    async def GetPerson(self, request: brp_pb2.GetPersonRequest, context: grpc.aio.ServicerContext) -> brp_pb2.Person:
        _, sandbox_id = await self._caller(context)
        bsn = codec.bsn(request.bsn)
        found = await self._db.run(
            lambda s: service.get_person(s, sandbox_id=sandbox_id, bsn=bsn, with_history=request.include_history)
        )
        return codec.person_with_history(found)

    async def ListPersons(
        self, request: brp_pb2.ListPersonsRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.ListPersonsResponse:
        _, sandbox_id = await self._caller(context)
        query, page = codec.person_query(request)
        rows = await self._db.run(lambda s: service.list_persons(s, sandbox_id=sandbox_id, query=query, page=page))
        return codec.persons_page(rows, page)

    # ---- ingestion ----

    async def SubmitChanges(
        self, request: brp_pb2.SubmitChangesRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.SubmitChangesResponse:
        caller, sandbox_id = await self._caller(context)
        received_at = real_now()
        document = await service.receive_document(
            self._db, sandbox_id=sandbox_id, data=request.xml_document, received_at=received_at
        )

        def work(session: Session) -> brp_pb2.SubmitChangesResponse:
            results = service.submit_changes(session, sandbox_id=sandbox_id, document=document, received_at=received_at)
            return codec.submit_response(results)

        return await self._mutate(self._ingestions, caller, request, brp_pb2.SubmitChangesResponse, work)

    async def ListRejectedMessages(
        self, request: brp_pb2.ListRejectedMessagesRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.ListRejectedMessagesResponse:
        _, sandbox_id = await self._caller(context)
        page = codec.numbered_page(request)
        rows = await self._db.run(lambda s: service.list_rejected(s, sandbox_id=sandbox_id, page=page))
        return codec.rejected_page(rows, page)

    async def ListHeldMessages(
        self, request: brp_pb2.ListHeldMessagesRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.ListHeldMessagesResponse:
        _, sandbox_id = await self._caller(context)
        page = codec.numbered_page(request)
        now, timeout = real_now(), self.gap_timeout
        rows = await self._db.run(
            lambda s: service.list_held(s, sandbox_id=sandbox_id, page=page, now=now, gap_timeout=timeout)
        )
        return codec.held_page(rows, page)

    # ---- following ----

    async def SetFollowIndication(
        self, request: brp_pb2.SetFollowIndicationRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.SetFollowIndicationResponse:
        caller, sandbox_id = await self._caller(context)
        subscriber, bsn, end_date = codec.follow_indication(request)
        service.require_own_subscriber(caller, subscriber)

        if request.follow and not request.idempotency_key:
            # Already in place with this end: only read (with a key, the mutation path keeps the stored answer).
            indication, person = await self._db.run(
                lambda s: service.followed_person(
                    s, sandbox_id=sandbox_id, subscriber=subscriber, bsn=bsn, end_date=end_date
                )
            )
            if indication is not None:
                return codec.follow_response(indication, person)

        def work(session: Session) -> brp_pb2.SetFollowIndicationResponse:
            indication = service.set_follow_indication(
                session, sandbox_id=sandbox_id, subscriber=subscriber, bsn=bsn, follow=request.follow, end_date=end_date
            )
            # Read in this transaction: no change falls between following and reading.
            person = store.person(session, sandbox_id=sandbox_id, bsn=bsn) if request.follow else None
            return codec.follow_response(indication, person)

        # One lock per indication: two first follows of one person by one subscriber never both insert.
        lock = f"brp_sync_follow:{sandbox_id}:{subscriber}:{bsn}"
        return await self._mutate(self._mutations, caller, request, brp_pb2.SetFollowIndicationResponse, work, lock)

    async def SetFollowIndications(
        self, request: brp_pb2.SetFollowIndicationsRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.SetFollowIndicationsResponse:
        caller, sandbox_id = await self._caller(context)
        caller.require_internal()
        subscriber, bsns = codec.follow_indications(request)

        def work(session: Session) -> brp_pb2.SetFollowIndicationsResponse:
            # Followed and read in one transaction: no change falls between following and reading.
            persons = store.follow_many(session, sandbox_id=sandbox_id, subscriber=subscriber, bsns=bsns)
            return codec.follows_response(subscriber, bsns, persons)

        # The locks SetFollowIndication takes, one per indication (sorted when taken): never both insert one.
        locks = [f"brp_sync_follow:{sandbox_id}:{subscriber}:{b}" for b in sorted(set(bsns))]
        return await self._mutate(self._mutations, caller, request, brp_pb2.SetFollowIndicationsResponse, work, *locks)

    async def StreamPersonChanges(
        self, request: brp_pb2.StreamPersonChangesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[brp_pb2.PersonChange]:
        # The internal token without a sandbox id follows every sandbox (ROD does); a vendor sees only its own.
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        if caller.sandbox_id is None:
            caller.require_internal()
        else:
            await service.require_known_sandbox(self.sandboxes, caller)
        after_cursor, subscriber = codec.stream_request(request)
        with self.wakeup.confirming(caller) as follower:
            if follower is not None:
                yield brp_pb2.PersonChange()  # registered: from now on every ingestion waits until it was handed here
            changes = service.follow_changes(
                self._db,
                self.wakeup,
                sandbox_id=caller.sandbox_id,
                subscriber=subscriber,
                after_cursor=after_cursor,
                follower=follower,
            )
            async for change in changes:
                yield codec.change_message(change)

    # ---- scenario persons ----

    async def ListScenarioPersons(
        self, request: brp_pb2.ListScenarioPersonsRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.ListScenarioPersonsResponse:
        _, sandbox_id = await self._caller(context)
        view = await self._db.run(lambda s: service.list_scenario_persons(s, sandbox_id=sandbox_id))
        return codec.scenarios_message(view)

    # ---- internal: seed and purge ----

    async def SeedRegister(
        self, request: common_pb2.SeedRegisterRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.SeedRegisterResponse:
        caller, sandbox_id = await self._caller(context)
        caller.require_internal()
        size = codec.seed_size(request)
        national_pupils = codec.national_pupils(request)
        today = await service.seed_date(self.sandboxes, sandbox_id)

        def work(session: Session) -> common_pb2.SeedRegisterResponse:
            created = service.seed_register(
                session,
                sandbox_id=sandbox_id,
                size=size,
                seed=request.seed,
                today=today,
                synthetic_bsns=request.synthetic_bsns,
                national_pupils=national_pupils,
            )
            return codec.seed_response(created)

        return await self._mutate(self._mutations, caller, request, common_pb2.SeedRegisterResponse, work, LOG_NAME)

    async def PurgeSandbox(
        self, request: common_pb2.PurgeSandboxRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeSandboxResponse:
        caller, sandbox_id = await self._caller(context)
        caller.require_internal()

        def work(session: Session) -> common_pb2.PurgeSandboxResponse:
            return codec.purge_response(service.purge_sandbox(session, sandbox_id=sandbox_id))

        return await self._mutate(self._mutations, caller, request, common_pb2.PurgeSandboxResponse, work, LOG_NAME)

    @staticmethod
    async def _mutate(
        path: MutationPath,
        caller: Caller,
        request: IdempotentRequest,
        response_type: type[ResponseT],
        work: Callable[[Session], ResponseT],
        *locks: str,
    ) -> ResponseT:
        """Runs a write on a mutation path, named by the request's type (SubmitChangesRequest: "SubmitChanges")."""
        method = type(request).__name__.removesuffix("Request")
        return await path.run(
            caller=caller, method=method, request=request, response_type=response_type, work=work, locks=locks
        )
