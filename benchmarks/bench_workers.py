"""ROD as 1, 2 and 4 processes on one PostgreSQL database (issue 11.6): enrolments/s, feedback delivered.

    REGISTRY_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python -m benchmarks workers
    REGISTRY_BENCH_WORKERS=1,2,4 REGISTRY_BENCH_WORKERS_CLOSED=600 ...     # the defaults

Laid out as the compose file runs it: SandboxAdmin, RIO and BRP sync in one
process, ROD apart as `python -m services.rod --workers N` (N processes on
one port; N = 1 is the plain single process). Each N gets a fresh database,
the same sandbox (10 vo schools with an offering, persons born by BRP
messages), one listening StreamFeedback per school, and then
REGISTRY_BENCH_WORKERS_CLOSED enrolments from 32 concurrent clients, each on
a connection of its own (the kernel hands each connection to one worker).
The figure is enrolments/s until every feedback reached its school's stream,
and the CPU of all server processes per enrolment. On SQLite it prints why it
does not run: more than one process needs PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from benchmarks.backend import BENCH_DATABASE_ENV, bench_database
from benchmarks.bench_load import CONCURRENCY, Arrivals, Setup, listen, newest_cursor, prepare, register_request
from benchmarks.results import record
from services._gen.registry.v1 import rod_pb2_grpc
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.workers import reserve_port

WORKERS = [int(n) for n in os.environ.get("REGISTRY_BENCH_WORKERS", "1,2,4").split(",") if n.strip()]
CLOSED = int(os.environ.get("REGISTRY_BENCH_WORKERS_CLOSED", "600"))
WARMUP = 64
ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    guard = reserve_port("127.0.0.1", 0)
    port = int(guard.getsockname()[1])
    guard.close()
    return port


def _machine_idle() -> tuple[float, float]:
    """(idle, total) CPU seconds of the whole machine so far (/proc/stat), to tell how busy it was in a run."""
    fields = [int(n) for n in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (fields[3] + fields[4]) / _TICKS, sum(fields[:8]) / _TICKS


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its children (the workers) so far."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    total = 0.0
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


@dataclass
class Layout:
    """The peers' process and the ROD process (a supervisor of `workers` processes when more than one)."""

    peers: subprocess.Popen[bytes]
    rod: subprocess.Popen[bytes]
    peers_address: str
    rod_address: str

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds so far of (the peers' process, the ROD processes)."""
        return _cpu_seconds(self.peers.pid), _cpu_seconds(self.rod.pid)

    def stop(self) -> None:
        for process in (self.rod, self.peers):
            process.terminate()
        for process in (self.rod, self.peers):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_layout(database_url: str, workers: int, log: Path) -> Layout:
    peers_port, rod_port = _free_port(), _free_port()
    peers, rod = f"127.0.0.1:{peers_port}", f"127.0.0.1:{rod_port}"
    env = {
        **os.environ,
        "REGISTRY_DATABASE_URL": database_url,
        "REGISTRY_INTERNAL_TOKEN": secrets.token_urlsafe(32),
        "REGISTRY_SANDBOX_ADDRESS": peers,
        "REGISTRY_RIO_ADDRESS": peers,
        "REGISTRY_BRP_ADDRESS": peers,
        "REGISTRY_ROD_ADDRESS": rod,
        # The benchmark is the only caller.
        "REGISTRY_RATE_LIMIT_PER_SECOND": "0",
        "REGISTRY_STREAMS_PER_SANDBOX": "0",
    }
    with log.open("a") as sink:
        peers_process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_workers", "peers"],
            cwd=ROOT,
            env={**env, "REGISTRY_PORT": str(peers_port)},
            stdout=sink,
            stderr=sink,
        )
        _wait_serving(peers, "registry.v1.RioService")
        rod_process = subprocess.Popen(
            [sys.executable, "-m", "services.rod", "--workers", str(workers)],
            cwd=ROOT,
            env={**env, "REGISTRY_PORT": str(rod_port)},
            stdout=sink,
            stderr=sink,
        )
        _wait_serving(rod, "registry.v1.RodService")
    return Layout(peers_process, rod_process, peers, rod)


def _wait_serving(address: str, service: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + 180
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"{service} did not serve on {address}")


