"""Two ROD processes over one PostgreSQL database: a school subscribed on one receives what the other registers."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from clients.school_admin import Connection, generate
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
from tests.e2e.test_chaos import SandboxProcess
from tests.e2e.test_sandbox_process import ROOT, free_port, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TODAY = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
BEGIN = dt.date(2026, 8, 15)
PER_REPLICA = 15


@pytest.fixture
def two_rods(tmp_path: Path, postgres_url: str) -> Iterator[tuple[SandboxProcess, str]]:
    """`sandbox up` (every register, ROD included) plus a second ROD process on the same database."""
    token = secrets.token_urlsafe(32)
    first = SandboxProcess(tmp_path, postgres_url)
    first.env["REGISTRY_INTERNAL_TOKEN"] = token
    first.start()
    port = free_port()
    env = {
        **os.environ,
        "REGISTRY_DATABASE_URL": postgres_url,
        "REGISTRY_PORT": str(port),
        "REGISTRY_INTERNAL_TOKEN": token,
        "REGISTRY_SANDBOX_ADDRESS": first.address,
        "REGISTRY_RIO_ADDRESS": first.address,
        "REGISTRY_BRP_ADDRESS": first.address,
    }
    with (tmp_path / "rod-2.log").open("w") as log:
        second = subprocess.Popen([sys.executable, "-m", "services.rod"], cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_until_serving(channel, ["registry.v1.RodService"], timeout=120)
        yield first, f"127.0.0.1:{port}"
    finally:
        second.terminate()
        second.wait(timeout=20)
        first.stop()


async def test_a_school_on_one_replica_receives_once_and_in_order_what_the_other_registers(
    two_rods: tuple[SandboxProcess, str],
) -> None:
    first, second_address = two_rods
    key = first.key()
    admin = ((SANDBOX_KEY, key),)
    async with (
        grpc.aio.insecure_channel(first.address) as one,
        grpc.aio.insecure_channel(second_address) as two,
    ):
        stamp = Timestamp()
        stamp.FromDatetime(TODAY)
        await sandbox_pb2_grpc.SandboxAdminStub(one).SetClock(
            sandbox_pb2.SetClockRequest(freeze_at=stamp), metadata=admin
        )
        provider = (
            await rio_pb2_grpc.RioServiceStub(one).ListProviders(
                rio_pb2.ListProvidersRequest(sector=common_pb2.SECTOR_PO, reference_date=to_proto_date(BEGIN)),
                metadata=admin,
            )
        ).providers[0]
        school = ((SANDBOX_KEY, key), (INSTITUTION_CODE, provider.institution_code))
        with grpc.insecure_channel(first.address) as sync_channel:
            lines = generate(Connection(sync_channel, key, provider.institution_code), 2 * PER_REPLICA, BEGIN)

        # Subscribed on the second replica; registering alternately on both.
        stream = rod_pb2_grpc.RodServiceStub(two).StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=school)
        await asyncio.wait_for(stream.initial_metadata(), timeout=10)
        registered: list[str] = []
        for index, line in enumerate(lines):
            replica = one if index % 2 == 0 else two
            answer = await rod_pb2_grpc.RodServiceStub(replica).RegisterEnrolment(
                rod_pb2.RegisterEnrolmentRequest(
                    idempotency_key=f"replica-{index}",
                    document_id=str(uuid.uuid4()),
                    pupil=rod_pb2.PupilId(bsn=line.bsn),
                    institution_code=provider.institution_code,
                    periods=[
                        rod_pb2.EnrolmentPeriod(
                            begin_date=to_proto_date(line.begin_date),
                            location_code=line.location_code,
                            course_code=line.course_code,
                        )
                    ],
                    sequence=1,
                ),
                metadata=school,
            )
            registered.append(answer.enrolment.enrolment_id)

        received: list[rod_pb2.Feedback] = []
        while len({f.enrolment_id for f in received} & set(registered)) < len(registered):
            received.append(await asyncio.wait_for(stream.read(), timeout=15))
        stream.cancel()
    cursors = [f.cursor for f in received]
    assert cursors == sorted(set(cursors)), "once each, in cursor order"
    assert [f.enrolment_id for f in received if f.trigger == rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE] == registered
