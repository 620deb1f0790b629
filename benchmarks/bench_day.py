"""A day of traffic: 10,000 BRP messages and 10,000 enrolments, timed until every feedback reached its school.

    python -m benchmarks day                                    # the issue's day, SQLite, both orders
    REGISTRY_BENCH_DAY_BRP=1000 REGISTRY_BENCH_DAY_ENROLMENTS=1000 python -m benchmarks day    # a quick run
    REGISTRY_BENCH_DATABASE_URL=postgresql://... python -m benchmarks limits day    # PostgreSQL, beside the limits

Issue 11's target: the whole day, feedback delivered to every listening
school, in 15 s or less. Each order runs on a fresh database and a fresh
server (every register in one child process, benchmarks.serve, so its CPU is
read alone from /proc):

- interleaved: the BRP day (one client, documents of 500 in registration
  order, as a municipality feed arrives) and the enrolments (REGISTRY_BENCH_DAY_CLIENTS
  concurrent clients, closed model, RegisterEnrolment over the public API) at once;
- sequential: the enrolments first, then the BRP day, so every BRP change
  that alters a decision finds its pupil enrolled.

Untimed setup per order: a sandbox with its clock frozen on the evening of
1 Sep 2027, the `medium` seed (REGISTRY_BENCH_DAY_SEED_SIZE: small, medium or none; synthetic BSNs by
explicit choice: 14,940 persons of school ages give the simulator a
population to marry, move and bury), REGISTRY_BENCH_DAY_SCHOOLS vo schools
(default 100) each with an offering, one born pupil (synthetic BSN) per
enrolment, and the BRP day made by the project's simulator
(services.brp_sync.simulator.simulate_day) over every person of the sandbox.
Every school the enrolments go to has a StreamFeedback listener, and so has
every school the seed enrolled its scenario pupils at (found by their
feedback in ListFeedback), since a BRP change may alter their decisions too;
the seed's own feedback comes before the day and is not counted.

The clock runs from the first call to the arrival of the last feedback. The
run is over when every answered enrolment's own feedback arrived, every
feedback row of the sandbox in ROD's outbox arrived, and for 10 s
(REGISTRY_BENCH_DAY_QUIET) neither the
outbox nor ROD's place in BRP's change stream moved (ROD re-evaluates BRP
changes after they commit, so the end of ingestion is not the end of the
day). Then ListFeedback, the register's own list, is the expected set: each
feedback must have arrived exactly once, on its school's stream
(benchmarks.delivery). REGISTRY_BENCH_DAY_TIMEOUT (default 600 s) bounds each
order; a run that hits it reports what it had as partial figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from benchmarks.backend import bench_database
from benchmarks.bench_load import synthetic_bsns, vo_schools
from benchmarks.bench_rod import births
from benchmarks.delivery import Deliveries, percentile
from benchmarks.results import record
from benchmarks.serve import ServerProcess
from services._gen.registry.v1 import (
    brp_pb2,
    brp_pb2_grpc,
    common_pb2,
    rod_pb2,
    rod_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
)
from services.brp_sync.simulator import read_persons, simulate_day
from services.brp_sync.xml_codec import batch_document
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.database import make_engine
from services.common.dates import to_proto_date
from services.rod.tables import RodFeedback, RodStreamCursor

BRP_MESSAGES = int(os.environ.get("REGISTRY_BENCH_DAY_BRP", "10000"))
ENROLMENTS = int(os.environ.get("REGISTRY_BENCH_DAY_ENROLMENTS", "10000"))
SCHOOLS = int(os.environ.get("REGISTRY_BENCH_DAY_SCHOOLS", "100"))
CLIENTS = int(os.environ.get("REGISTRY_BENCH_DAY_CLIENTS", "32"))
TIMEOUT = float(os.environ.get("REGISTRY_BENCH_DAY_TIMEOUT", "600"))
# Which orders to run, comma-separated.
MODES = os.environ.get("REGISTRY_BENCH_DAY_MODES", "interleaved,sequential").replace(" ", "").split(",")
SEED_SIZES = {"small": sandbox_pb2.SEED_SIZE_SMALL, "medium": sandbox_pb2.SEED_SIZE_MEDIUM}
SEED_SIZE = os.environ.get("REGISTRY_BENCH_DAY_SEED_SIZE", "medium")
BRP_BATCH = 500
# No feedback and no move of ROD's BRP cursor for this long (after everything sent) ends the run. Longer
# than one of ROD's re-evaluation batches can take on a loaded machine (PostgreSQL's lagged by 12 s in one run).
QUIET_SECONDS = float(os.environ.get("REGISTRY_BENCH_DAY_QUIET", "10"))
DAY = dt.date(2027, 9, 1)
# After the day's office hours (the simulator registers messages 08:00-18:00 Amsterdam time).
CLOCK = dt.datetime(2027, 9, 1, 18, 30, tzinfo=dt.UTC)
SINCE = dt.date(2020, 1, 1)
START = dt.date(2027, 8, 15)
COURSE = "2101"
BRP_STREAM = "brp"  # ROD's name for its place in BRP's change stream (services.rod.reevaluation)


@dataclass
class Day:
    key: str
    sandbox_id: str
    schools: list[str]
    location: str
    pupils: list[str]
    documents: list[tuple[bytes, list[str]]]  # each BRP document with its message ids
    # Schools that hold enrolments from the seed (its scenario pupils): the BRP day may change their decisions too.
    others: list[str] = field(default_factory=list)
    # The outbox cursor the day starts after (the seed's own feedback comes before it).
    after: int = 0


@dataclass
class Run:
    """What one order of the day did, on the monotonic clock (0 = the first call)."""

    mode: str
    started: float = 0.0
    sent_at: dict[str, float] = field(default_factory=dict)  # cause id (document id, BRP message id) -> send
    enrolments: Counter[str] = field(default_factory=Counter)  # ok / refused / error:<code>
    answered_documents: list[str] = field(default_factory=list)
    enrolments_done: float = 0.0
    brp_started: float = 0.0
    brp_done: float = 0.0
    brp: Counter[str] = field(default_factory=Counter)  # applied / rejected / held
    settled: float = 0.0
    timed_out: bool = False
    deliveries: Deliveries = field(default_factory=Deliveries)


async def prepare(channel: grpc.aio.Channel) -> Day:
    """The untimed part: sandbox, seed, schools, pupils born in BRP, and the simulated BRP day."""
    admin = sandbox_pb2_grpc.SandboxAdminStub(channel)
    created = await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="bench-day"))
    md = ((SANDBOX_KEY, created.sandbox_key),)
    stamp = Timestamp()
    stamp.FromDatetime(CLOCK)
    await admin.SetClock(sandbox_pb2.SetClockRequest(freeze_at=stamp), metadata=md)
    if SEED_SIZE not in (*SEED_SIZES, "none"):
        raise ValueError(f"REGISTRY_BENCH_DAY_SEED_SIZE={SEED_SIZE!r}: small, medium or none")
    if SEED_SIZE != "none":
        await admin.SeedSandbox(
            sandbox_pb2.SeedSandboxRequest(size=SEED_SIZES[SEED_SIZE], seed=1, synthetic_bsns=True),
            metadata=md,
            timeout=600,
        )
    schools, location_code = await vo_schools(channel, md, SCHOOLS, "Bench day")
    brp = brp_pb2_grpc.BrpServiceStub(channel)
    seeded = {p.bsn for p in await read_persons(brp, md)}
    pupils = [bsn for bsn in synthetic_bsns(ENROLMENTS + len(seeded)) if bsn not in seeded][:ENROLMENTS]
    for at in range(0, len(pupils), 1000):
        await brp.SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=births(pupils[at : at + 1000])), metadata=md, timeout=300
        )
    persons = await read_persons(brp, md)
    day = simulate_day(persons, DAY, BRP_MESSAGES, seed=1, synthetic_bsns=True)
    documents = [
        (batch_document(day[at : at + BRP_BATCH]), [m.bericht_id for m in day[at : at + BRP_BATCH]])
        for at in range(0, len(day), BRP_BATCH)
    ]
    prepared = Day(created.sandbox_key, created.sandbox.sandbox_id, schools, location_code, pupils, documents)
    before = await listed_feedback(channel, prepared)
    prepared.after = max((cursor for cursor, _ in before), default=0)
    prepared.others = sorted({school for _, school in before} - set(schools))
    return prepared


def register_request(day: Day, school: str, bsn: str) -> rod_pb2.RegisterEnrolmentRequest:
    return rod_pb2.RegisterEnrolmentRequest(
        document_id=str(uuid.uuid4()),
        pupil=rod_pb2.PupilId(bsn=bsn),
        institution_code=school,
        periods=[
            rod_pb2.EnrolmentPeriod(begin_date=to_proto_date(START), location_code=day.location, course_code=COURSE)
        ],
        sequence=1,
    )


async def listen(channel: grpc.aio.Channel, day: Day, run: Run) -> list[asyncio.Task[None]]:
    """One StreamFeedback per school that may get feedback, from the day's start; returns once all are open."""
    stub = rod_pb2_grpc.RodServiceStub(channel)
    opened = 0
    all_open = asyncio.Event()

    async def follow(school: str) -> None:
        nonlocal opened
        call = stub.StreamFeedback(
            rod_pb2.StreamFeedbackRequest(after_cursor=day.after),
            metadata=((SANDBOX_KEY, day.key), (INSTITUTION_CODE, school)),
        )
        await call.wait_for_connection()
        opened += 1
        if opened == len(day.schools) + len(day.others):
            all_open.set()
        async for feedback in call:
            run.deliveries.arrived(school, feedback, at=time.perf_counter(), wall=time.time())

    tasks = [asyncio.create_task(follow(school)) for school in day.schools + day.others]
    await asyncio.wait_for(all_open.wait(), timeout=120)
    return tasks


