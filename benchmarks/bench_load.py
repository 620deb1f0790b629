"""ROD under load: server CPU per enrolment at N held, closed and open model, listening streams, idle CPU.

    python -m benchmarks load
    REGISTRY_BENCH_HELD=0,100000,1300000 python -m benchmarks load      # the issue's three sizes (slow to fill)
    REGISTRY_BENCH_DATABASE_URL=postgresql://... python -m benchmarks load

The server (every register, embedded mode) runs in a child process
(benchmarks.serve) so its CPU time is read alone from /proc; the clients run
here over real gRPC. One sandbox, its clock on 1 Sep 2027, REGISTRY_BENCH_SCHOOLS
vo schools (default 10) each with an offering, and persons born by BRP
messages (synthetic 11-proof BSNs outside the test range, by choice: the test
range holds only about 2,700). Every school has a StreamFeedback subscriber.

Phases, each recorded with `benchmarks.results.record`:
1. For each held size: held enrolments are written straight into ROD's tables
   (pupils, enrolments, periods, decisions, documents, feedback rows), then
   REGISTRY_BENCH_CLOSED (default 2,000) enrolments are registered by 32
   concurrent clients (closed model); server CPU ms per enrolment and
   enrolments/s, all feedback delivered.
2. Open model: REGISTRY_BENCH_OPEN_RATE enrolments/s (default 500) for
   REGISTRY_BENCH_OPEN_SECONDS (default 4) at the intended send times; latency from
   the intended send to the feedback at the school's stream (p50/p99).
3. REGISTRY_BENCH_STREAMS (default 2,000) extra listening streams, one per school
   of the `full` seed (at most its 7,465 providers; streams need schools RIO
   knows): the server's idle CPU over 10 s as % of a core, then the fan-out p99
   (intended send to feedback at the stream) at REGISTRY_BENCH_FANOUT_RATE/s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hdrh.histogram import HdrHistogram
from sqlalchemy import func, insert, select

from benchmarks.backend import bench_database
from benchmarks.bench_rod import BRP_NS, births
from benchmarks.results import record
from benchmarks.serve import ServerProcess
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
from services.brp_sync.rules import gebeurtenis_named
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.database import make_engine
from services.common.dates import to_proto_date
from services.common.identifiers import a_nummer_for_bsn, random_bsn
from services.rod.tables import (
    RodDocument,
    RodEnrolment,
    RodEnrolmentPeriod,
    RodFeedback,
    RodFundingDecision,
    RodPupil,
)
from services.sandbox.tables import SandboxRecord

HELD = [int(n) for n in os.environ.get("REGISTRY_BENCH_HELD", "0,100000").split(",") if n.strip()]
SCHOOLS = int(os.environ.get("REGISTRY_BENCH_SCHOOLS", "10"))
CLOSED = int(os.environ.get("REGISTRY_BENCH_CLOSED", "2000"))
CONCURRENCY = int(os.environ.get("REGISTRY_BENCH_CONCURRENCY", "32"))
OPEN_RATE = float(os.environ.get("REGISTRY_BENCH_OPEN_RATE", "500"))
OPEN_SECONDS = float(os.environ.get("REGISTRY_BENCH_OPEN_SECONDS", "4"))
# A file to write py-spy's collapsed stacks of the server during the closed-model runs to (empty: no profile).
PROFILE = os.environ.get("REGISTRY_BENCH_PROFILE", "")
STREAMS = int(os.environ.get("REGISTRY_BENCH_STREAMS", "2000"))
# BRP deaths of pupils enrolled in the closed-model runs, to time re-evaluation.
BRP_BURST = int(os.environ.get("REGISTRY_BENCH_BRP_BURST", "2000"))
# The 100/s; set it below the saturation rate to see the fan-out's own latency, not a queue of calls.
FANOUT_RATE = float(os.environ.get("REGISTRY_BENCH_FANOUT_RATE", "100"))
FANOUT_SECONDS = 5.0
IDLE_SECONDS = 10.0
SINCE = dt.date(2020, 1, 1)
START = dt.date(2027, 8, 15)
BORN = dt.date(2014, 3, 1)  # as benchmarks.bench_rod.births
DIED = gebeurtenis_named("overleden").value
COURSE = "2101"


@dataclass
class Setup:
    key: str
    sandbox_id: str
    schools: list[str]
    location: str
    persons: list[str]


@dataclass
class Arrivals:
    """When each feedback cursor reached a school's stream."""

    at: dict[int, float] = field(default_factory=dict)
    waiting: dict[int, asyncio.Future[float]] = field(default_factory=dict)
    # Arrival times of feedback a BRP change caused.
    brp: list[float] = field(default_factory=list)

    def arrived(self, cursor: int, trigger: int = 0) -> None:
        now = time.perf_counter()
        self.at[cursor] = now
        if trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE:
            self.brp.append(now)
        future = self.waiting.pop(cursor, None)
        if future is not None and not future.done():
            future.set_result(now)

    async def when(self, cursor: int) -> float:
        if cursor in self.at:
            return self.at[cursor]
        future = self.waiting.setdefault(cursor, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), 60)


