"""Several processes serving one port (`--workers N`): a supervisor reserves the port, starts and restarts workers.

Each worker is a whole server (the named registers, their background work)
over the one PostgreSQL database; the kernel spreads new connections over
the workers (SO_REUSEPORT), and a client that reconnects after a worker died
lands on another. What makes that correct is shared through PostgreSQL, not
memory: append-only logs commit in cursor order and wake every process by
LISTEN/NOTIFY (a stream resumes on any worker by its cursor), writers
serialise on advisory locks, the peer-stream cursors and the count-date sweep
are claimed under locks, and key revocations are relayed to every process
(services.sandbox.revocations). Limits that count calls and open streams are
per process (README, Settings).

    python -m services.workers [--index I] NAME...     # one worker; started by `supervise`, not by hand
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence

from services.bootstrap import serve, with_internal_token
from services.common import telemetry
from services.common.server import PortInUseError
from services.common.settings import Settings, get_settings

log = logging.getLogger(__name__)

# The line a worker prints on stdout once it serves; the supervisor waits for it from each.
READY = "worker-ready"
START_TIMEOUT_SECONDS = 180.0
# A worker that dies is started again after this, doubled while it keeps dying young (at most a minute).
RESTART_SECONDS = 1.0
_YOUNG_SECONDS = 30.0


class WorkersError(RuntimeError):
    """The workers cannot run as asked (SQLite, or a worker that would not start)."""


def check_workers(settings: Settings) -> None:
    """More than one process needs PostgreSQL: SQLite allows one writer, and its waiting is per process."""
    if settings.workers > 1 and not settings.database_url.startswith("postgresql"):
        raise WorkersError(
            f"--workers {settings.workers} needs PostgreSQL (REGISTRY_DATABASE_URL=postgresql://...): "
            "SQLite has one writer, so run one process on it"
        )


def reserve_port(host: str, port: int) -> socket.socket:
    """Refuses a port anyone serves already, then holds it so that only this supervisor's workers can share it.

    gRPC's own port check is off for workers (they share the port by
    SO_REUSEPORT), so the check happens here: a plain bind fails while any
    socket listens on the port, with or without SO_REUSEPORT. The socket
    returned sets SO_REUSEPORT but never listens: it takes no connections,
    lets the workers bind beside it, and makes another supervisor's plain
    bind fail as long as this one runs. Port 0 picks a free port.
    """
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    probe = socket.socket(family, kind, proto)
    try:
        # REUSEADDR only forgives connections of an earlier run still in TIME_WAIT, never a listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        port = probe.getsockname()[1]
    except OSError as error:
        raise PortInUseError(f"cannot listen on {host}:{port}: is another sandbox running there?") from error
    finally:
        probe.close()
    guard = socket.socket(family, kind, proto)
    try:
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        guard.bind((*address[:1], port, *address[2:]))
    except OSError as error:
        guard.close()
        raise PortInUseError(f"cannot listen on {host}:{port}: is another sandbox running there?") from error
    return guard


class WorkerPool:
    """N worker processes of the named registers on one reserved port; a worker that dies is started again."""

    def __init__(self, names: Sequence[str], settings: Settings, port: int) -> None:
        self._names = list(names)
        self._settings = settings
        self._port = port
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._drains: set[asyncio.Task[None]] = set()

    @property
    def pids(self) -> list[int]:
        return [self._processes[index].pid for index in sorted(self._processes)]

    def _environment(self, index: int) -> dict[str, str]:
        settings = self._settings
        environment = {
            **os.environ,
            "REGISTRY_PORT": str(self._port),
            "REGISTRY_HOST": settings.host,
            "REGISTRY_DATABASE_URL": settings.database_url,
            # The embedded mode's token is made by the supervisor; passed on in the environment, never printed.
            "REGISTRY_INTERNAL_TOKEN": settings.internal_token,
            "REGISTRY_WORKERS": "1",
        }
        if settings.metrics_port:
            # One metrics port per worker: the configured one plus the worker's index.
            environment["REGISTRY_METRICS_PORT"] = str(settings.metrics_port + index)
        return environment

    async def _spawn(self, index: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.workers",
            "--index",
            str(index),
            *self._names,
            env=self._environment(index),
            # Never written: its end tells the worker that the supervisor is gone (_stop_when_orphaned).
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
        except TimeoutError:
            line = b""
        if not line.decode().startswith(READY):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise WorkersError(f"worker {index} did not start (exit {process.returncode}); see its log above")
        drain = asyncio.create_task(_drain(process.stdout))
        self._drains.add(drain)
        drain.add_done_callback(self._drains.discard)
        log.info("worker %d (pid %d) serves port %d", index, process.pid, self._port)
        return process

    async def start(self, workers: int) -> None:
        """Starts the workers and returns once every one serves."""
        started = await asyncio.gather(*(self._spawn(index) for index in range(workers)), return_exceptions=True)
        for index, process in enumerate(started):
            if isinstance(process, asyncio.subprocess.Process):
                self._processes[index] = process
        failure = next((p for p in started if isinstance(p, BaseException)), None)
        if failure is not None:
            await self.stop(0)
            raise failure

    async def watch(self, stop: asyncio.Event) -> None:
        """Starts a worker again whenever one ends, until `stop` is set."""
        backoff = {index: RESTART_SECONDS for index in self._processes}
        loop = asyncio.get_running_loop()
        began = {index: loop.time() for index in self._processes}
        while not stop.is_set():
            waits = {asyncio.ensure_future(p.wait()): index for index, p in self._processes.items()}
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait([*waits, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in [*waits, stopping]:
                if task not in done:
                    task.cancel()
            if stop.is_set():
                return
            for task in done:
                index = waits.get(task)
                if index is None:
                    continue
                code = self._processes[index].returncode
                young = loop.time() - began[index] < _YOUNG_SECONDS
                delay = backoff[index] if young else RESTART_SECONDS
                log.warning("worker %d ended (exit %s); starting it again in %.0fs", index, code, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
                try:
                    self._processes[index] = await self._spawn(index)
                except WorkersError:
                    log.exception("worker %d did not start again", index)
                began[index] = loop.time()
                backoff[index] = min(60.0, delay * 2) if young else RESTART_SECONDS

    async def stop(self, grace: float) -> None:
        """SIGTERM to every worker (each lets its calls finish for `grace`), then SIGKILL to any still there."""
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in self._processes.values():
            try:
                await asyncio.wait_for(process.wait(), grace + 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    """Passes a worker's later stdout on, so a full pipe never blocks it."""
    while line := await stream.readline():
        sys.stdout.write(line.decode(errors="replace"))
        sys.stdout.flush()