async def enrol(channel: grpc.aio.Channel, day: Day, run: Run) -> None:
    """CLIENTS concurrent clients register one enrolment per pupil (closed model)."""
    stub = rod_pb2_grpc.RodServiceStub(channel)
    queue = list(enumerate(day.pupils))
    queue.reverse()

    async def client() -> None:
        while queue:
            n, bsn = queue.pop()
            school = day.schools[n % len(day.schools)]
            request = register_request(day, school, bsn)
            run.sent_at[request.document_id] = time.perf_counter()
            try:
                await stub.RegisterEnrolment(
                    request, metadata=((SANDBOX_KEY, day.key), (INSTITUTION_CODE, school)), timeout=120
                )
                run.enrolments["ok"] += 1
            except grpc.aio.AioRpcError as error:
                # A refusal (say, the pupil died earlier in the day) is a normal answer with its own feedback.
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    run.enrolments[f"error:{error.code().name}"] += 1
                    continue
                run.enrolments["refused"] += 1
            run.answered_documents.append(request.document_id)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    run.enrolments_done = time.perf_counter()


async def ingest(channel: grpc.aio.Channel, day: Day, run: Run) -> None:
    """The BRP day in registration order, one document after the other, as one feed delivers it."""
    stub = brp_pb2_grpc.BrpServiceStub(channel)
    run.brp_started = time.perf_counter()
    for document, message_ids in day.documents:
        now = time.perf_counter()
        for message_id in message_ids:
            run.sent_at[message_id] = now
        answer = await stub.SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=document), metadata=((SANDBOX_KEY, day.key),), timeout=300
        )
        for result in answer.results:
            run.brp[brp_pb2.MessageOutcome.Name(result.outcome).removeprefix("MESSAGE_OUTCOME_").lower()] += 1
    run.brp_done = time.perf_counter()


