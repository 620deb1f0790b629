"""RioService over gRPC, a thin adapter: resolve the caller, decode (codec), run the use case (service), encode.

Each RPC is one line naming its three steps; `Change` and `Read` are the two
ways a call runs (a change takes the register's one mutation path).
"""

# mypy compares an RPC attribute's bound type (request, context) with the base class's unbound def (self, ...);
# the descriptors below give exactly the bound signature, so that check is off for this file's assignments.
# mypy: disable-error-code="assignment"

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeAlias, TypeVar, overload

import grpc
from google.protobuf import message_factory
from google.protobuf.message import Message
from sqlmodel import Session

from services._gen.registry.v1 import rio_pb2, rio_pb2_grpc
from services.common.caller import Caller, CallerResolver
from services.common.idempotency import IdempotentRequest
from services.common.mutation import MutationPath
from services.rio import codec
from services.rio.service import RioService, Write

Request = TypeVar("Request", bound=Message)
Command = TypeVar("Command")
Result = TypeVar("Result")
Response = TypeVar("Response", bound=Message)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = Callable[[Request, Context], Awaitable[Response]]
Decode: TypeAlias = Callable[[Request], Command]
Encode: TypeAlias = Callable[[Result], Response]
# A use case of RioService, unbound: a change gets the mutation path's `write`, a read answers by itself.
Changes: TypeAlias = Callable[[RioService, Caller, Command, Write[Result, Response]], Awaitable[Response]]
Reads: TypeAlias = Callable[[RioService, Caller, Command], Awaitable[Result]]
_METHODS = rio_pb2.DESCRIPTOR.services_by_name["RioService"].methods_by_name


class _Rpc(Generic[Request, Command, Result, Response]):
    """One unary RPC as a class attribute: decode, use case, encode. The attribute's name is the RPC's."""

    def __init__(
        self, decode: Callable[[Request], Command], use_case: Callable[..., Awaitable[Any]], encode: Callable[..., Any]
    ) -> None:
        self._decode, self._use_case, self._encode = decode, use_case, encode
        self._method = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._method = name

    @overload
    def __get__(self, servicer: None, owner: type) -> _Rpc[Request, Command, Result, Response]: ...
    @overload
    def __get__(self, servicer: RioServiceServicer, owner: type) -> Handler[Request, Response]: ...
    def __get__(self, servicer: RioServiceServicer | None, owner: type) -> Any:
        # A partial of a coroutine function is one too: grpc.aio awaits it on the server's loop.
        return self if servicer is None else functools.partial(self._run, servicer)

    async def _run(self, servicer: RioServiceServicer, request: Request, context: Context) -> Response:
        raise NotImplementedError


class Change(_Rpc[Request, Command, Result, Response]):
    """A mutating RPC: its use case's work runs once per idempotency key through the mutation path, the answer
    encoded inside the same transaction (the stored answer is what a retry gets, keyed by the RPC's name)."""

    def __init__(
        self,
        decode: Decode[Request, Command],
        use_case: Changes[Command, Result, Response],
        encode: Encode[Result, Response],
    ) -> None:
        super().__init__(decode, use_case, encode)

    async def _run(self, servicer: RioServiceServicer, request: Request, context: Context) -> Response:
        caller = await servicer.callers.resolve(context)
        codec.check_text(request)
        command = self._decode(request)
        response_type: type[Response] = message_factory.GetMessageClass(_METHODS[self._method].output_type)
        keyed: IdempotentRequest = request  # every mutating request has the key

        def write(work: Callable[[Session], Result]) -> Awaitable[Response]:
            return servicer.mutations.run(
                caller=caller,
                method=self._method,
                request=keyed,
                response_type=response_type,
                work=lambda session: self._encode(work(session)),
            )

        response: Response = await self._use_case(servicer.service, caller, command, write)
        return response


class Read(_Rpc[Request, Command, Result, Response]):
    """A reading RPC: one transaction of its own, no idempotency key."""

    def __init__(
        self, decode: Decode[Request, Command], use_case: Reads[Command, Result], encode: Encode[Result, Response]
    ) -> None:
        super().__init__(decode, use_case, encode)

    async def _run(self, servicer: RioServiceServicer, request: Request, context: Context) -> Response:
        caller = await servicer.callers.resolve(context)
        codec.check_text(request)
        response: Response = self._encode(await self._use_case(servicer.service, caller, self._decode(request)))
        return response