def synthetic_bsns(count: int) -> list[str]:
    rng = random.Random(20260101)
    found: dict[str, None] = {}
    while len(found) < count:
        bsn = random_bsn(rng)
        if not bsn.startswith("99999"):
            found[bsn] = None
    return list(found)


async def vo_schools(
    channel: grpc.aio.Channel, md: tuple[tuple[str, str], ...], count: int, name: str
) -> tuple[list[str], str]:
    """`count` vo schools of one new board offering COURSE at one shared location: their codes, the location's."""
    rio = rio_pb2_grpc.RioServiceStub(channel)
    since = to_proto_date(SINCE)
    board = await rio.CreateBoard(rio_pb2.CreateBoardRequest(name=name, begin_date=since), metadata=md)
    await rio.CreateCourse(
        rio_pb2.CreateCourseRequest(
            course_code=COURSE,
            code_system=rio_pb2.COURSE_CODE_SYSTEM_ILT,
            sector=common_pb2.SECTOR_VO,
            name="havo",
            level="VO-HAVO",
            begin_date=since,
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
    schools = []
    for number in range(count):
        provider = await rio.CreateProvider(
            rio_pb2.CreateProviderRequest(
                board_code=board.board_code, name=f"{name} {number}", sector=common_pb2.SECTOR_VO, begin_date=since
            ),
            metadata=md,
        )
        await rio.CreateCourseOffering(
            rio_pb2.CreateCourseOfferingRequest(
                provider_code=provider.provider_code,
                course_code=COURSE,
                location_code=location.location_code,
                begin_date=since,
            ),
            metadata=md,
        )
        schools.append(provider.institution_code)
    return schools, location.location_code


async def prepare(channel: grpc.aio.Channel, database_url: str, persons: int, *, national: bool = True) -> Setup:
    """The benchmark's sandbox; `national` also seeds the `full` register when listening streams are asked for."""
    admin = sandbox_pb2_grpc.SandboxAdminStub(channel)
    created = await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="bench-load"))
    md = ((SANDBOX_KEY, created.sandbox_key),)
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime(2027, 9, 1, 9, tzinfo=dt.UTC))
    await admin.SetClock(sandbox_pb2.SetClockRequest(freeze_at=stamp), metadata=md)
    if STREAMS and national:
        # The national register's schools, so the many listening streams belong to schools RIO knows.
        await admin.SeedSandbox(
            sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_FULL), metadata=md, timeout=600
        )
    schools, location_code = await vo_schools(channel, md, SCHOOLS, "Bench")
    bsns = synthetic_bsns(persons)
    brp = brp_pb2_grpc.BrpServiceStub(channel)
    for at in range(0, len(bsns), 1000):
        await brp.SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=births(bsns[at : at + 1000])), metadata=md, timeout=120
        )
    engine = make_engine(database_url)
    with engine.connect() as connection:
        sandbox_id = connection.execute(
            select(SandboxRecord.__table__.c.sandbox_id).where(  # type: ignore[attr-defined]
                SandboxRecord.__table__.c.name == "bench-load"  # type: ignore[attr-defined]
            )
        ).scalar_one()
    engine.dispose()
    return Setup(created.sandbox_key, sandbox_id, schools, location_code, bsns)