def _progress(engine: Engine, sandbox_id: str, after: int) -> tuple[set[int], int | None]:
    """The day's feedback cursors in ROD's outbox, and ROD's place in BRP's change stream (None if unknown)."""
    feedback = RodFeedback.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as connection:
        cursors = set(
            connection.execute(
                select(feedback.cursor).where(feedback.sandbox_id == sandbox_id, feedback.cursor > after)
            ).scalars()
        )
        try:
            streams = RodStreamCursor.__table__.c  # type: ignore[attr-defined]
            place = connection.execute(
                select(func.max(streams.cursor)).where(streams.stream == BRP_STREAM)
            ).scalar_one_or_none()
        except Exception:  # noqa: BLE001 - the cursor only makes the end more certain; the outbox decides
            place = None
    return cursors, place


async def settle(engine: Engine, day: Day, run: Run) -> None:
    """Waits until every feedback the day produced reached its school (see the module docstring)."""
    quiet_since = time.perf_counter()
    last: tuple[int, int | None] = (-1, None)
    while True:
        outbox, place = await asyncio.to_thread(_progress, engine, day.sandbox_id, day.after)
        now = time.perf_counter()
        if (len(outbox), place) != last:
            last, quiet_since = (len(outbox), place), now
        own = all(run.deliveries.has_cause(document) for document in run.answered_documents)
        if own and outbox <= run.deliveries.cursors() and now - quiet_since >= QUIET_SECONDS:
            run.settled = now
            return
        await asyncio.sleep(0.25)