class RioServiceServicer(rio_pb2_grpc.RioServiceServicer):
    """The RIO register over gRPC: every change takes the one mutation path, every read one transaction."""

    def __init__(self, service: RioService, callers: CallerResolver, mutations: MutationPath) -> None:
        self.service = service
        self.callers = callers
        self.mutations = mutations

    # School boards (onderwijsbesturen)
    CreateBoard = Change(codec.new_board, RioService.create_board, codec.board)
    GetBoard = Read(codec.board_code, RioService.get_board, codec.board)
    ListBoards = Read(codec.boards_query, RioService.list_boards, codec.boards)

    # Providers (onderwijsaanbieders)
    CreateProvider = Change(codec.new_provider, RioService.create_provider, codec.provider)
    UpdateProvider = Change(codec.provider_version, RioService.update_provider, codec.provider)
    EndProvider = Change(codec.end_provider, RioService.end_provider, codec.provider)
    GetProvider = Read(codec.provider_on, RioService.get_provider, codec.provider)
    ListProviders = Read(codec.providers_query, RioService.list_providers, codec.providers)

    # Locations (onderwijslocaties)
    CreateLocation = Change(codec.new_location, RioService.create_location, codec.location)
    UpdateLocation = Change(codec.location_version, RioService.update_location, codec.location)
    EndLocation = Change(codec.end_location, RioService.end_location, codec.location)
    GetLocation = Read(codec.location_on, RioService.get_location, codec.location)
    ListLocations = Read(codec.locations_query, RioService.list_locations, codec.locations)

    # Location use (onderwijslocatiegebruik): which board uses a location when
    CreateLocationUse = Change(codec.new_location_use, RioService.create_location_use, codec.location_use)
    EndLocationUse = Change(codec.end_location_use, RioService.end_location_use, codec.location_use)
    ListLocationUses = Read(codec.location_uses_query, RioService.list_location_uses, codec.location_uses)

    # Courses of the national catalogue (opleidingen)
    CreateCourse = Change(codec.new_course, RioService.create_course, codec.course)
    EndCourse = Change(codec.end_course, RioService.end_course, codec.course)
    GetCourse = Read(codec.course_on, RioService.get_course, codec.course)
    ListCourses = Read(codec.courses_query, RioService.list_courses, codec.courses)

    # Course offerings (aangeboden opleidingen), and ROD's question for every enrolment
    CreateCourseOffering = Change(codec.new_offering, RioService.create_offering, codec.offering)
    EndCourseOffering = Change(codec.end_offering, RioService.end_offering, codec.offering)
    GetCourseOffering = Read(codec.offering_on, RioService.get_offering, codec.offering)
    ListCourseOfferings = Read(codec.offerings_query, RioService.list_offerings, codec.offerings)
    CheckOffering = Read(codec.offering_question, RioService.check_offering, codec.offering_check)

    # Sandbox lifecycle (internal: SandboxAdmin seeds and purges)
    SeedRegister = Change(codec.seed_order, RioService.seed_register, codec.seeded)
    PurgeSandbox = Change(codec.purge_order, RioService.purge_sandbox, codec.purged)

    # The change log: an internal caller without a sandbox (ROD) follows every sandbox.

    async def ListChanges(self, request: rio_pb2.ListChangesRequest, context: Context) -> rio_pb2.ListChangesResponse:
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        return codec.changes(await self.service.list_changes(caller, codec.changes_query(request)))

    async def StreamChanges(
        self, request: rio_pb2.StreamChangesRequest, context: Context
    ) -> AsyncIterator[rio_pb2.RioChange]:
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        after = codec.stream_after(request)
        with self.service.wakeup.confirming(caller) as follower:
            if follower is not None:
                yield rio_pb2.RioChange()  # registered: from now on every write waits until it was handed here
            async for entry in self.service.follow_changes(caller, after, follower):
                yield codec.change(entry)