def fill_held(database_url: str, setup: Setup, start: int, stop: int) -> None:
    """Writes held enrolments start..stop-1 straight into ROD's tables, as registrations would have left them."""
    engine = make_engine(database_url)
    now = dt.datetime.now(dt.UTC)
    batch = 20_000
    with engine.begin() as connection:
        order = connection.execute(
            select(func.max(RodEnrolment.__table__.c.registered_order))  # type: ignore[attr-defined]
        ).scalar()
        order = int(order or 0)
    for at in range(start, stop, batch):
        numbers = range(at, min(stop, at + batch))
        pupils, enrolments, periods, decisions, documents, feedback = [], [], [], [], [], []
        for n in numbers:
            pupil, enrolment_id, school = f"H{n:08d}", str(uuid.UUID(int=n + 1)), setup.schools[n % len(setup.schools)]
            order += 1
            pupils.append({"sandbox_id": setup.sandbox_id, "pupil_number": pupil, "has_bsn": True, "birth_date": BORN})
            enrolments.append(
                {
                    "enrolment_id": enrolment_id,
                    "sandbox_id": setup.sandbox_id,
                    "pupil_number": pupil,
                    "institution_code": school,
                    "sector": "VO",
                    "sequence": 1,
                    "status": "ACTIVE",
                    "registered_order": order,
                    "registered_at": now,
                    "updated_at": now,
                    "signals_json": "[]",
                }
            )
            periods.append(
                {
                    "sandbox_id": setup.sandbox_id,
                    "enrolment_id": enrolment_id,
                    "position": 0,
                    "begin_date": START,
                    "location_code": setup.location,
                    "course_code": COURSE,
                    "year": 0,
                    "offering_id": "",
                }
            )
            decisions.append(
                {
                    "enrolment_id": enrolment_id,
                    "count_date": dt.date(2027, 10, 1),
                    "sandbox_id": setup.sandbox_id,
                    "institution_code": school,
                    "funded": True,
                    "final": False,
                    "reason_codes": "",
                    "reason": "funded",
                }
            )
            documents.append(
                {
                    "sandbox_id": setup.sandbox_id,
                    "document_id": str(uuid.UUID(int=(1 << 64) + n)),
                    "enrolment_id": enrolment_id,
                    "received_at": now,
                }
            )
            feedback.append(
                {
                    "sandbox_id": setup.sandbox_id,
                    "institution_code": school,
                    "enrolment_id": enrolment_id,
                    "cause_id": "held",
                    "trigger": 1,
                    "committed_at": now,
                    "message": rod_pb2.Feedback(institution_code=school).SerializeToString(),
                }
            )
        with engine.begin() as connection:
            for table, rows in (
                (RodPupil, pupils),
                (RodEnrolment, enrolments),
                (RodEnrolmentPeriod, periods),
                (RodFundingDecision, decisions),
                (RodDocument, documents),
                (RodFeedback, feedback),
            ):
                connection.execute(insert(table.__table__), rows)  # type: ignore[union-attr]
    engine.dispose()


async def seeded_schools(channel: grpc.aio.Channel, setup: Setup, count: int) -> list[str]:
    """Institution codes of up to `count` schools of the seed (not the benchmark's own)."""
    rio = rio_pb2_grpc.RioServiceStub(channel)
    codes: list[str] = []
    token = ""
    while len(codes) < count:
        page = await rio.ListProviders(
            rio_pb2.ListProvidersRequest(page=common_pb2.PageRequest(page_size=500, page_token=token)),
            metadata=((SANDBOX_KEY, setup.key),),
        )
        codes += [p.institution_code for p in page.providers if p.institution_code not in setup.schools]
        token = page.page.next_page_token
        if not token:
            break
    return sorted(set(codes))[:count]


