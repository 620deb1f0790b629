"""RodService over gRPC: resolve the caller, decode (codec), run the use case (service), encode (codec)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message
from sqlmodel import Session

from services._gen.registry.v1 import common_pb2, rod_pb2, rod_pb2_grpc
from services.common import idempotency
from services.common.caller import Caller, CallerResolver
from services.common.database import Database
from services.common.idempotency import IdempotentRequest
from services.common.mutation import MAX_IDEMPOTENCY_KEY_LENGTH, MutationPath
from services.common.peers import Peers
from services.common.sandbox_client import SandboxClient
from services.common.wakeup import LogWakeup
from services.rod import codec
from services.rod.copies import CopiedBrp, CopiedRio, OfferingCopy, PersonCopy
from services.rod.peers import RodPeers, grpc_peers
from services.rod.rules import EnrolmentOutcome
from services.rod.service import RodService
from services.rod.tables import RodIdempotentResponse

OutcomeT = TypeVar("OutcomeT")
ResponseT = TypeVar("ResponseT", bound=Message)
RequestT = TypeVar("RequestT", bound=IdempotentRequest)
CommandT = TypeVar("CommandT")
ListRequestT = TypeVar("ListRequestT", bound=Message)
QueryT = TypeVar("QueryT")
ItemT = TypeVar("ItemT")
ListResponseT = TypeVar("ListResponseT", bound=Message)
Context: TypeAlias = grpc.aio.ServicerContext
EnrolmentResponse = rod_pb2.EnrolmentResponse
ListEnrolmentsResponse = rod_pb2.ListEnrolmentsResponse
ListFeedbackResponse = rod_pb2.ListFeedbackResponse


@dataclass
class _NoKey:
    """A mutating request without an idempotency key of its own (AcknowledgeFeedback is idempotent by nature)."""

    message: Message
    idempotency_key: str = ""

    def SerializeToString(self, *, deterministic: bool = False) -> bytes:
        return self.message.SerializeToString(deterministic=deterministic)


@dataclass(frozen=True)
class GrpcCommit(Generic[OutcomeT, ResponseT]):
    """The mutation path bound to one gRPC request: the use case's outcome is encoded and stored under its key."""

    path: MutationPath
    caller: Caller
    method: str
    request: IdempotentRequest
    response_type: type[ResponseT]
    encode: Callable[[OutcomeT], ResponseT]

    async def answered(self) -> ResponseT | None:
        key, path = self.request.idempotency_key, self.path
        if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return None  # no key, or one the mutation path refuses with its field

        sandbox_id = self.caller.require_sandbox()
        stored = await path.database.run(
            lambda s: idempotency.replay(
                s, path.responses, sandbox_id=sandbox_id, method=self.method, request=self.request, key=key
            )
        )
        return None if stored is None else self.response_type.FromString(stored)

    async def __call__(self, work: Callable[[Session], OutcomeT], *, locks: Sequence[str] = ()) -> ResponseT:
        return await self.path.run(
            caller=self.caller,
            method=self.method,
            request=self.request,
            response_type=self.response_type,
            work=lambda session: self.encode(work(session)),
            locks=locks,
        )


