"""`sandbox up --workers 2` on PostgreSQL: both workers take calls on the one port, and a school's stream resumes
by its cursor on the other worker after the one serving it was killed (and the supervisor starts it again)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from clients.school_admin import Connection, EnrolmentLine, generate
from services._gen.registry.v1 import (
    common_pb2,
    rio_pb2,
    rio_pb2_grpc,
    rod_pb2,
    rod_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
)
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.dates import to_proto_date
from tests.e2e.test_sandbox_process import ROOT, free_port, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TODAY = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
BEGIN = dt.date(2026, 8, 15)
BEFORE_KILL = 16
AFTER_KILL = 6
STREAM = "/registry.v1.RodService/StreamFeedback"
REGISTER = "/registry.v1.RodService/RegisterEnrolment"


def _two_free_ports() -> int:
    """A port p with p and p + 1 free (the workers' metrics ports)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two consecutive free ports")


@dataclass
class Workers:
    process: subprocess.Popen[bytes]
    address: str
    metrics_port: int
    log: Path

    def key(self) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            match = re.search(r"x-sandbox-key: (sk_test_\S+)", self.log.read_text())
            if match:
                return match.group(1)
            time.sleep(0.1)
        raise AssertionError(f"no sandbox key printed:\n{self.log.read_text()}")

    def worker_pids(self) -> dict[int, int]:
        """Worker index -> pid, from the supervisor's children."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        found = {}
        for pid in children:
            with_args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"--index" in with_args:
                found[int(with_args[with_args.index(b"--index") + 1])] = int(pid)
        return found

    def metric(self, index: int, name: str, method: str) -> float:
        """The sum of a metric's samples for one method, from worker `index`'s /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port + index}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and f'method="{method}"' in line
        )


@contextlib.contextmanager
def _sandbox_up(tmp_path: Path, postgres_url: str, *extra: str) -> Iterator[Workers]:
    """`sandbox up --workers 2` on the database; returns once it printed its key."""
    port, metrics = free_port(), _two_free_ports()
    env = {
        **os.environ,
        "REGISTRY_DATABASE_URL": postgres_url,
        "REGISTRY_PORT": str(port),
        "REGISTRY_METRICS_PORT": str(metrics),
    }
    log = tmp_path / "sandbox.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--workers", "2", "--no-explorer", *extra],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=sink,
        )
    running = Workers(process, f"127.0.0.1:{port}", metrics, log)
    try:
        running.key()
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def workers(tmp_path: Path, postgres_url: str) -> Iterator[Workers]:
    with _sandbox_up(tmp_path, postgres_url) as running:
        yield running


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def _register(address: str, key: str, school: str, line: EnrolmentLine) -> str:
    """One registration on a connection of its own (so the kernel picks a worker for it), retried while refused."""
    request = rod_pb2.RegisterEnrolmentRequest(
        idempotency_key=f"workers-{line.bsn}",
        document_id=str(uuid.uuid5(uuid.NAMESPACE_OID, line.bsn)),
        pupil=rod_pb2.PupilId(bsn=line.bsn),
        institution_code=school,
        periods=[
            rod_pb2.EnrolmentPeriod(
                begin_date=to_proto_date(line.begin_date),
                location_code=line.location_code,
                course_code=line.course_code,
            )
        ],
        sequence=1,
    )
    for _ in range(50):
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                answer = await rod_pb2_grpc.RodServiceStub(channel).RegisterEnrolment(
                    request, metadata=((SANDBOX_KEY, key), (INSTITUTION_CODE, school)), timeout=30
                )
                return str(answer.enrolment.enrolment_id)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
        await asyncio.sleep(0.2)
    raise AssertionError("the port stayed unavailable")


async def _read_until(
    stream: grpc.aio.UnaryStreamCall, received: list[rod_pb2.Feedback], wanted: set[str]
) -> grpc.aio.AioRpcError | None:
    """Reads feedback until every wanted enrolment has its own; the error if the stream broke first."""
    while not wanted <= {f.enrolment_id for f in received if f.trigger == rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE}:
        try:
            item = await asyncio.wait_for(stream.read(), timeout=30)
        except grpc.aio.AioRpcError as error:
            return error
        assert item is not grpc.aio.EOF, "the stream ended without an error"
        received.append(item)
    return None


