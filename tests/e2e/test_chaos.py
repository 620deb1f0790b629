"""Chaos: the sandbox process is killed (SIGKILL) at random moments during enrolments and a BRP day, and restarted.

Afterwards every answered call's effect exists, every school received each of
its feedbacks exactly once (resuming from its cursor), and every BRP message
was applied once, in order. On SQLite and on PostgreSQL. Bounded in count and
time: three kills, 80 enrolments, 300 BRP messages, a few minutes at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from clients.school_admin import Connection, generate
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
from services.brp_sync.simulator import read_persons, simulate_day, stream_day
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.dates import to_proto_date
from tests.e2e.test_sandbox_process import ROOT, free_port, wait_until_serving

pytestmark = pytest.mark.slow

T = TypeVar("T")
TODAY = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
BEGIN = dt.date(2026, 8, 15)
PER_SCHOOL = 40
BRP_MESSAGES = 300
KILLS = 3
# Statuses that mean "the server went away": retry the same request (same idempotency key).
GONE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]


class SandboxProcess:
    """`sandbox up` as a real process over one database, which the test kills and restarts."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "REGISTRY_DATABASE_URL": database_url, "REGISTRY_PORT": str(self.port)}
        self.tmp_path = tmp_path
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.tmp_path / f"sandbox-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up"], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        with grpc.insecure_channel(self.address) as channel:
            wait_until_serving(channel, [""], timeout=120)

    def key(self) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            match = re.search(r"x-sandbox-key: (sk_test_\S+)", self.log.read_text())
            if match:
                return match.group(1)
            time.sleep(0.1)
        raise AssertionError(f"no sandbox key printed:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def sandbox_process(tmp_path: Path, database_url: str) -> Iterator[SandboxProcess]:
    process = SandboxProcess(tmp_path, database_url)
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def until_answered(call: Callable[[], Awaitable[T]], limit: float = 120) -> T:
    """Repeats the same call while the server is away (killed, restarting); any other answer is returned or raised."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() not in GONE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class School:
    """A school's package: follows its feedback, reconnecting from its last cursor whenever the stream breaks."""

    def __init__(self, channel: grpc.aio.Channel, key: str, code: str) -> None:
        self.rod = rod_pb2_grpc.RodServiceStub(channel)
        self.metadata = ((SANDBOX_KEY, key), (INSTITUTION_CODE, code))
        self.code = code
        self.received: list[int] = []

    async def follow(self) -> None:
        while True:
            after = self.received[-1] if self.received else 0
            call = self.rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(after_cursor=after), metadata=self.metadata)
            try:
                async for feedback in call:
                    self.received.append(feedback.cursor)
            except grpc.aio.AioRpcError as error:
                if error.code() not in GONE:
                    raise
            await asyncio.sleep(0.1)


async def all_feedback(rod: rod_pb2_grpc.RodServiceStub, metadata: tuple[tuple[str, str], ...]) -> list[int]:
    cursors: list[int] = []
    token = ""
    while True:
        request = rod_pb2.ListFeedbackRequest(page=common_pb2.PageRequest(page_size=500, page_token=token))
        page = await until_answered(lambda request=request: rod.ListFeedback(request, metadata=metadata))
        cursors += [f.cursor for f in page.feedback]
        token = page.page.next_page_token
        if not token:
            return cursors


