"""RioService over gRPC, a thin adapter: resolve the caller, decode (codec), run the use case (service), encode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message
from sqlmodel import Session

from services._gen.registry.v1 import common_pb2, rio_pb2, rio_pb2_grpc
from services.common.caller import Caller, CallerResolver
from services.common.idempotency import IdempotentRequest
from services.common.mutation import MutationPath
from services.rio import codec
from services.rio.service import RioService, Write

Request = TypeVar("Request", bound=Message)
Command = TypeVar("Command")
Result = TypeVar("Result")
Response = TypeVar("Response", bound=Message)
Row = TypeVar("Row")

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class RioServiceServicer(rio_pb2_grpc.RioServiceServicer):
    """The RIO register over gRPC: every change takes the one mutation path, every read one transaction."""

    def __init__(self, service: RioService, callers: CallerResolver, mutations: MutationPath) -> None:
        self._service = service
        self._callers = callers
        self._mutations = mutations

    async def _change(
        self,
        context: Context,
        method: str,
        request: Request,
        decode: Callable[[Request], Command],
        use_case: Callable[[Caller, Command, Write[Row, Response]], Awaitable[Response]],
        encode: Callable[[Row], Response],
        response_type: type[Response],
    ) -> Response:
        """A mutating call: its use case's work runs once per idempotency key, its answer encoded in the
        same transaction (the stored answer is what a retry gets)."""
        caller = await self._callers.resolve(context)
        codec.check_text(request)
        command = decode(request)

        def write(work: Callable[[Session], Row]) -> Awaitable[Response]:
            keyed: IdempotentRequest = request  # type: ignore[assignment]  # every mutating request has the key
            return self._mutations.run(
                caller=caller, method=method, request=keyed, response_type=response_type, work=lambda s: encode(work(s))
            )

        return await use_case(caller, command, write)

    async def _read(
        self,
        context: Context,
        request: Request,
        decode: Callable[[Request], Command],
        use_case: Callable[[Caller, Command], Awaitable[Result]],
        encode: Callable[[Result], Response],
    ) -> Response:
        caller = await self._callers.resolve(context)
        codec.check_text(request)
        return encode(await use_case(caller, decode(request)))

    # --- Boards ---

    async def CreateBoard(self, request: rio_pb2.CreateBoardRequest, context: Context) -> rio_pb2.Board:
        return await self._change(
            context, "CreateBoard", request, codec.new_board, self._service.create_board, codec.board, rio_pb2.Board
        )

    async def GetBoard(self, request: rio_pb2.GetBoardRequest, context: Context) -> rio_pb2.Board:
        return await self._read(context, request, codec.board_code, self._service.get_board, codec.board)

    async def ListBoards(self, request: rio_pb2.ListBoardsRequest, context: Context) -> rio_pb2.ListBoardsResponse:
        return await self._read(context, request, codec.boards_query, self._service.list_boards, codec.boards)

    # --- Providers ---

    async def CreateProvider(self, request: rio_pb2.CreateProviderRequest, context: Context) -> rio_pb2.Provider:
        return await self._change(
            context,
            "CreateProvider",
            request,
            codec.new_provider,
            self._service.create_provider,
            codec.provider,
            rio_pb2.Provider,
        )

    async def UpdateProvider(self, request: rio_pb2.UpdateProviderRequest, context: Context) -> rio_pb2.Provider:
        return await self._change(
            context,
            "UpdateProvider",
            request,
            codec.provider_version,
            self._service.update_provider,
            codec.provider,
            rio_pb2.Provider,
        )

    async def EndProvider(self, request: rio_pb2.EndRecordRequest, context: Context) -> rio_pb2.Provider:
        return await self._change(
            context,
            "EndProvider",
            request,
            codec.end_provider,
            self._service.end_provider,
            codec.provider,
            rio_pb2.Provider,
        )

    async def GetProvider(self, request: rio_pb2.GetRecordRequest, context: Context) -> rio_pb2.Provider:
        return await self._read(context, request, codec.provider_on, self._service.get_provider, codec.provider)

    async def ListProviders(
        self, request: rio_pb2.ListProvidersRequest, context: Context
    ) -> rio_pb2.ListProvidersResponse:
        return await self._read(context, request, codec.providers_query, self._service.list_providers, codec.providers)

    # --- Locations ---

    async def CreateLocation(self, request: rio_pb2.CreateLocationRequest, context: Context) -> rio_pb2.Location:
        return await self._change(
            context,
            "CreateLocation",
            request,
            codec.new_location,
            self._service.create_location,
            codec.location,
            rio_pb2.Location,
        )

    async def UpdateLocation(self, request: rio_pb2.UpdateLocationRequest, context: Context) -> rio_pb2.Location:
        return await self._change(
            context,
            "UpdateLocation",
            request,
            codec.location_version,
            self._service.update_location,
            codec.location,
            rio_pb2.Location,
        )

    async def EndLocation(self, request: rio_pb2.EndRecordRequest, context: Context) -> rio_pb2.Location:
        return await self._change(
            context,
            "EndLocation",
            request,
            codec.end_location,
            self._service.end_location,
            codec.location,
            rio_pb2.Location,
        )

    async def GetLocation(self, request: rio_pb2.GetRecordRequest, context: Context) -> rio_pb2.Location:
        return await self._read(context, request, codec.location_on, self._service.get_location, codec.location)

    async def ListLocations(
        self, request: rio_pb2.ListLocationsRequest, context: Context
    ) -> rio_pb2.ListLocationsResponse:
        return await self._read(context, request, codec.locations_query, self._service.list_locations, codec.locations)

    # --- Courses ---

    async def CreateCourse(self, request: rio_pb2.CreateCourseRequest, context: Context) -> rio_pb2.Course:
        return await self._change(
            context,
            "CreateCourse",
            request,
            codec.new_course,
            self._service.create_course,
            codec.course,
            rio_pb2.Course,
        )

    async def EndCourse(self, request: rio_pb2.EndRecordRequest, context: Context) -> rio_pb2.Course:
        return await self._change(
            context, "EndCourse", request, codec.end_course, self._service.end_course, codec.course, rio_pb2.Course
        )

    async def GetCourse(self, request: rio_pb2.GetRecordRequest, context: Context) -> rio_pb2.Course:
        return await self._read(context, request, codec.course_on, self._service.get_course, codec.course)

    async def ListCourses(self, request: rio_pb2.ListCoursesRequest, context: Context) -> rio_pb2.ListCoursesResponse:
        return await self._read(context, request, codec.courses_query, self._service.list_courses, codec.courses)

    # --- Course offerings ---

    async def CreateCourseOffering(
        self, request: rio_pb2.CreateCourseOfferingRequest, context: Context
    ) -> rio_pb2.CourseOffering:
        return await self._change(
            context,
            "CreateCourseOffering",
            request,
            codec.new_offering,
            self._service.create_offering,
            codec.offering,
            rio_pb2.CourseOffering,
        )

    async def EndCourseOffering(self, request: rio_pb2.EndRecordRequest, context: Context) -> rio_pb2.CourseOffering:
        return await self._change(
            context,
            "EndCourseOffering",
            request,
            codec.end_offering,
            self._service.end_offering,
            codec.offering,
            rio_pb2.CourseOffering,
        )

    async def GetCourseOffering(self, request: rio_pb2.GetRecordRequest, context: Context) -> rio_pb2.CourseOffering:
        return await self._read(context, request, codec.offering_on, self._service.get_offering, codec.offering)

    async def ListCourseOfferings(
        self, request: rio_pb2.ListCourseOfferingsRequest, context: Context
    ) -> rio_pb2.ListCourseOfferingsResponse:
        return await self._read(context, request, codec.offerings_query, self._service.list_offerings, codec.offerings)

    async def CheckOffering(
        self, request: rio_pb2.CheckOfferingRequest, context: Context
    ) -> rio_pb2.CheckOfferingResponse:
        return await self._read(
            context, request, codec.offering_question, self._service.check_offering, codec.offering_check
        )

    # --- Change log: an internal caller without a sandbox (ROD) follows every sandbox ---

    async def ListChanges(self, request: rio_pb2.ListChangesRequest, context: Context) -> rio_pb2.ListChangesResponse:
        caller = await self._callers.resolve(context, all_sandboxes_ok=True)
        return codec.changes(await self._service.list_changes(caller, codec.changes_query(request)))

    async def StreamChanges(
        self, request: rio_pb2.StreamChangesRequest, context: Context
    ) -> AsyncIterator[rio_pb2.RioChange]:
        caller = await self._callers.resolve(context, all_sandboxes_ok=True)
        async for entry in self._service.follow_changes(caller, codec.stream_after(request)):
            yield codec.change(entry)

    # --- Sandbox lifecycle (internal: SandboxAdmin seeds and purges) ---

    async def SeedRegister(
        self, request: common_pb2.SeedRegisterRequest, context: Context
    ) -> common_pb2.SeedRegisterResponse:
        return await self._change(
            context,
            "SeedRegister",
            request,
            codec.seed_order,
            self._service.seed_register,
            codec.seeded,
            common_pb2.SeedRegisterResponse,
        )

    async def PurgeSandbox(
        self, request: common_pb2.PurgeSandboxRequest, context: Context
    ) -> common_pb2.PurgeSandboxResponse:
        return await self._change(
            context,
            "PurgeSandbox",
            request,
            codec.purge_order,
            self._service.purge_sandbox,
            codec.purged,
            common_pb2.PurgeSandboxResponse,
        )