async def closed_model(layout: Layout, setup: Setup, persons: list[str]) -> None:
    """Registers every person with CONCURRENCY clients, each on a connection of its own."""
    queue = list(enumerate(persons))
    channels = [
        grpc.aio.insecure_channel(layout.rod_address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONCURRENCY)
    ]

    async def client(channel: grpc.aio.Channel) -> None:
        stub = rod_pb2_grpc.RodServiceStub(channel)
        while queue:
            n, bsn = queue.pop()
            school = setup.schools[n % len(setup.schools)]
            await stub.RegisterEnrolment(
                register_request(setup, school, bsn),
                metadata=((SANDBOX_KEY, setup.key), (INSTITUTION_CODE, school)),
                timeout=120,
            )

    try:
        await asyncio.gather(*(client(channel) for channel in channels))
    finally:
        for channel in channels:
            await channel.close()


@dataclass
class Run:
    rate: float
    cpu_ms: float
    # Shares of one core during the run: the ROD processes, the peers' process; and the machine's idle share.
    rod_cores: float
    peers_cores: float
    machine_idle: float


async def measure(database_url: str, workers: int, log: Path) -> Run:
    """Enrolments/s with every feedback delivered, and where the CPU went, with ROD as `workers` processes."""
    layout = start_layout(database_url, workers, log)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with (
            grpc.aio.insecure_channel(layout.peers_address) as peers,
            grpc.aio.insecure_channel(layout.rod_address) as rod,
        ):
            # The only listening streams are the benchmark schools' own: no national seed.
            setup = await prepare(peers, database_url, WARMUP + CLOSED, national=False)
            arrivals = Arrivals()
            tasks = await listen(rod, setup, setup.schools, newest_cursor(database_url), arrivals)
            warmup, persons = setup.persons[:WARMUP], setup.persons[WARMUP:]
            await closed_model(layout, setup, warmup)
            (peers_cpu, rod_cpu), (idle, total) = layout.cpu_seconds(), _machine_idle()
            started = time.perf_counter()
            first = newest_cursor(database_url)
            await closed_model(layout, setup, persons)
            # Every feedback up to the newest reached its school's stream.
            newest = newest_cursor(database_url)
            for cursor in range(first + 1, newest + 1):
                await arrivals.when(cursor)
            elapsed = time.perf_counter() - started
            (peers_now, rod_now), (idle_now, total_now) = layout.cpu_seconds(), _machine_idle()
        used = peers_now - peers_cpu + rod_now - rod_cpu
        return Run(
            rate=len(persons) / elapsed,
            cpu_ms=1000 * used / len(persons),
            rod_cores=(rod_now - rod_cpu) / elapsed,
            peers_cores=(peers_now - peers_cpu) / elapsed,
            machine_idle=(idle_now - idle) / max(total_now - total, 1e-9),
        )
    finally:
        for task in tasks:
            task.cancel()
        layout.stop()


def main() -> None:
    if not os.environ.get(BENCH_DATABASE_ENV, "").startswith("postgres"):
        print(f"  skipped: ROD as several processes needs PostgreSQL; set {BENCH_DATABASE_ENV}=postgresql://...")
        return
    log = ROOT / ".bench" / "workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    print(f"  {os.cpu_count()} CPUs on this machine; server logs in {log}", flush=True)
    for workers in WORKERS:
        with bench_database(f"workers{workers}") as (database_url, backend):
            run = asyncio.run(measure(database_url, workers, log))
        print(
            f"  ROD as {workers} process(es): {run.rate:7.1f} enrolments/s closed ({CONCURRENCY} clients, "
            f"feedback delivered), server CPU {run.cpu_ms:.1f} ms per enrolment (all processes); "
            f"ROD used {run.rod_cores:.2f} cores, SandboxAdmin+RIO+BRP {run.peers_cores:.2f}, "
            f"machine idle {100 * run.machine_idle:.0f} %",
            flush=True,
        )
        record(
            f"ROD enrolments/s, {workers} ROD process(es), closed model {CONCURRENCY} clients",
            run.rate,
            "enrolments/s",
            backend=backend,
            limit="limit: grpc.aio unary calls/s, 32 concurrent",
        )
        record(f"server CPU per enrolment, {workers} ROD process(es)", run.cpu_ms, "ms", backend=backend)
        record(f"ROD processes' CPU, {workers} ROD process(es)", run.rod_cores, "cores", backend=backend)
        record(f"machine idle during the run, {workers} ROD process(es)", 100 * run.machine_idle, "%", backend=backend)


def _serve_peers() -> None:
    """SandboxAdmin, RIO and BRP sync in one process, as beside a ROD run apart."""
    from services.bootstrap import run_alone

    run_alone(["sandbox", "rio", "brp_sync"], argv=[])


if __name__ == "__main__":
    if sys.argv[1:] == ["peers"]:
        _serve_peers()
    else:
        main()
