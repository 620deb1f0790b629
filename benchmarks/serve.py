"""A benchmark's server: every register in one child process (the embedded mode), so its CPU is measured alone.

    python -m benchmarks.serve DATABASE_URL      # prints the address, serves until SIGTERM

The load benchmarks (bench_load) start it with `ServerProcess`, read its CPU
time from /proc before and after a run, and may attach py-spy to its pid.
Rate limits and the stream cap are off: the benchmark is the only caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from services.bootstrap import ALL_SERVICES, build
from services.common.settings import Settings

_TICKS = os.sysconf("SC_CLK_TCK")


async def _serve(database_url: str) -> None:
    settings = Settings(
        database_url=database_url, port=0, rate_limit_per_second=0, streams_per_sandbox=0, stream_poll_seconds=1.0
    )
    running = build(ALL_SERVICES, settings)
    await running.server.start()
    print(running.server.address, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await running.server.stop(0.5)
    await running.peers.close()
    running.database.engine.dispose()


class ServerProcess:
    """The embedded server in a child process: its address, and the CPU seconds it used."""

    def __init__(self, database_url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.serve", database_url],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("the benchmark server did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    async def quiet(self, *, below: float = 0.05, within: float = 300.0) -> float:
        """Waits until the server uses less than `below` of a core over half a second (its own catch-up after a
        seed done: ROD following the `full` seed's RIO changes took the first measured phase's CPU); returns
        the seconds waited, at most `within`."""
        started = time.perf_counter()
        while time.perf_counter() - started < within:
            cpu = self.cpu_seconds()
            await asyncio.sleep(0.5)
            if (self.cpu_seconds() - cpu) / 0.5 < below:
                break
        return time.perf_counter() - started

    @contextlib.contextmanager
    def profiled(self, path: str) -> Iterator[None]:
        """Samples the server with py-spy (collapsed stacks, appended to path) during the block; no-op without one."""
        if not path:
            yield
            return
        with tempfile.NamedTemporaryFile(suffix=".txt") as out:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(self.pid), "--format", "raw", "--rate", "200", "-o", out.name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                yield
            finally:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
                with open(path, "a") as sink:
                    sink.write(Path(out.name).read_text())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