class RodServiceServicer(rod_pb2_grpc.RodServiceServicer):
    def __init__(
        self,
        database: Database,
        peers: Peers,
        internal_token: str,
        wakeup: LogWakeup,
        rod_peers: RodPeers | None = None,
        offering_copy: OfferingCopy | None = None,
        person_copy: PersonCopy | None = None,
    ) -> None:
        self.sandboxes = SandboxClient(lambda: peers.channel("sandbox"), internal_token)
        self.callers = CallerResolver(self.sandboxes.sandbox_id_for_key, internal_token)
        gateways = rod_peers or grpc_peers(peers, internal_token, self.sandboxes)
        if offering_copy is not None:
            gateways = dataclasses.replace(gateways, rio=CopiedRio(gateways.rio, offering_copy))
        if person_copy is not None:
            gateways = dataclasses.replace(gateways, brp=CopiedBrp(gateways.brp, person_copy))
            # ResetSandbox purges BRP after ROD, then tells the clock: a person kept in between goes then.
            self.sandboxes.on_clock_change(person_copy.forget)
        self.service = RodService(database, gateways, wakeup, person_copy)
        self.mutations = MutationPath(database, RodIdempotentResponse, followers=(wakeup,))
        # An acknowledgement adds no feedback: no stream needs waking.
        self.quiet_mutations = MutationPath(database, RodIdempotentResponse)

    def _commit(
        self,
        caller: Caller,
        request: IdempotentRequest,
        response_type: type[ResponseT],
        encode: Callable[[OutcomeT], ResponseT],
        path: MutationPath | None = None,
    ) -> GrpcCommit[OutcomeT, ResponseT]:
        # The RPC's name, as idempotent answers were always stored (a keyless request stores none).
        method = type(request).__name__.removesuffix("Request")
        return GrpcCommit(path or self.mutations, caller, method, request, response_type, encode)

    async def IdentifyPupil(
        self, request: rod_pb2.IdentifyPupilRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.IdentifyPupilResponse:
        caller = await self.callers.resolve(context)
        commit = self._commit(caller, request, rod_pb2.IdentifyPupilResponse, codec.identify_response)
        return await self.service.identify_pupil(caller, codec.identify_pupil(request), commit)

    async def RegisterEnrolment(
        self, request: rod_pb2.RegisterEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.EnrolmentResponse:
        caller = await self.callers.resolve(context)
        command = codec.register_enrolment(request, authorise=caller.require_institution)
        commit = self._commit(caller, request, rod_pb2.EnrolmentResponse, codec.enrolment_response)
        return await self.service.register_enrolment(caller, command, commit)

    async def RegisterEnrolments(
        self, request: rod_pb2.RegisterEnrolmentsRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.RegisterEnrolmentsResponse:
        caller = await self.callers.resolve(context)
        items = codec.register_enrolments(request, authorise=caller.require_institution)
        commit = self._commit(caller, request, rod_pb2.RegisterEnrolmentsResponse, codec.bulk_response)
        return await self.service.register_enrolments(caller, items, commit)

    async def ChangeEnrolment(self, request: rod_pb2.ChangeEnrolmentRequest, context: Context) -> EnrolmentResponse:
        return await self._enrolment_message(context, request, codec.change_enrolment, self.service.change_enrolment)

    async def EndEnrolment(self, request: rod_pb2.EndEnrolmentRequest, context: Context) -> EnrolmentResponse:
        return await self._enrolment_message(context, request, codec.end_enrolment, self.service.end_enrolment)

    async def DeleteEnrolment(self, request: rod_pb2.DeleteEnrolmentRequest, context: Context) -> EnrolmentResponse:
        return await self._enrolment_message(context, request, codec.delete_enrolment, self.service.delete_enrolment)

    async def _enrolment_message(
        self,
        context: Context,
        request: RequestT,
        decode: Callable[[RequestT], CommandT],
        use_case: Callable[
            [Caller, CommandT, GrpcCommit[EnrolmentOutcome, EnrolmentResponse]], Awaitable[EnrolmentResponse]
        ],
    ) -> EnrolmentResponse:
        """Change, End and Delete: a school's message about one of its enrolments, answered with the enrolment."""
        caller = await self.callers.resolve(context)
        commit = self._commit(caller, request, EnrolmentResponse, codec.enrolment_response)
        return await use_case(caller, decode(request), commit)

    async def GetEnrolment(
        self, request: rod_pb2.GetEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.Enrolment:
        caller = await self.callers.resolve(context)
        return codec.enrolment(await self.service.get_enrolment(caller, codec.get_enrolment(request)))

    async def ListEnrolments(self, request: rod_pb2.ListEnrolmentsRequest, context: Context) -> ListEnrolmentsResponse:
        return await self._page(
            context, request, codec.list_enrolments, self.service.list_enrolments, codec.enrolment_list
        )

    async def StreamFeedback(
        self, request: rod_pb2.StreamFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rod_pb2.Feedback]:
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        async for entry in self.service.follow_feedback(caller, codec.follow_feedback(request)):
            yield codec.feedback(entry)

    async def AcknowledgeFeedback(
        self, request: rod_pb2.AcknowledgeFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.AcknowledgeFeedbackResponse:
        caller = await self.callers.resolve(context)
        command = codec.acknowledge_feedback(request)
        commit = self._commit(
            caller, _NoKey(request), rod_pb2.AcknowledgeFeedbackResponse, codec.acknowledged, self.quiet_mutations
        )
        return await self.service.acknowledge_feedback(caller, command, commit)

    async def ListFeedback(self, request: rod_pb2.ListFeedbackRequest, context: Context) -> ListFeedbackResponse:
        return await self._page(context, request, codec.list_feedback, self.service.list_feedback, codec.feedback_list)

    async def _page(
        self,
        context: Context,
        request: ListRequestT,
        decode: Callable[[ListRequestT], QueryT],
        use_case: Callable[[Caller, QueryT], Awaitable[list[ItemT]]],
        encode: Callable[[list[ItemT], QueryT], ListResponseT],
    ) -> ListResponseT:
        """A List call: the use case reads one item more than the page holds; the codec cuts the page (paging.cut)."""
        caller = await self.callers.resolve(context)
        query = decode(request)
        return encode(await use_case(caller, query), query)

    async def GetFundingCount(
        self, request: rod_pb2.GetFundingCountRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.FundingCount:
        caller = await self.callers.resolve(context)
        institution_code, count_date = codec.funding_count_query(request)
        return codec.funding_count(await self.service.funding_count(caller, institution_code, count_date))

    async def ListCodes(
        self, request: rod_pb2.ListCodesRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.ListCodesResponse:
        await self.callers.resolve(context)
        return codec.code_list(request)

    async def PurgeSandbox(
        self, request: common_pb2.PurgeSandboxRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeSandboxResponse:
        caller = await self.callers.resolve(context)
        return await self.service.purge(
            caller, self._commit(caller, request, common_pb2.PurgeSandboxResponse, codec.purged)
        )
