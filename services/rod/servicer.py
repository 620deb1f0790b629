"""RodService over gRPC: resolve the caller, decode (codec), run the use case (service), encode (codec)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message
from sqlmodel import Session

from services._gen.registry.v1 import common_pb2, rod_pb2, rod_pb2_grpc
from services.common import idempotency
from services.common.caller import Caller, CallerResolver
from services.common.database import Database
from services.common.idempotency import IdempotentRequest
from services.common.mutation import MutationPath
from services.common.peers import Peers
from services.common.sandbox_client import SandboxClient
from services.common.wakeup import LogWakeup
from services.rod import codec
from services.rod.peers import RodPeers, grpc_peers
from services.rod.service import RodService
from services.rod.tables import RodIdempotentResponse

OutcomeT = TypeVar("OutcomeT")
ResponseT = TypeVar("ResponseT", bound=Message)


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
        codec.idempotency_key(key)
        if not key:
            return None
        sandbox_id = self.caller.require_sandbox()
        stored = await path.database.run(
            lambda s: idempotency.replay(
                s, path.responses, sandbox_id=sandbox_id, method=self.method, request=self.request, key=key
            )
        )
        return None if stored is None else self.response_type.FromString(stored)

    async def __call__(self, work: Callable[[Session], OutcomeT], *, locks: Sequence[str] = ()) -> ResponseT:
        codec.idempotency_key(self.request.idempotency_key)
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
    ) -> None:
        self.sandboxes = SandboxClient(lambda: peers.channel("sandbox"), internal_token)
        self.callers = CallerResolver(self.sandboxes.sandbox_id_for_key, internal_token)
        self.service = RodService(database, rod_peers or grpc_peers(peers, internal_token, self.sandboxes), wakeup)
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

    async def ChangeEnrolment(
        self, request: rod_pb2.ChangeEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.EnrolmentResponse:
        caller = await self.callers.resolve(context)
        commit = self._commit(caller, request, rod_pb2.EnrolmentResponse, codec.enrolment_response)
        return await self.service.change_enrolment(caller, codec.change_enrolment(request), commit)

    async def EndEnrolment(
        self, request: rod_pb2.EndEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.EnrolmentResponse:
        caller = await self.callers.resolve(context)
        commit = self._commit(caller, request, rod_pb2.EnrolmentResponse, codec.enrolment_response)
        return await self.service.end_enrolment(caller, codec.end_enrolment(request), commit)

    async def DeleteEnrolment(
        self, request: rod_pb2.DeleteEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.EnrolmentResponse:
        caller = await self.callers.resolve(context)
        commit = self._commit(caller, request, rod_pb2.EnrolmentResponse, codec.enrolment_response)
        return await self.service.delete_enrolment(caller, codec.delete_enrolment(request), commit)

    async def GetEnrolment(
        self, request: rod_pb2.GetEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.Enrolment:
        caller = await self.callers.resolve(context)
        return codec.enrolment(await self.service.get_enrolment(caller, codec.get_enrolment(request)))

    async def ListEnrolments(
        self, request: rod_pb2.ListEnrolmentsRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.ListEnrolmentsResponse:
        caller = await self.callers.resolve(context)
        query = codec.list_enrolments(request)
        return codec.enrolment_list(await self.service.list_enrolments(caller, query), query)

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

    async def ListFeedback(
        self, request: rod_pb2.ListFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.ListFeedbackResponse:
        caller = await self.callers.resolve(context)
        query = codec.list_feedback(request)
        return codec.feedback_list(await self.service.list_feedback(caller, query), query)

    async def GetFundingCount(
        self, request: rod_pb2.GetFundingCountRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.FundingCount:
        caller = await self.callers.resolve(context)
        institution_code, count_date = codec.funding_count_query(request)
        return codec.funding_count(await self.service.funding_count(caller, institution_code, count_date))

    async def PurgeSandbox(
        self, request: common_pb2.PurgeSandboxRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeSandboxResponse:
        caller = await self.callers.resolve(context)
        return await self.service.purge(
            caller, self._commit(caller, request, common_pb2.PurgeSandboxResponse, codec.purged)
        )
