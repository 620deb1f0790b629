"""ROD push latency: from a committed enrolment (the RPC answer) to its feedback arriving on a subscribed stream.

    python -m benchmarks rod                       # 1,000 enrolments, SQLite in a temporary folder
    REGISTRY_BENCH_DATABASE_URL=postgresql://... python -m benchmarks rod

Starts every service in this process (the embedded mode) on a free port, makes
one school with one offering in RIO and 1,000 newborn-aged persons in BRP
(one batch of ingeschreven.geboorte messages), subscribes to the school's
feedback, then registers the enrolments one after another and matches each
answer's feedback_cursor with the stream. Prints p50/p90/p99/max (hdrhistogram).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hdrh.histogram import HdrHistogram

from benchmarks.backend import bench_database
from benchmarks.results import record
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
from services.bootstrap import ALL_SERVICES, build
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.dates import to_proto_date
from services.common.identifiers import a_nummer_for_bsn, test_bsns
from services.common.settings import Settings

ENROLMENTS = int(os.environ.get("REGISTRY_BENCH_ENROLMENTS", "1000"))
SINCE = dt.date(2020, 1, 1)
START = dt.date(2027, 8, 15)
BRP_NS = "urn:registry-sandbox:brp:mutatie:v2"


def births(bsns: list[str]) -> bytes:
    """One MutatieBericht with a birth (nl.brp.ingeschreven, geboorte) per BSN (pupils aged 13 on the start date)."""
    born = dt.date(2014, 3, 1)
    messages = "".join(
        f"<Mutatie><BerichtId>{uuid.uuid4()}</BerichtId><Burgerservicenummer>{bsn}</Burgerservicenummer>"
        f"<Anummer>{a_nummer_for_bsn(bsn)}</Anummer><Versienummer>0</Versienummer>"
        f"<Volgnummer>1</Volgnummer><Gemeentecode>0363</Gemeentecode><Gebeurtenis>nl.brp.ingeschreven</Gebeurtenis>"
        f"<Onderwerp>geboorte</Onderwerp>"
        f"<DatumIngang>{born}</DatumIngang><Wijzigingen><Persoon><Voornamen>Kim</Voornamen>"
        f"<Geslachtsnaam>Bakker</Geslachtsnaam><Geboortedatum>{born}</Geboortedatum><Geslacht>O</Geslacht></Persoon>"
        f"<Verblijfplaats><Straatnaam>Kerkstraat</Straatnaam><Huisnummer>1</Huisnummer><Postcode>1012AB</Postcode>"
        f"<Woonplaats>Amsterdam</Woonplaats><Gemeentecode>0363</Gemeentecode></Verblijfplaats></Wijzigingen></Mutatie>"
        for bsn in bsns
    )
    return f'<MutatieBericht xmlns="{BRP_NS}">{messages}</MutatieBericht>'.encode()


async def prepare(channel: grpc.aio.Channel) -> tuple[str, str, str, str, list[str]]:
    """A sandbox (clock on 1 Sep 2027), one vo school with an offering, and ENROLMENTS persons."""
    admin = sandbox_pb2_grpc.SandboxAdminStub(channel)
    created = await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="bench"))
    md = ((SANDBOX_KEY, created.sandbox_key),)
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime(2027, 9, 1, 9, tzinfo=dt.UTC))
    await admin.SetClock(sandbox_pb2.SetClockRequest(freeze_at=stamp), metadata=md)
    rio = rio_pb2_grpc.RioServiceStub(channel)
    since = to_proto_date(SINCE)
    board = await rio.CreateBoard(rio_pb2.CreateBoardRequest(name="Bench", begin_date=since), metadata=md)
    await rio.CreateCourse(
        rio_pb2.CreateCourseRequest(
            course_code="2101",
            code_system=rio_pb2.COURSE_CODE_SYSTEM_ILT,
            sector=common_pb2.SECTOR_VO,
            name="havo",
            level="VO-HAVO",
            begin_date=since,
        ),
        metadata=md,
    )
    provider = await rio.CreateProvider(
        rio_pb2.CreateProviderRequest(
            board_code=board.board_code, name="Bench College", sector=common_pb2.SECTOR_VO, begin_date=since
        ),
        metadata=md,
    )
    address = common_pb2.Address(
        street="Schoolstraat", house_number=1, postcode="1012AB", city="Amsterdam", municipality_code="0363"
    )
    location = await rio.CreateLocation(
        rio_pb2.CreateLocationRequest(board_code=board.board_code, name="Main", address=address, begin_date=since),
        metadata=md,
    )
    await rio.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=provider.provider_code,
            course_code="2101",
            location_code=location.location_code,
            begin_date=since,
        ),
        metadata=md,
    )
    bsns = list(test_bsns())[-ENROLMENTS:]
    brp = brp_pb2_grpc.BrpServiceStub(channel)
    await brp.SubmitChanges(brp_pb2.SubmitChangesRequest(xml_document=births(bsns)), metadata=md)
    return created.sandbox_key, provider.institution_code, location.location_code, "2101", bsns


async def measure(database_url: str, backend: str) -> None:
    settings = Settings(database_url=database_url, port=0, stream_poll_seconds=1.0)
    running = build(ALL_SERVICES, settings)
    await running.server.start()
    channel = grpc.aio.insecure_channel(running.server.address)
    try:
        key, school, location, course, bsns = await prepare(channel)
        md = ((SANDBOX_KEY, key), (INSTITUTION_CODE, school))
        rod = rod_pb2_grpc.RodServiceStub(channel)
        arrived: dict[int, float] = {}
        wanted: dict[int, asyncio.Event] = {}

        async def subscribe() -> None:
            async for feedback in rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=md):
                arrived[feedback.cursor] = time.perf_counter()
                if feedback.cursor in wanted:
                    wanted[feedback.cursor].set()

        reader = asyncio.create_task(subscribe())
        await asyncio.sleep(0.2)
        push = HdrHistogram(1, 60_000_000, 3)  # microseconds
        answer_times = HdrHistogram(1, 60_000_000, 3)
        early = 0
        started = time.perf_counter()
        for bsn in bsns:
            sent = time.perf_counter()
            answer = await rod.RegisterEnrolment(
                rod_pb2.RegisterEnrolmentRequest(
                    document_id=str(uuid.uuid4()),
                    pupil=rod_pb2.PupilId(bsn=bsn),
                    institution_code=school,
                    periods=[
                        rod_pb2.EnrolmentPeriod(
                            begin_date=to_proto_date(START), location_code=location, course_code=course
                        )
                    ],
                    sequence=1,
                ),
                metadata=md,
            )
            answered = time.perf_counter()
            cursor = answer.feedback_cursor
            if cursor not in arrived:
                wanted[cursor] = asyncio.Event()
                if cursor not in arrived:
                    await asyncio.wait_for(wanted[cursor].wait(), timeout=30)
            delta = arrived[cursor] - answered
            if delta < 0:
                early += 1  # the stream delivered before the answer reached the client
            push.record_value(max(1, int(delta * 1_000_000)))
            answer_times.record_value(max(1, int((answered - sent) * 1_000_000)))
        elapsed = time.perf_counter() - started
        reader.cancel()
        print(f"ROD push latency over {len(bsns)} enrolments, {backend}, embedded mode, one client, sequential")
        for name, histogram in (("answer -> feedback on stream", push), ("RegisterEnrolment round trip", answer_times)):
            p50, p90, p99 = (histogram.get_value_at_percentile(p) / 1000 for p in (50, 90, 99))
            print(
                f"  {name:30s} p50 {p50:7.2f} ms  p90 {p90:7.2f} ms  p99 {p99:7.2f} ms  "
                f"max {histogram.get_max_value() / 1000:7.2f} ms"
            )
        print(f"  feedback before the answer: {early}; throughput {len(bsns) / elapsed:.0f} enrolments/s")
        record(
            "ROD enrolments/s, one client, sequential",
            len(bsns) / elapsed,
            "enrolments/s",
            backend=backend,
            limit="limit: grpc.aio unary calls/s, 1 concurrent",
        )
        record("ROD answer -> feedback on stream, p99", push.get_value_at_percentile(99) / 1000, "ms", backend=backend)
    finally:
        await channel.close()
        await running.server.stop(0.5)
        await running.peers.close()
        running.database.engine.dispose()


def main() -> None:
    with bench_database("rod") as (database_url, backend):
        asyncio.run(measure(database_url, backend))


if __name__ == "__main__":
    main()