async def play(channel: grpc.aio.Channel, engine: Engine, day: Day, run: Run) -> None:
    run.started = time.perf_counter()
    if run.mode == "interleaved":
        await asyncio.gather(enrol(channel, day, run), ingest(channel, day, run))
    elif run.mode == "sequential":
        await enrol(channel, day, run)
        await ingest(channel, day, run)
    else:
        raise ValueError(f"unknown order {run.mode!r}: interleaved or sequential")
    await settle(engine, day, run)


async def listed_feedback(channel: grpc.aio.Channel, day: Day) -> list[tuple[int, str]]:
    """(cursor, school) of every feedback ROD lists for the sandbox (ListFeedback, as the sandbox admin)."""
    stub = rod_pb2_grpc.RodServiceStub(channel)
    listed: list[tuple[int, str]] = []
    token = ""
    while True:
        page = await stub.ListFeedback(
            rod_pb2.ListFeedbackRequest(page=common_pb2.PageRequest(page_size=500, page_token=token)),
            metadata=((SANDBOX_KEY, day.key),),
            timeout=60,
        )
        listed += [(f.cursor, f.institution_code) for f in page.feedback]
        token = page.page.next_page_token
        if not token:
            return listed


def _ms(values: Sequence[float]) -> str:
    return f"p50 {1000 * percentile(values, 50):,.0f} ms, p99 {1000 * percentile(values, 99):,.0f} ms ({len(values):,})"


