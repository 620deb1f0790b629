"""One peer hop, loopback gRPC against in process: `python -m benchmarks.bench_peer_hop` (issue 11, item 3)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.bootstrap import ALL_SERVICES, build
from services.common.caller import internal_metadata
from services.common.settings import Settings

CALLS = 1000


async def measure(directory: Path) -> None:
    running = build(ALL_SERVICES, Settings(database_url=f"sqlite:///{directory / 'registry.db'}", port=0))
    await running.server.start()
    loopback = grpc.aio.insecure_channel(running.server.address)
    try:
        created = await sandbox_pb2_grpc.SandboxAdminStub(loopback).CreateSandbox(
            sandbox_pb2.CreateSandboxRequest(name="hop")
        )
        metadata = internal_metadata(running.settings.internal_token, created.sandbox.sandbox_id)
        # The channel a register gets for a peer this process serves (services.common.inprocess.LocalChannel).
        for name, channel in (("loopback gRPC", loopback), ("in process", running.peers.channel("sandbox"))):
            stub = sandbox_pb2_grpc.SandboxAdminStub(channel)
            for _ in range(50):
                await stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=metadata)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(CALLS):
                await stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=metadata)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{name}: {wall / CALLS * 1e6:,.0f} µs wall, {cpu / CALLS * 1e6:,.0f} µs CPU per GetSandbox")
        answer = await sandbox_pb2_grpc.SandboxAdminStub(loopback).GetSandbox(
            sandbox_pb2.GetSandboxRequest(), metadata=metadata
        )
        started = time.perf_counter()
        for _ in range(10_000):
            sandbox_pb2.GetSandboxRequest.FromString(sandbox_pb2.GetSandboxRequest().SerializeToString())
            sandbox_pb2.Sandbox.FromString(answer.SerializeToString())
        print(f"encoding and decoding the request and answer: {(time.perf_counter() - started) / 10_000 * 1e6:,.1f} µs")
    finally:
        await loopback.close()
        await running.server.stop(0.2)
        await running.peers.close()
        running.database.engine.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(measure(Path(directory)))


if __name__ == "__main__":
    main()