async def test_both_workers_serve_the_port_and_a_stream_resumes_by_cursor_after_one_is_killed(
    workers: Workers,
) -> None:
    key = workers.key()
    admin = ((SANDBOX_KEY, key),)
    async with grpc.aio.insecure_channel(workers.address) as channel:
        stamp = Timestamp()
        stamp.FromDatetime(TODAY)
        await sandbox_pb2_grpc.SandboxAdminStub(channel).SetClock(
            sandbox_pb2.SetClockRequest(freeze_at=stamp), metadata=admin
        )
        provider = (
            await rio_pb2_grpc.RioServiceStub(channel).ListProviders(
                rio_pb2.ListProvidersRequest(sector=common_pb2.SECTOR_PO, reference_date=to_proto_date(BEGIN)),
                metadata=admin,
            )
        ).providers[0]
    school = provider.institution_code
    with grpc.insecure_channel(workers.address) as sync_channel:
        lines = generate(Connection(sync_channel, key, school), BEFORE_KILL + AFTER_KILL, BEGIN)

    # Each registration on a new connection: the kernel spreads them over both workers.
    # Counted from here: seeding registers the scenario persons' enrolments through the same method.
    seeded = [workers.metric(index, "registry_calls_total", REGISTER) for index in (0, 1)]
    registered = [await _register(workers.address, key, school, line) for line in lines[:BEFORE_KILL]]
    served = [workers.metric(index, "registry_calls_total", REGISTER) - seeded[index] for index in (0, 1)]
    assert all(served) and sum(served) == BEFORE_KILL, served

    received: list[rod_pb2.Feedback] = []
    school_md = ((SANDBOX_KEY, key), (INSTITUTION_CODE, school))
    async with grpc.aio.insecure_channel(workers.address) as channel:
        stream = rod_pb2_grpc.RodServiceStub(channel).StreamFeedback(
            rod_pb2.StreamFeedbackRequest(), metadata=school_md
        )
        assert await _read_until(stream, received, set(registered)) is None
        # Kill the worker that serves this stream, mid-stream.
        [serving] = [i for i in (0, 1) if workers.metric(i, "registry_open_streams", STREAM) == 1]
        pids = workers.worker_pids()
        os.kill(pids[serving], signal.SIGKILL)
        broken = await _read_until(stream, received, {"never"})
        assert broken is not None and broken.code() == grpc.StatusCode.UNAVAILABLE

    # The port is still served: registrations go on, and the stream resumes after its last cursor elsewhere.
    registered += [await _register(workers.address, key, school, line) for line in lines[BEFORE_KILL:]]
    async with grpc.aio.insecure_channel(workers.address) as channel:
        stream = rod_pb2_grpc.RodServiceStub(channel).StreamFeedback(
            rod_pb2.StreamFeedbackRequest(after_cursor=received[-1].cursor), metadata=school_md
        )
        assert await _read_until(stream, received, set(registered)) is None
        stream.cancel()

    cursors = [f.cursor for f in received]
    assert cursors == sorted(set(cursors)), "each feedback once, in cursor order, across the resume"
    assert [f.enrolment_id for f in received if f.trigger == rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE] == registered

    # The supervisor started the killed worker again.
    deadline = time.monotonic() + 60
    while workers.worker_pids().get(serving) in (None, pids[serving]):
        assert time.monotonic() < deadline, "the killed worker was not started again"
        await asyncio.sleep(0.2)
    with grpc.insecure_channel(workers.address) as channel:
        wait_until_serving(channel, ["registry.v1.RodService"])

    # SIGTERM to the supervisor stops every worker, and it exits cleanly.
    last = workers.worker_pids()
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(timeout=30) == 0
    assert not [pid for pid in last.values() if _alive(pid)]


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, postgres_url: str) -> None:
    with _sandbox_up(tmp_path, postgres_url, "--no-seed") as workers:
        _kill_the_supervisor(workers)


def _kill_the_supervisor(workers: Workers) -> None:
    pids = workers.worker_pids()
    assert len(pids) == 2
    workers.process.kill()
    workers.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while [pid for pid in pids.values() if _alive(pid)]:
        assert time.monotonic() < deadline, "workers went on holding the port without their supervisor"
        time.sleep(0.2)
    # The port is free again: a new sandbox may take it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", int(workers.address.rsplit(":", 1)[1])))