def newest_cursor(database_url: str) -> int:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        newest = connection.execute(select(func.max(RodFeedback.__table__.c.cursor))).scalar()  # type: ignore[attr-defined]
    engine.dispose()
    return int(newest or 0)


def deaths(bsns: Sequence[str]) -> bytes:
    """One MutatieBericht with an overleden message (sequence 2) per BSN."""
    died = dt.date(2027, 9, 20)
    messages = "".join(
        f"<Mutatie><BerichtId>{uuid.uuid4()}</BerichtId><Burgerservicenummer>{bsn}</Burgerservicenummer>"
        f"<Anummer>{a_nummer_for_bsn(bsn)}</Anummer><Versienummer>2</Versienummer>"
        f"<Volgnummer>2</Volgnummer><Gemeentecode>0363</Gemeentecode><Gebeurtenis>{DIED}</Gebeurtenis>"
        f"<DatumIngang>{died}</DatumIngang><Wijzigingen><Overlijden><Datum>{died}</Datum></Overlijden>"
        f"</Wijzigingen></Mutatie>"
        for bsn in bsns
    )
    return f'<MutatieBericht xmlns="{BRP_NS}">{messages}</MutatieBericht>'.encode()


async def brp_burst(
    channel: grpc.aio.Channel, setup: Setup, enrolled: Sequence[str], arrivals: Arrivals
) -> tuple[float, float]:
    """Deaths of enrolled pupils, 1,000 a document: (s to ingest, s until the last feedback reached a school)."""
    brp = brp_pb2_grpc.BrpServiceStub(channel)
    arrivals.brp.clear()
    started = time.perf_counter()
    for at in range(0, len(enrolled), 1000):
        await brp.SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=deaths(enrolled[at : at + 1000])),
            metadata=((SANDBOX_KEY, setup.key),),
            timeout=300,
        )
    ingested = time.perf_counter() - started
    deadline = time.perf_counter() + 300
    while len(arrivals.brp) < len(enrolled) and time.perf_counter() < deadline:  # noqa: ASYNC110 - polls a count
        await asyncio.sleep(0.05)
    if len(arrivals.brp) < len(enrolled):
        raise RuntimeError(f"only {len(arrivals.brp)} of {len(enrolled)} BRP feedbacks arrived")
    return ingested, max(arrivals.brp) - started


def register_request(setup: Setup, school: str, bsn: str) -> rod_pb2.RegisterEnrolmentRequest:
    return rod_pb2.RegisterEnrolmentRequest(
        document_id=str(uuid.uuid4()),
        pupil=rod_pb2.PupilId(bsn=bsn),
        institution_code=school,
        periods=[
            rod_pb2.EnrolmentPeriod(begin_date=to_proto_date(START), location_code=setup.location, course_code=COURSE)
        ],
        sequence=1,
    )


async def listen(
    channel: grpc.aio.Channel, setup: Setup, schools: Sequence[str], after: int, arrivals: Arrivals | None
) -> list[asyncio.Task[None]]:
    """One StreamFeedback per school, from `after`; returns once every stream is open."""
    stub = rod_pb2_grpc.RodServiceStub(channel)
    opened = 0
    all_open = asyncio.Event()

    async def follow(school: str) -> None:
        nonlocal opened
        call = stub.StreamFeedback(
            rod_pb2.StreamFeedbackRequest(after_cursor=after),
            metadata=((SANDBOX_KEY, setup.key), (INSTITUTION_CODE, school)),
        )
        await call.wait_for_connection()
        opened += 1
        if opened == len(schools):
            all_open.set()
        async for feedback in call:
            if arrivals is not None:
                arrivals.arrived(feedback.cursor, feedback.trigger)

    tasks = [asyncio.create_task(follow(school)) for school in schools]
    if schools:  # REGISTRY_BENCH_STREAMS=0 skips the extra streams: nothing to wait for
        await asyncio.wait_for(all_open.wait(), timeout=300)
    return tasks


