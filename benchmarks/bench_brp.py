"""Ingests one simulated day of 10,000 BRP messages over real gRPC; prints messages/s.

python -m benchmarks brp                       # SQLite in a temporary folder
REGISTRY_BENCH_DATABASE_URL=postgresql://... python -m benchmarks brp
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import grpc

from benchmarks.backend import bench_database
from benchmarks.results import record
from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, sandbox_pb2, sandbox_pb2_grpc
from services.bootstrap import build
from services.brp_sync.simulator import read_persons, simulate_day
from services.brp_sync.xml_codec import batch_document
from services.common.caller import SANDBOX_KEY, internal_metadata
from services.common.settings import Settings

MESSAGES = 10_000
BATCH = 500
DAY = dt.date(2026, 11, 28)


async def run() -> None:
    with bench_database("brp") as (database_url, backend):
        settings = Settings(database_url=database_url, port=0)
        running = build(["sandbox", "brp_sync"], settings)
        await running.server.start()
        try:
            async with grpc.aio.insecure_channel(running.server.address) as channel:
                created = await sandbox_pb2_grpc.SandboxAdminStub(channel).CreateSandbox(
                    sandbox_pb2.CreateSandboxRequest(name="bench")
                )
                brp = brp_pb2_grpc.BrpServiceStub(channel)
                await brp.SeedRegister(
                    # Opt-in: 14,940 persons need synthetic BSNs beyond the test range (made-up data only).
                    common_pb2.SeedRegisterRequest(size="medium", seed=1, synthetic_bsns=True),
                    metadata=internal_metadata(running.settings.internal_token, created.sandbox.sandbox_id),
                )
                metadata = ((SANDBOX_KEY, created.sandbox_key),)
                persons = await read_persons(brp, metadata)
                day = simulate_day(persons, DAY, MESSAGES, seed=1, synthetic_bsns=True)
                documents = [batch_document(day[i : i + BATCH]) for i in range(0, len(day), BATCH)]
                applied = 0
                started, cpu_started = time.perf_counter(), time.process_time()
                for document in documents:
                    answer = await brp.SubmitChanges(
                        brp_pb2.SubmitChangesRequest(xml_document=document), metadata=metadata
                    )
                    applied += sum(r.outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED for r in answer.results)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        finally:
            await running.server.stop(0)
            await running.peers.close()
            running.database.engine.dispose()
    print(f"persons in register: {len(persons)}")
    print(f"messages: {len(day)} in {len(documents)} documents of {BATCH}, applied: {applied}")
    print(f"ingest: {elapsed:.2f} s, {len(day) / elapsed:,.0f} messages/s ({backend}, one gRPC client, sequential)")
    # CPU seconds of this process (server and client both run here): the figure a busy shared machine disturbs least.
    print(f"ingest CPU: {cpu:.2f} s, {len(day) / cpu:,.0f} messages per CPU second")
    record(
        "BRP ingestion messages/s, documents of 500",
        len(day) / elapsed,
        "msg/s",
        backend=backend,
        limit="limit: lxml parse + XSD validation messages/s",
    )
    record(
        "BRP ingestion messages per CPU second (server and client)",
        len(day) / cpu,
        "msg/s",
        backend=backend,
        limit="limit: lxml parse + XSD validation messages/s",
    )


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
