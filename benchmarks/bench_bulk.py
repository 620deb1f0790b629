"""The bulk path (RodService.RegisterEnrolments, issue 11.5) over real gRPC: pupils/s with decisions and feedback.

    python -m benchmarks limits bulk                 # SQLite; the limits first, for the ratio
    REGISTRY_BENCH_BULK_PUPILS=20000 python -m benchmarks bulk
    REGISTRY_BENCH_DATABASE_URL=postgresql://... python -m benchmarks limits bulk

The server runs in a child process (benchmarks.serve), so its CPU per pupil is printed too, the figure a
shared machine disturbs least; REGISTRY_BENCH_PROFILE=FILE appends py-spy's collapsed stacks of it during
the timed batches to FILE (py-spy on PATH, e.g. .venv/bin). One sandbox (clock 1 Sep 2027), one vo school
with one offering (benchmarks.bench_rod.prepare), and REGISTRY_BENCH_BULK_PUPILS persons (default 5,000)
born by BRP messages: the test range's, then synthetic 11-proof BSNs outside it (by explicit choice, as
bench_load: the test range holds only about 2,700). Every pupil is registered through RegisterEnrolments
in batches of 1,000 by one client with REGISTRY_BENCH_BULK_IN_FLIGHT calls in flight (default 2; 1 sends
each batch after the answer to the one before); the figure is pupils/s with their decisions and feedback
committed, printed with the time 1,300,000 would take at that rate (the issue's target: 5 minutes) and as
a share of the batched-rows limit of the same run.

REGISTRY_BENCH_NATIONAL_PUPILS=N (default 0: off) also times the national seed end to end: SeedSandbox
with national_pupils=N and synthetic_bsns on a sandbox of its own, of size REGISTRY_BENCH_NATIONAL_SIZE
(`small` by default; `full` for RIO's 6,700 primary schools): BRP's persons, RIO's schools listed and
every pupil enrolled through RegisterEnrolments, as pupils/s of the whole seed (profiled into FILE.national).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import grpc

from benchmarks.backend import bench_database
from benchmarks.bench_load import synthetic_bsns
from benchmarks.bench_rod import START, births, prepare
from benchmarks.results import record
from benchmarks.serve import ServerProcess
from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, rod_pb2, rod_pb2_grpc, sandbox_pb2, sandbox_pb2_grpc
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.dates import to_proto_date
from services.rod.rules import MAX_BULK_ENROLMENTS

PUPILS = int(os.environ.get("REGISTRY_BENCH_BULK_PUPILS", "5000"))
NATIONAL_PUPILS = int(os.environ.get("REGISTRY_BENCH_NATIONAL_PUPILS", "0"))
NATIONAL_SIZE = os.environ.get("REGISTRY_BENCH_NATIONAL_SIZE", "small")
NATIONAL = 1_300_000
# Bulk calls in flight at once (1: each batch waits for the answer to the one before).
IN_FLIGHT = int(os.environ.get("REGISTRY_BENCH_BULK_IN_FLIGHT", "2"))
# A file to append py-spy's collapsed stacks of the server during the timed batches to (empty: no profile).
PROFILE = os.environ.get("REGISTRY_BENCH_PROFILE", "")


async def measure(database_url: str, backend: str) -> None:
    server = ServerProcess(database_url)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        key, school, location, course, bsns = await prepare(channel)
        brp = brp_pb2_grpc.BrpServiceStub(channel)
        extra = [b for b in synthetic_bsns(max(0, PUPILS - len(bsns)) + len(bsns)) if b not in set(bsns)]
        extra = extra[: max(0, PUPILS - len(bsns))]
        for at in range(0, len(extra), 1000):
            await brp.SubmitChanges(
                brp_pb2.SubmitChangesRequest(xml_document=births(extra[at : at + 1000])),
                metadata=((SANDBOX_KEY, key),),
                timeout=300,
            )
        pupils = (bsns + extra)[:PUPILS]
        rod = rod_pb2_grpc.RodServiceStub(channel)
        md = ((SANDBOX_KEY, key), (INSTITUTION_CODE, school))
        period = rod_pb2.EnrolmentPeriod(begin_date=to_proto_date(START), location_code=location, course_code=course)
        batches = []
        for at in range(0, len(pupils), MAX_BULK_ENROLMENTS):
            items = []
            for bsn in pupils[at : at + MAX_BULK_ENROLMENTS]:
                item = rod_pb2.RegisterEnrolmentRequest(
                    document_id=str(uuid.uuid4()), institution_code=school, periods=[period], sequence=1
                )
                item.pupil.bsn = bsn
                items.append(item)
            batches.append(rod_pb2.RegisterEnrolmentsRequest(idempotency_key=f"bulk-{at}", enrolments=items))
        cpu_before = server.cpu_seconds()
        started = time.perf_counter()
        # Up to IN_FLIGHT batches at once: the next batch arrives while the server writes the one before.
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def send(batch: rod_pb2.RegisterEnrolmentsRequest) -> int:
            async with gate:
                answer = await rod.RegisterEnrolments(batch, metadata=md, timeout=600)
                return int(answer.accepted)

        with server.profiled(PROFILE):
            accepted = sum(await asyncio.gather(*(send(batch) for batch in batches)))
        elapsed = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu_before
        if NATIONAL_PUPILS:
            with server.profiled(f"{PROFILE}.national" if PROFILE else ""):
                await national_seed(channel, backend)
    finally:
        await channel.close()
        server.stop()
    rate = accepted / elapsed
    print(
        f"bulk: {accepted:,} of {len(pupils):,} pupils accepted in {elapsed:.1f} s, {rate:,.0f} pupils/s ({backend},"
        f" {IN_FLIGHT} batch(es) in flight)"
    )
    print(
        f"  server CPU {cpu:.1f} s, {cpu / max(accepted, 1) * 1e6:,.0f} µs per pupil"
        f" ({accepted / cpu if cpu else 0:,.0f} pupils per server CPU second)"
    )
    print(f"  at this rate {NATIONAL:,} pupils take {NATIONAL / rate / 60:,.0f} min (target: 5 min)")
    limit = "limit: SQLite batched rows/s" if backend == "SQLite" else "limit: PostgreSQL COPY rows/s"
    record(
        "ROD bulk registration pupils/s (with decisions and feedback)", rate, "pupils/s", backend=backend, limit=limit
    )


async def national_seed(channel: grpc.aio.Channel, backend: str) -> None:
    """The national seed of NATIONAL_PUPILS pupils through SandboxAdmin.SeedSandbox, timed end to end."""
    admin = sandbox_pb2_grpc.SandboxAdminStub(channel)
    created = await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="bench-national"))
    size = sandbox_pb2.SeedSize.Value(f"SEED_SIZE_{NATIONAL_SIZE.upper()}")
    request = sandbox_pb2.SeedSandboxRequest(size=size, seed=1, synthetic_bsns=True, national_pupils=NATIONAL_PUPILS)
    started = time.perf_counter()
    answer = await admin.SeedSandbox(request, metadata=((SANDBOX_KEY, created.sandbox_key),), timeout=7200)
    elapsed = time.perf_counter() - started
    enrolled = answer.created["national_enrolments"]
    rate = enrolled / elapsed
    print(f"national seed ({NATIONAL_SIZE}): {enrolled:,} pupils enrolled in {elapsed:.1f} s, {rate:,.0f} pupils/s")
    print(f"  at this rate {NATIONAL:,} pupils take {NATIONAL / rate / 60:,.0f} min")
    record("national seed pupils/s (BRP persons, RIO schools, ROD enrolments)", rate, "pupils/s", backend=backend)


def main() -> None:
    with bench_database("bulk") as (database_url, backend):
        asyncio.run(measure(database_url, backend))


if __name__ == "__main__":
    main()