def percentile_ms(histogram: HdrHistogram, p: float) -> float:
    return float(histogram.get_value_at_percentile(p)) / 1000


async def closed_model(
    server: ServerProcess, channel: grpc.aio.Channel, setup: Setup, persons: list[str], arrivals: Arrivals
) -> tuple[float, float]:
    """(enrolments/s, server CPU ms per enrolment) with CONCURRENCY clients; ends when all feedback arrived."""
    stub = rod_pb2_grpc.RodServiceStub(channel)
    queue = list(enumerate(persons))
    cursors: list[int] = []

    async def client() -> None:
        while queue:
            n, bsn = queue.pop()
            school = setup.schools[n % len(setup.schools)]
            answer = await stub.RegisterEnrolment(
                register_request(setup, school, bsn), metadata=((SANDBOX_KEY, setup.key), (INSTITUTION_CODE, school))
            )
            cursors.append(answer.feedback_cursor)

    cpu = server.cpu_seconds()
    started = time.perf_counter()
    with server.profiled(PROFILE):
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    for cursor in cursors:
        await arrivals.when(cursor)
    elapsed = time.perf_counter() - started
    used = server.cpu_seconds() - cpu
    return len(persons) / elapsed, 1000 * used / len(persons)


async def open_model(
    channel: grpc.aio.Channel, setup: Setup, persons: list[str], rate: float, arrivals: Arrivals
) -> HdrHistogram:
    """Sends at rate/s on a fixed schedule; latency from the intended send to the feedback at the stream."""
    stub = rod_pb2_grpc.RodServiceStub(channel)
    histogram = HdrHistogram(1, 600_000_000, 3)
    begin = time.perf_counter() + 0.05

    async def one(n: int, bsn: str) -> None:
        intended = begin + n / rate
        await asyncio.sleep(max(0.0, intended - time.perf_counter()))
        school = setup.schools[n % len(setup.schools)]
        answer = await stub.RegisterEnrolment(
            register_request(setup, school, bsn), metadata=((SANDBOX_KEY, setup.key), (INSTITUTION_CODE, school))
        )
        arrived = await arrivals.when(answer.feedback_cursor)
        histogram.record_value(max(1, int((arrived - intended) * 1_000_000)))

    await asyncio.gather(*(one(n, bsn) for n, bsn in enumerate(persons)))
    return histogram


