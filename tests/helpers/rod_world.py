"""Test helpers for ROD: a school's view of the API, and the RIO/BRP facts a test needs, made through the contract."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services._gen.registry.v1 import (
    brp_pb2,
    brp_pb2_grpc,
    common_pb2,
    rio_pb2,
    rio_pb2_grpc,
    rod_pb2,
    rod_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
)
from services.bootstrap import RunningSandbox
from services.brp_sync import xml_codec
from services.brp_sync.rules import Gebeurtenis, gebeurtenis_named
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.dates import to_proto_date
from services.common.identifiers import a_nummer_for_bsn
from tests.conftest import SandboxHarness


@dataclass(frozen=True)
class Offering:
    """Where a pupil can be enrolled: a school (BRIN), one of its locations and a course it offers there."""

    institution_code: str
    location_code: str
    course_code: str
    offering_id: str = ""
    provider_code: str = ""
    sector: int = 0


def period(offering: Offering, begin: dt.date, end: dt.date | None = None) -> rod_pb2.EnrolmentPeriod:
    return rod_pb2.EnrolmentPeriod(
        begin_date=to_proto_date(begin),
        end_date=to_proto_date(end),
        location_code=offering.location_code,
        course_code=offering.course_code,
    )


def sector_fields(sector: int) -> dict[str, int]:
    """The fields a sector requires on RegisterEnrolment and ChangeEnrolment: mbo BOL voltijd, ho voltijd."""
    if sector == common_pb2.SECTOR_MBO:
        return {"mbo_leerweg": rod_pb2.MBO_LEERWEG_BOL, "mbo_intensity": rod_pb2.MBO_INTENSITY_VOLTIJD}
    if sector == common_pb2.SECTOR_HO:
        return {"ho_study_mode": rod_pb2.HO_STUDY_MODE_VOLTIJD}
    return {}


@dataclass
class School:
    """A school's administration package talking to ROD with its own x-institution-code."""

    channel: grpc.aio.Channel
    sandbox_key: str
    institution_code: str

    @property
    def rod(self) -> rod_pb2_grpc.RodServiceStub:
        return rod_pb2_grpc.RodServiceStub(self.channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((SANDBOX_KEY, self.sandbox_key), (INSTITUTION_CODE, self.institution_code))

    async def register(
        self,
        offering: Offering,
        begin: dt.date,
        *,
        bsn: str = "",
        onderwijsnummer: str = "",
        details: rod_pb2.PupilDetails | None = None,
        end: dt.date | None = None,
        key: str = "",
        document_id: str = "",
    ) -> rod_pb2.EnrolmentResponse:
        request = rod_pb2.RegisterEnrolmentRequest(
            idempotency_key=key,
            document_id=document_id or str(uuid.uuid4()),
            institution_code=self.institution_code,
            periods=[period(offering, begin, end)],
            sequence=1,
            **sector_fields(offering.sector),  # type: ignore[arg-type]
        )
        if bsn:
            request.pupil.bsn = bsn
        elif onderwijsnummer:
            request.pupil.onderwijsnummer = onderwijsnummer
        elif details is not None:
            request.pupil_details.CopyFrom(details)
        answer: rod_pb2.EnrolmentResponse = await self.rod.RegisterEnrolment(request, metadata=self.metadata)
        return answer


@dataclass
class FeedbackCollector:
    """Subscribes to a school's feedback stream in the background and collects what arrives."""

    school: School
    after_cursor: int = 0
    received: list[rod_pb2.Feedback] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> FeedbackCollector:
        call = self.school.rod.StreamFeedback(
            rod_pb2.StreamFeedbackRequest(after_cursor=self.after_cursor), metadata=self.school.metadata
        )
        self._task = asyncio.create_task(self._read(call))
        return self

    async def _read(self, call: AsyncIterator[rod_pb2.Feedback]) -> None:
        async for feedback in call:
            self.received.append(feedback)
            self._arrived.set()

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self._task

    async def until(self, predicate: object, within: float = 10.0) -> list[rod_pb2.Feedback]:
        """Waits until predicate(received) holds; returns received."""
        assert callable(predicate)
        deadline = asyncio.get_running_loop().time() + within
        while not predicate(self.received):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"feedback did not arrive in time; got {[f.cursor for f in self.received]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=min(remaining, 0.5))
        return self.received

    def for_enrolment(self, enrolment_id: str) -> list[rod_pb2.Feedback]:
        return [f for f in self.received if f.enrolment_id == enrolment_id]


# --- RIO and BRP facts, made through their public contract ---

_BRP_NS = xml_codec.NAMESPACE
_COURSES = {
    # sector: (course code, code system, level)
    common_pb2.SECTOR_PO: ("BAO", rio_pb2.COURSE_CODE_SYSTEM_PO, "PO-BAO"),
    common_pb2.SECTOR_VO: ("2101", rio_pb2.COURSE_CODE_SYSTEM_ILT, "VO-HAVO"),
    common_pb2.SECTOR_MBO: ("25180", rio_pb2.COURSE_CODE_SYSTEM_CREBO, "MBO-4"),
    common_pb2.SECTOR_HO: ("34479", rio_pb2.COURSE_CODE_SYSTEM_ISAT, "HBO-BA"),
}
_SINCE = dt.date(2020, 1, 1)


def mutation(bsn: str, sequence: int, event: str, effective: dt.date, changes: str, message_id: str = "") -> bytes:
    """One BRP change message (Mutatie) as the XSD shipped by BRP sync describes it.

    `event` is a kind (Gebeurtenis value, or a version 1 name such as "overleden"); a version 1 <Emigratie>
    in `changes` is written as version 2's <VerblijfBuitenland>, so older scenario code keeps working.
    """
    kind = gebeurtenis_named(event)
    subject = {Gebeurtenis.GEBOORTE: "geboorte", Gebeurtenis.IMMIGRATIE: "immigratie"}.get(kind)
    header = (
        f"<Gebeurtenis>{xml_codec.INGESCHREVEN}</Gebeurtenis><Onderwerp>{subject}</Onderwerp>"
        if subject
        else (f"<Gebeurtenis>{kind.value}</Gebeurtenis>")
    )
    version = 0 if kind is Gebeurtenis.GEBOORTE else sequence
    changes = changes.replace("Emigratie>", "VerblijfBuitenland>").replace("DatumVertrek>", "DatumAanvang>")
    return (
        f'<Mutatie xmlns="{_BRP_NS}"><BerichtId>{message_id or uuid.uuid4()}</BerichtId>'
        f"<Burgerservicenummer>{bsn}</Burgerservicenummer><Anummer>{a_nummer_for_bsn(bsn)}</Anummer>"
        f"<Versienummer>{version}</Versienummer><Volgnummer>{sequence}</Volgnummer>"
        f"<Gemeentecode>0363</Gemeentecode>{header}"
        f"<DatumIngang>{effective.isoformat()}</DatumIngang><Wijzigingen>{changes}</Wijzigingen></Mutatie>"
    ).encode()


class RealWorld:
    """Makes schools, offerings and persons in the sandbox's real RIO and BRP, as the sandbox admin."""

    def __init__(self, channel: grpc.aio.Channel, sandbox_key: str) -> None:
        self.metadata = ((SANDBOX_KEY, sandbox_key),)
        self.use_channel(channel)
        self._courses: set[int] = set()
        self._bsns: Iterator[str] | None = None
        self._board = ""

    def use_channel(self, channel: grpc.aio.Channel) -> None:
        """Talk over another channel (after the test restarted the server)."""
        self.rio = rio_pb2_grpc.RioServiceStub(channel)
        self.brp = brp_pb2_grpc.BrpServiceStub(channel)

    async def offering(self, sector: int) -> Offering:
        if not self._board:
            board = await self.rio.CreateBoard(
                rio_pb2.CreateBoardRequest(name="Stichting Testscholen", begin_date=to_proto_date(_SINCE)),
                metadata=self.metadata,
            )
            self._board = board.board_code
        code, system, level = _COURSES[sector]
        if sector not in self._courses:
            with contextlib.suppress(grpc.aio.AioRpcError):  # the catalogue may already hold it (seeded)
                await self.rio.CreateCourse(
                    rio_pb2.CreateCourseRequest(
                        course_code=code,
                        code_system=system,
                        sector=sector,  # type: ignore[arg-type]
                        name=f"course {code}",
                        level=level,
                        begin_date=to_proto_date(_SINCE),
                    ),
                    metadata=self.metadata,
                )
            self._courses.add(sector)
        provider = await self.rio.CreateProvider(
            rio_pb2.CreateProviderRequest(
                board_code=self._board,
                name="School",
                sector=sector,
                begin_date=to_proto_date(_SINCE),  # type: ignore[arg-type]
            ),
            metadata=self.metadata,
        )
        location = await self.rio.CreateLocation(
            rio_pb2.CreateLocationRequest(
                board_code=self._board,
                name="Hoofdgebouw",
                address=common_pb2.Address(
                    street="Schoolstraat",
                    house_number=1,
                    postcode="1012AB",
                    city="Amsterdam",
                    municipality_code="0363",
                    country_code="NL",
                ),
                begin_date=to_proto_date(_SINCE),
            ),
            metadata=self.metadata,
        )
        offered = await self.rio.CreateCourseOffering(
            rio_pb2.CreateCourseOfferingRequest(
                provider_code=provider.provider_code,
                course_code=code,
                location_code=location.location_code,
                begin_date=to_proto_date(_SINCE),
            ),
            metadata=self.metadata,
        )
        return Offering(
            provider.institution_code, location.location_code, code, offered.offering_id, provider.provider_code, sector
        )

    async def _submit(self, document: bytes) -> None:
        answer = await self.brp.SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=document), metadata=self.metadata
        )
        outcomes = [r.outcome for r in answer.results]
        assert outcomes == [brp_pb2.MESSAGE_OUTCOME_APPLIED], answer

    async def person(self, birth_date: dt.date) -> str:
        """A newborn (ingeschreven.geboorte) with this birth date and a free test BSN."""
        if self._bsns is None:
            from services.common.identifiers import test_bsns

            self._bsns = iter(list(test_bsns())[::-1])  # from the top of the range: seeded persons use the bottom
        while True:
            bsn = next(self._bsns)
            try:
                await self.brp.GetPerson(brp_pb2.GetPersonRequest(bsn=bsn), metadata=self.metadata)
            except grpc.aio.AioRpcError:
                break
        persoon = (
            f"<Persoon><Voornamen>Sam</Voornamen><Geslachtsnaam>Jansen</Geslachtsnaam>"
            f"<Geboortedatum>{birth_date.isoformat()}</Geboortedatum><Geslacht>O</Geslacht></Persoon>"
        )
        address = (
            "<Verblijfplaats><Straatnaam>Dorpsstraat</Straatnaam><Huisnummer>3</Huisnummer>"
            "<Postcode>1012AB</Postcode><Woonplaats>Amsterdam</Woonplaats><Gemeentecode>0363</Gemeentecode>"
            "</Verblijfplaats>"
        )
        await self._submit(mutation(bsn, 1, Gebeurtenis.GEBOORTE, birth_date, persoon + address))
        return bsn

    async def _next_sequence(self, bsn: str) -> int:
        person = await self.brp.GetPerson(brp_pb2.GetPersonRequest(bsn=bsn), metadata=self.metadata)
        return int(person.last_sequence) + 1

    async def die(self, bsn: str, on: dt.date) -> str:
        """Submits the person's death; returns the BRP message id (the cause of the feedback it brings)."""
        changes = f"<Overlijden><Datum>{on.isoformat()}</Datum></Overlijden>"
        message_id = str(uuid.uuid4())
        sequence = await self._next_sequence(bsn)
        await self._submit(mutation(bsn, sequence, Gebeurtenis.OVERLEDEN, on, changes, message_id))
        return message_id

    async def emigrate(self, bsn: str, on: dt.date) -> None:
        changes = (
            f"<VerblijfBuitenland><Land>5010</Land><DatumAanvang>{on.isoformat()}</DatumAanvang></VerblijfBuitenland>"
        )
        await self._submit(mutation(bsn, await self._next_sequence(bsn), Gebeurtenis.EMIGRATIE, on, changes))

    async def come_back(self, bsn: str, on: dt.date) -> None:
        """A returning emigrant settles in the Netherlands again (ingeschreven, subject immigratie)."""
        address = (
            "<Verblijfplaats><Straatnaam>Dorpsstraat</Straatnaam><Huisnummer>5</Huisnummer>"
            "<Postcode>1012AB</Postcode><Woonplaats>Amsterdam</Woonplaats><Gemeentecode>0363</Gemeentecode>"
            "</Verblijfplaats>"
        )
        await self._submit(mutation(bsn, await self._next_sequence(bsn), Gebeurtenis.IMMIGRATIE, on, address))

    async def move_within(self, bsn: str, on: dt.date) -> None:
        """A move within Amsterdam (0363), where person() registers everyone."""
        address = (
            "<Verblijfplaats><Straatnaam>Kerkstraat</Straatnaam><Huisnummer>9</Huisnummer><Postcode>1012AB</Postcode>"
            "<Woonplaats>Amsterdam</Woonplaats><Gemeentecode>0363</Gemeentecode></Verblijfplaats>"
        )
        await self._submit(mutation(bsn, await self._next_sequence(bsn), Gebeurtenis.VERHUISD_BINNEN, on, address))

    async def withdraw_death(self, bsn: str, on: dt.date) -> None:
        """The registered death was wrong (overlijden-gecorrigeerd without Overlijden): the person lives."""
        await self._submit(mutation(bsn, await self._next_sequence(bsn), Gebeurtenis.OVERLIJDEN_GECORRIGEERD, on, ""))

    async def correct_birth_date(self, bsn: str, birth_date: dt.date) -> None:
        changes = f"<Persoon><Geboortedatum>{birth_date.isoformat()}</Geboortedatum></Persoon>"
        sequence = await self._next_sequence(bsn)
        await self._submit(mutation(bsn, sequence, Gebeurtenis.GECORRIGEERD, birth_date, changes))

    async def end_offering(self, offering: Offering, on: dt.date) -> None:
        await self.rio.EndCourseOffering(
            rio_pb2.EndRecordRequest(code=offering.offering_id, end_date=to_proto_date(on)), metadata=self.metadata
        )

    async def end_location(self, offering: Offering, on: dt.date) -> None:
        await self.rio.EndLocation(
            rio_pb2.EndRecordRequest(code=offering.location_code, end_date=to_proto_date(on)), metadata=self.metadata
        )

    async def end_provider(self, offering: Offering, on: dt.date) -> None:
        await self.rio.EndProvider(
            rio_pb2.EndRecordRequest(code=offering.provider_code, end_date=to_proto_date(on)), metadata=self.metadata
        )


@dataclass
class Rod:
    """An in-process sandbox with every register, seen by the test as the sandbox admin and as schools."""

    running: RunningSandbox
    channel: grpc.aio.Channel
    sandbox_key: str
    sandbox_id: str
    world: RealWorld

    def school(self, offering: Offering) -> School:
        return School(self.channel, self.sandbox_key, offering.institution_code)

    @property
    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((SANDBOX_KEY, self.sandbox_key),)

    async def set_clock(self, moment: dt.datetime) -> None:
        stamp = Timestamp()
        stamp.FromDatetime(moment)
        await sandbox_pb2_grpc.SandboxAdminStub(self.channel).SetClock(
            sandbox_pb2.SetClockRequest(freeze_at=stamp), metadata=self.admin_metadata
        )


async def rod_in(sandbox: SandboxHarness, clock: dt.datetime) -> Rod:
    """The `sandbox` fixture (real RIO, BRP and ROD on SQLite or PostgreSQL) as a Rod, its clock set."""
    rod = Rod(
        sandbox.running,
        sandbox.channel,
        sandbox.sandbox_key,
        sandbox.sandbox_id,
        RealWorld(sandbox.channel, sandbox.sandbox_key),
    )
    await rod.set_clock(clock)
    return rod