async def supervise(
    names: Sequence[str], settings: Settings, on_started: Callable[[str], Awaitable[None]] | None = None
) -> None:
    """Serves the named registers with `settings.workers` processes on one port until SIGTERM or SIGINT.

    on_started(address) runs once every worker serves (`sandbox up` creates
    and seeds the default sandbox there, through the served port).
    """
    check_workers(settings)
    settings = with_internal_token(settings)
    guard = reserve_port(settings.host, settings.port)
    port = guard.getsockname()[1]
    pool = WorkerPool(names, settings, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await pool.start(settings.workers)
        log.info("%s: %d workers on %s:%d", ", ".join(names), settings.workers, settings.host, port)
        if on_started is not None:
            await on_started(f"{settings.host}:{port}")
        await pool.watch(stop)
    finally:
        await pool.stop(settings.shutdown_grace_seconds)
        guard.close()


async def _stop_when_orphaned() -> None:
    """Stops this worker (gracefully, as on SIGTERM) once its supervisor is gone, even killed with SIGKILL:
    workers left behind would go on holding the port. The supervisor holds the other end of this worker's
    stdin and never writes, so end of file means it has gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    log.warning("the supervisor is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> None:
    """One worker: serves the named registers on the reserved port, beside its siblings."""
    telemetry.configure_logging()
    parser = argparse.ArgumentParser(prog="python -m services.workers")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("names", nargs="+")
    arguments = parser.parse_args(argv)

    watching: list[asyncio.Task[None]] = []

    async def ready(_running: object) -> None:
        watching.append(asyncio.create_task(_stop_when_orphaned()))
        print(READY, arguments.index, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(arguments.names, get_settings(), ready, reuse_port=True))


if __name__ == "__main__":
    main()