async def measure(database_url: str, backend: str) -> None:
    open_count = int(OPEN_RATE * OPEN_SECONDS)
    fanout_count = int(FANOUT_RATE * FANOUT_SECONDS)
    server = ServerProcess(database_url)
    channel = grpc.aio.insecure_channel(server.address)
    tasks: list[asyncio.Task[None]] = []
    try:
        setup = await prepare(channel, database_url, CLOSED * len(HELD) + open_count + fanout_count)
        persons = list(setup.persons)
        arrivals = Arrivals()
        held = 0
        costs: dict[int, float] = {}
        persons_done: list[str] = []
        for size in HELD:
            if size > held:
                filled = time.perf_counter()
                fill_held(database_url, setup, held, size)
                print(f"  held {size:,} enrolments written in {time.perf_counter() - filled:.0f} s", flush=True)
                held = size
            for task in tasks:
                task.cancel()
            tasks = await listen(channel, setup, setup.schools, newest_cursor(database_url), arrivals)
            waited = await server.quiet()
            if waited > 1:
                print(f"  (waited {waited:.0f} s for the server's catch-up after the setup)", flush=True)
            batch, persons = persons[:CLOSED], persons[CLOSED:]
            persons_done += batch
            rate, cpu_ms = await closed_model(server, channel, setup, batch, arrivals)
            costs[size] = cpu_ms
            print(
                f"  {size:>9,} held: {rate:7.0f} enrolments/s closed ({CONCURRENCY} clients, {SCHOOLS} streams), "
                f"server CPU {cpu_ms:.2f} ms per enrolment",
                flush=True,
            )
            record(
                f"ROD server CPU per enrolment, {size:,} held",
                cpu_ms,
                "ms",
                backend=backend,
            )
            record(
                f"ROD enrolments/s closed model, {CONCURRENCY} clients, {size:,} held",
                rate,
                "enrolments/s",
                backend=backend,
                limit="limit: grpc.aio unary calls/s, 32 concurrent",
            )
        burst = persons_done[: min(len(persons_done), BRP_BURST)]
        with server.profiled(f"{PROFILE}.brp" if PROFILE else ""):
            ingested, delivered = await brp_burst(channel, setup, burst, arrivals)
        print(
            f"  {len(burst):,} BRP deaths of enrolled pupils: ingested in {ingested:.1f} s, "
            f"every school's feedback delivered {delivered:.1f} s after the first message was sent",
            flush=True,
        )
        record(f"ROD BRP burst of {len(burst):,} deaths, submit -> last feedback", delivered, "s", backend=backend)
        record(
            "ROD re-evaluated BRP changes/s (burst, feedback delivered)",
            len(burst) / delivered,
            "changes/s",
            backend=backend,
        )
        if 0 in costs and len(costs) > 1:
            biggest = max(costs)
            print(f"  CPU per enrolment at {biggest:,} held / at 0: {costs[biggest] / costs[0]:.2f}")
        batch, persons = persons[:open_count], persons[open_count:]
        histogram = await open_model(channel, setup, batch, OPEN_RATE, arrivals)
        print(
            f"  open model {OPEN_RATE:.0f}/s for {OPEN_SECONDS:.0f} s: intended send -> feedback at the school "
            f"p50 {percentile_ms(histogram, 50):.1f} ms p99 {percentile_ms(histogram, 99):.1f} ms",
            flush=True,
        )
        record(
            f"ROD open model {OPEN_RATE:.0f}/s, send -> feedback p99",
            percentile_ms(histogram, 99),
            "ms",
            backend=backend,
        )
        # Many listening schools: streams for schools without traffic, beside the real schools' streams.
        extra = await seeded_schools(channel, setup, STREAMS)
        channels = [grpc.aio.insecure_channel(server.address) for _ in range(max(1, len(extra) // 500))]
        try:
            for at, extra_channel in enumerate(channels):
                part = extra[at :: len(channels)]
                tasks += await listen(extra_channel, setup, part, newest_cursor(database_url), None)
            await asyncio.sleep(2)
            cpu = server.cpu_seconds()
            await asyncio.sleep(IDLE_SECONDS)
            idle = 100 * (server.cpu_seconds() - cpu) / IDLE_SECONDS
            listening = len(extra) + SCHOOLS
            print(f"  {listening:,} listening streams, idle: server CPU {idle:.1f} % of a core", flush=True)
            record(f"ROD idle CPU, {listening:,} listening streams", idle, "% of a core", backend=backend)
            batch = persons[:fanout_count]
            histogram = await open_model(channel, setup, batch, FANOUT_RATE, arrivals)
            print(
                f"  fan-out at {FANOUT_RATE:.0f}/s with {listening:,} streams: intended send -> feedback "
                f"p50 {percentile_ms(histogram, 50):.1f} ms p99 {percentile_ms(histogram, 99):.1f} ms",
                flush=True,
            )
            record(
                f"ROD fan-out p99 at {FANOUT_RATE:.0f}/s, {listening:,} streams",
                percentile_ms(histogram, 99),
                "ms",
                backend=backend,
            )
        finally:
            for task in tasks:
                task.cancel()
            for extra_channel in channels:
                await extra_channel.close()
    finally:
        for task in tasks:
            task.cancel()
        await channel.close()
        server.stop()


def main() -> None:
    with bench_database("load") as (database_url, backend):
        asyncio.run(measure(database_url, backend))


if __name__ == "__main__":
    main()
