"""TEMPORARY while RIO and BRP are being built: a fake RIO and BRP on a real gRPC port."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import grpc

from common.dates import to_proto_date
from registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, rio_pb2, rio_pb2_grpc
from tests.integration.rod_world import Offering

SECTOR_COURSES = {
    common_pb2.SECTOR_PO: "BAO",
    common_pb2.SECTOR_VO: "2101",
    common_pb2.SECTOR_MBO: "25180",
    common_pb2.SECTOR_HO: "34479",
}


class FakeRio(rio_pb2_grpc.RioServiceServicer):
    def __init__(self) -> None:
        self.offerings: dict[tuple[str, str, str], tuple[str, int, dt.date | None]] = {}
        self.changes: list[rio_pb2.RioChange] = []
        self.event = asyncio.Event()

    async def CheckOffering(
        self, request: rio_pb2.CheckOfferingRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.CheckOfferingResponse:
        found = self.offerings.get((request.institution_code, request.course_code, request.location_code))
        if found is None:
            return rio_pb2.CheckOfferingResponse(offered=False, reason_code="A01060", reason="location does not exist")
        offering_id, sector, end = found
        validity = common_pb2.ValidityPeriod(begin_date=to_proto_date(dt.date(2020, 1, 1)), end_date=to_proto_date(end))
        return rio_pb2.CheckOfferingResponse(
            offered=True,
            offering=rio_pb2.CourseOffering(offering_id=offering_id, validity=validity),
            provider=rio_pb2.Provider(sector=sector),  # type: ignore[arg-type]
        )

    async def StreamChanges(
        self, request: rio_pb2.StreamChangesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rio_pb2.RioChange]:
        index = request.after_cursor
        while True:
            while index < len(self.changes):
                yield self.changes[index]
                index += 1
            self.event = asyncio.Event()
            await self.event.wait()


class FakeBrp(brp_pb2_grpc.BrpServiceServicer):
    def __init__(self) -> None:
        self.persons: dict[str, brp_pb2.Person] = {}
        self.changes: list[brp_pb2.PersonChange] = []
        self.event = asyncio.Event()

    async def GetPerson(self, request: brp_pb2.GetPersonRequest, context: grpc.aio.ServicerContext) -> brp_pb2.Person:
        person = self.persons.get(request.bsn)
        if person is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown person")
        assert person is not None
        return person

    async def StreamPersonChanges(
        self, request: brp_pb2.StreamPersonChangesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[brp_pb2.PersonChange]:
        index = request.after_cursor
        while True:
            while index < len(self.changes):
                yield self.changes[index]
                index += 1
            self.event = asyncio.Event()
            await self.event.wait()


class FakeWorld:
    """Makes offerings and persons, and changes them, in the fake RIO and BRP."""

    def __init__(self, sandbox_id: str, rio: FakeRio, brp: FakeBrp) -> None:
        self.sandbox_id = sandbox_id
        self.rio = rio
        self.brp = brp
        self._bsns = iter(_test_bsns())
        self._schools = iter(f"{n:02d}{a}{b}" for n in range(10, 99) for a in "ABCD" for b in "KLMN")

    async def offering(self, sector: int) -> Offering:
        school = next(self._schools)
        offering = Offering(school, "100X001", SECTOR_COURSES[sector], str(uuid.uuid4()))
        self.rio.offerings[(school, offering.course_code, offering.location_code)] = (
            offering.offering_id,
            sector,
            None,
        )
        return offering

    async def person(self, birth_date: dt.date) -> str:
        bsn = next(self._bsns)
        self.brp.persons[bsn] = brp_pb2.Person(bsn=bsn, birth_date=to_proto_date(birth_date), last_sequence=1)
        return bsn

    def _change(self, bsn: str, **dates: dt.date) -> None:
        person = self.brp.persons[bsn]
        for name, value in dates.items():
            getattr(person, name).CopyFrom(to_proto_date(value))
        person.last_sequence += 1
        self.brp.changes.append(
            brp_pb2.PersonChange(
                cursor=len(self.brp.changes) + 1,
                sandbox_id=self.sandbox_id,
                bsn=bsn,
                sequence=person.last_sequence,
                person=person,
            )
        )
        self.brp.event.set()

    async def die(self, bsn: str, on: dt.date) -> None:
        self._change(bsn, death_date=on)

    async def emigrate(self, bsn: str, on: dt.date) -> None:
        self._change(bsn, emigration_date=on)

    async def end_offering(self, offering: Offering, on: dt.date) -> None:
        key = (offering.institution_code, offering.course_code, offering.location_code)
        offering_id, sector, _ = self.rio.offerings[key]
        self.rio.offerings[key] = (offering_id, sector, on)
        validity = common_pb2.ValidityPeriod(begin_date=to_proto_date(dt.date(2020, 1, 1)), end_date=to_proto_date(on))
        self.rio.changes.append(
            rio_pb2.RioChange(
                cursor=len(self.rio.changes) + 1,
                sandbox_id=self.sandbox_id,
                record_kind=rio_pb2.RIO_RECORD_KIND_COURSE_OFFERING,
                change_kind=rio_pb2.RIO_CHANGE_KIND_ENDED,
                code=offering_id,
                course_offering=rio_pb2.CourseOffering(offering_id=offering_id, validity=validity),
            )
        )
        self.rio.event.set()


def _test_bsns() -> list[str]:
    from common.identifiers import test_bsns

    return list(test_bsns())


async def start_fakes() -> tuple[grpc.aio.Server, str, FakeRio, FakeBrp]:
    server = grpc.aio.server()
    rio, brp = FakeRio(), FakeBrp()
    rio_pb2_grpc.add_RioServiceServicer_to_server(rio, server)
    brp_pb2_grpc.add_BrpServiceServicer_to_server(brp, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}", rio, brp