def report(run: Run, day: Day, backend: str, cpu: float, listed: list[tuple[int, str]]) -> None:
    deliveries = run.deliveries
    check = deliveries.check(listed, after=day.after)
    partial = " (partial: timed out)" if run.timed_out else ""
    end = deliveries.last_at() if not run.timed_out else run.started + TIMEOUT
    wall = max(0.0, end - run.started)
    enrolled = sum(run.enrolments.values())
    enrol_seconds = (run.enrolments_done or end) - run.started
    brp_sent = sum(run.brp.values())
    brp_seconds = (run.brp_done or end) - run.brp_started if run.brp_started else 0.0
    brp_feedback = [a.at for a in deliveries.arrivals if a.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE]
    school = deliveries.send_to_arrival(run.sent_at, rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE)
    brp = deliveries.send_to_arrival(run.sent_at, rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE)
    lag = deliveries.commit_to_arrival()
    beside = run.mode == "interleaved"
    overlap = beside and run.enrolments_done >= run.brp_done
    title = f"day {run.mode}{partial}, {backend}"
    planned = sum(len(ids) for _, ids in day.documents)
    print(
        f"  {title}: {brp_sent:,} of {planned:,} BRP messages and {enrolled:,} of {len(day.pupils):,} enrolments "
        f"answered, {len(day.schools)} + {len(day.others)} schools listening"
    )
    print(f"    first call -> last feedback at its school: {wall:.1f} s (target 15 s)")
    print(f"    enrolments: {dict(run.enrolments)}, {enrolled / enrol_seconds:,.0f}/s over {enrol_seconds:.1f} s")
    brp_rate = brp_sent / brp_seconds if brp_seconds else 0.0
    where = ("beside enrolment traffic" if overlap else "partly beside enrolments") if beside else "alone"
    print(f"    BRP: {dict(run.brp)}, {brp_rate:,.0f} messages/s {where}, ingested in {brp_seconds:.1f} s")
    if brp_feedback and run.brp_done:
        print(
            f"    BRP feedback: {len(brp_feedback):,}, the last {max(brp_feedback) - run.brp_done:.1f} s "
            "after the last document was answered"
        )
    print(f"    feedback, commit -> arrival: {_ms(lag)}")
    print(f"    feedback, school message sent -> arrival: {_ms(school)}")
    print(f"    feedback, BRP document sent -> arrival: {_ms(brp)}")
    print(f"    server CPU: {cpu:.1f} s, {100 * cpu / wall if wall else 0:.0f} % of a core over the day")
    print(f"    delivery check: {'passed' if check.passed else 'FAILED'}: {check.summary()}", flush=True)
    name = f"day {run.mode} ({planned:,} BRP + {len(day.pupils):,} enrolments){partial}"
    record(f"{name}: first call -> last feedback", wall, "s", backend=backend)
    record(
        f"{name}: enrolments/s",
        enrolled / enrol_seconds,
        "enrolments/s",
        backend=backend,
        limit="limit: grpc.aio unary calls/s, 32 concurrent",
    )
    record(
        f"{name}: BRP messages/s {'beside enrolments' if beside else 'alone'}",
        brp_rate,
        "msg/s",
        backend=backend,
        limit="limit: lxml parse + XSD validation messages/s",
    )
    record(f"{name}: feedback commit -> arrival p50", 1000 * percentile(lag, 50), "ms", backend=backend)
    record(f"{name}: feedback commit -> arrival p99", 1000 * percentile(lag, 99), "ms", backend=backend)
    for label, values in (("school message", school), ("BRP document", brp)):
        if values:
            record(f"{name}: {label} -> feedback p99", 1000 * percentile(values, 99), "ms", backend=backend)
    record(f"{name}: server CPU", cpu, "s", backend=backend)
    record(f"{name}: feedback missing or duplicated", len(check.missing) + len(check.duplicated), "", backend=backend)


async def one_order(mode: str) -> None:
    with bench_database(f"day_{mode}") as (database_url, backend):
        server = ServerProcess(database_url)
        engine = make_engine(database_url)
        channel = grpc.aio.insecure_channel(server.address)
        streams = grpc.aio.insecure_channel(server.address)
        tasks: list[asyncio.Task[None]] = []
        try:
            prepared = time.perf_counter()
            day = await prepare(channel)
            run = Run(mode)
            tasks = await listen(streams, day, run)
            print(
                f"  {mode}: setup {time.perf_counter() - prepared:.0f} s ({len(day.pupils):,} pupils born, "
                f"{sum(len(ids) for _, ids in day.documents):,} BRP messages simulated, {len(tasks)} streams open)",
                flush=True,
            )
            cpu = server.cpu_seconds()
            try:
                async with asyncio.timeout(TIMEOUT):
                    await play(channel, engine, day, run)
            except TimeoutError:
                run.timed_out = True
            # Includes the idle quiet wait that ends the run (about 1 % of a core), not the check below.
            used = server.cpu_seconds() - cpu
            listed = await listed_feedback(channel, day)
            report(run, day, backend, used, listed)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await task
            await streams.close()
            await channel.close()
            engine.dispose()
            server.stop()


def main() -> None:
    modes = [mode for mode in MODES if mode]
    unknown = set(modes) - {"interleaved", "sequential"}
    if unknown:
        raise SystemExit(f"REGISTRY_BENCH_DAY_MODES: unknown {', '.join(sorted(unknown))}; interleaved, sequential")
    for mode in modes:
        asyncio.run(one_order(mode))


if __name__ == "__main__":
    main()
