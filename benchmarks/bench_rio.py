"""RIO at national size: seeds the full profile and times ROD's CheckOffering.

python -m benchmarks rio [small|medium|full]   # SQLite in a temporary folder
REGISTRY_BENCH_DATABASE_URL=postgresql://... python -m benchmarks rio
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import sys
import time

import grpc

from benchmarks.backend import bench_database
from benchmarks.results import record
from services._gen.registry.v1 import common_pb2, rio_pb2, rio_pb2_grpc
from services.bootstrap import build
from services.common.caller import internal_metadata
from services.common.dates import to_proto_date
from services.common.seeding import PROFILES
from services.common.settings import Settings
from services.rio import seed

SANDBOX = "sbx_bench"
CHECKS = 1000
SEED = 20260101


async def run(size: str, database_url: str, backend: str) -> None:
    settings = Settings(database_url=database_url, port=0)
    running = build(["sandbox", "rio"], settings)
    await running.server.start()
    # As ROD calls: the internal token naming the sandbox.
    metadata = internal_metadata(running.settings.internal_token, SANDBOX)
    try:
        async with grpc.aio.insecure_channel(running.server.address) as channel:
            stub = rio_pb2_grpc.RioServiceStub(channel)
            plan_started = time.perf_counter()
            seed.plan(PROFILES[size], SEED)  # timed alone for the split; SeedRegister plans again
            plan_seconds = time.perf_counter() - plan_started
            started = time.perf_counter()
            created = await stub.SeedRegister(common_pb2.SeedRegisterRequest(size=size, seed=SEED), metadata=metadata)
            seed_seconds = time.perf_counter() - started
            print(f"SeedRegister {size} over gRPC into {backend} (a fresh database): {seed_seconds:.2f} s")
            print(f"  of which planning (faker nl_NL, deterministic): {plan_seconds:.2f} s")
            print(f"  created: {dict(sorted(created.created.items()))}")

            day = to_proto_date(dt.date(2025, 10, 1))
            triples: list[tuple[str, str, str]] = []
            token = ""
            while len(triples) < 5000:
                page = await stub.ListProviders(
                    rio_pb2.ListProvidersRequest(
                        reference_date=day, page=common_pb2.PageRequest(page_size=500, page_token=token)
                    ),
                    metadata=metadata,
                )
                for provider in page.providers[::10]:
                    offerings = await stub.ListCourseOfferings(
                        rio_pb2.ListCourseOfferingsRequest(reference_date=day, provider_code=provider.provider_code),
                        metadata=metadata,
                    )
                    triples += [
                        (provider.institution_code, o.course_code, o.location_code) for o in offerings.offerings
                    ]
                token = page.page.next_page_token
                if not token:
                    break
            picks = random.Random(1).choices(triples, k=CHECKS)
            latencies: list[float] = []
            offered = 0
            for institution, course, location in picks:
                sent = time.perf_counter()
                answer = await stub.CheckOffering(
                    rio_pb2.CheckOfferingRequest(
                        institution_code=institution, course_code=course, location_code=location, reference_date=day
                    ),
                    metadata=metadata,
                )
                latencies.append(time.perf_counter() - sent)
                offered += answer.offered
            latencies.sort()
            p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
            print(
                f"CheckOffering over gRPC, one at a time, at this size: {CHECKS} calls, "
                f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, {CHECKS / sum(latencies):.0f}/s; "
                f"{offered} offered on 2025-10-01"
            )
            record(
                "RIO CheckOffering calls/s, one client, sequential",
                CHECKS / sum(latencies),
                "calls/s",
                backend=backend,
                limit="limit: grpc.aio unary calls/s, 1 concurrent",
            )
            record(f"RIO SeedRegister {size}", seed_seconds, "s", backend=backend)
    finally:
        await running.server.stop(0)
        await running.peers.close()
        running.database.engine.dispose()


def main() -> None:
    size = next((arg for arg in sys.argv[1:] if arg in PROFILES), "full")
    with bench_database("rio") as (database_url, backend):
        asyncio.run(run(size, database_url, backend))


if __name__ == "__main__":
    main()