async def test_kill_9_at_random_moments_loses_and_repeats_nothing(sandbox_process: SandboxProcess) -> None:
    key = sandbox_process.key()
    admin = ((SANDBOX_KEY, key),)
    chaos = random.Random(20261129)
    async with grpc.aio.insecure_channel(sandbox_process.address, options=CHANNEL_OPTIONS) as channel:
        stamp = Timestamp()
        stamp.FromDatetime(TODAY)
        await sandbox_pb2_grpc.SandboxAdminStub(channel).SetClock(
            sandbox_pb2.SetClockRequest(freeze_at=stamp), metadata=admin
        )
        providers = (
            await rio_pb2_grpc.RioServiceStub(channel).ListProviders(
                rio_pb2.ListProvidersRequest(sector=common_pb2.SECTOR_PO, reference_date=to_proto_date(BEGIN)),
                metadata=admin,
            )
        ).providers
        codes = [p.institution_code for p in providers[:2]]
        with grpc.insecure_channel(sandbox_process.address) as sync_channel:
            plans = {
                code: generate(Connection(sync_channel, key, code), PER_SCHOOL, BEGIN, skip=i * PER_SCHOOL)
                for i, code in enumerate(codes)
            }
        brp = brp_pb2_grpc.BrpServiceStub(channel)
        day = simulate_day(await read_persons(brp, admin), TODAY.date(), count=BRP_MESSAGES, seed=5)
        schools = [School(channel, key, code) for code in codes]
        followers = [asyncio.create_task(s.follow()) for s in schools]

        answered: dict[str, str] = {}  # document id -> enrolment id

        async def enrol(school: School) -> None:
            for index, line in enumerate(plans[school.code]):
                document = str(uuid.uuid5(uuid.NAMESPACE_URL, f"chaos:{school.code}:{index}"))
                request = rod_pb2.RegisterEnrolmentRequest(
                    idempotency_key=f"chaos-{school.code}-{index}",
                    document_id=document,
                    pupil=rod_pb2.PupilId(bsn=line.bsn),
                    institution_code=school.code,
                    periods=[
                        rod_pb2.EnrolmentPeriod(
                            begin_date=to_proto_date(line.begin_date),
                            location_code=line.location_code,
                            course_code=line.course_code,
                        )
                    ],
                    sequence=1,
                )
                answer = await until_answered(
                    lambda request=request: school.rod.RegisterEnrolment(request, metadata=school.metadata, timeout=10)
                )
                answered[document] = answer.enrolment.enrolment_id
                await asyncio.sleep(chaos.uniform(0, 0.05))

        submitted: list[str] = []

        async def submit(document: bytes) -> brp_pb2.SubmitChangesResponse:
            request = brp_pb2.SubmitChangesRequest(idempotency_key=f"chaos-brp-{uuid.uuid4()}", xml_document=document)
            answer = await until_answered(lambda: brp.SubmitChanges(request, metadata=admin, timeout=30))
            submitted.extend(r.message_id for r in answer.results if r.outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED)
            return answer

        async def kill_at_random() -> None:
            for _ in range(KILLS):
                await asyncio.sleep(chaos.uniform(0.5, 2.5))
                sandbox_process.kill()
                await asyncio.to_thread(sandbox_process.start)

        work = [enrol(s) for s in schools]
        work.append(stream_day(day, submit, speed=86_400 / 6, max_seconds=240, max_batch=25))
        await asyncio.wait_for(asyncio.gather(*work, kill_at_random()), timeout=360)
        assert sandbox_process.starts == KILLS + 1

        # Every answered registration exists.
        for document, enrolment_id in answered.items():
            found = await until_answered(
                lambda enrolment_id=enrolment_id: rod_pb2_grpc.RodServiceStub(channel).GetEnrolment(
                    rod_pb2.GetEnrolmentRequest(enrolment_id=enrolment_id), metadata=admin
                )
            )
            assert found.enrolment_id == enrolment_id, document
        assert len(answered) == len(codes) * PER_SCHOOL

        # Every school received each of its feedbacks exactly once, in order, without a gap.
        for school in schools:
            expected = await all_feedback(school.rod, school.metadata)
            deadline = time.monotonic() + 60
            while not set(expected) <= set(school.received) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            duplicates = [c for c, n in Counter(school.received).items() if n > 1]
            assert duplicates == [], f"{school.code} received feedback twice: {duplicates[:10]}"
            assert school.received == expected, f"{school.code}: stream and register disagree"
            assert len(expected) >= PER_SCHOOL
        for task in followers:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*followers)

        # Every BRP message was applied once, in its person's order.
        assert len(submitted) == len(set(submitted)) >= BRP_MESSAGES * 0.9
        by_person: dict[str, list[str]] = {}
        for mutatie in day:
            by_person.setdefault(mutatie.bsn, []).append(mutatie.bericht_id)
        for bsn, sent in list(by_person.items())[:60]:
            person = await until_answered(
                lambda bsn=bsn: brp.GetPerson(brp_pb2.GetPersonRequest(bsn=bsn, include_history=True), metadata=admin)
            )
            history = [change.message_id for change in person.history if change.message_id in set(sent)]
            assert history == [m for m in sent if m in set(submitted)], bsn
            sequences = [change.sequence for change in person.history]
            assert sequences == sorted(set(sequences)), bsn
