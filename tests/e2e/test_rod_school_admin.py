"""End to end with real processes: `sandbox up`, the school-admin client for one school, feedback pushed to it.

100 enrolments (10 in conflict with another school), BRP deaths and
emigrations and a RIO ended offering, a client killed mid-stream and restarted
(no gap, no duplicate), and, with the sandbox clock past the count date, a
final funding count that matches the feedback the school received.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

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
from services.common.caller import INSTITUTION_CODE, SANDBOX_KEY
from services.common.dates import to_proto_date
from tests.e2e.test_sandbox_process import ROOT, free_port, wait_until_serving
from tests.helpers.rod_world import mutation

pytestmark = pytest.mark.slow

# The sandbox's clock is frozen, so the test means the same on any real date.
TODAY = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
COUNT = dt.date(2027, 2, 1)  # the primary count date the enrolments touch
AFTER_WINDOW = dt.datetime(2027, 3, 2, 9, 0, tzinfo=dt.UTC)  # count date + 4 weeks + 1 day
BEGIN = "2026-08-15"
OTHER_BEGIN = "2026-08-01"  # the other school enrolled the shared pupils first
ENROLMENTS = 100
SHARED = 10
CLIENT = (sys.executable, "-m", "clients.school_admin")


def stamp(moment: dt.datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def inbox_records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a torn last line of a killed client
    return records


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Client:
    """The school-admin client as a real process."""

    def __init__(self, tmp_path: Path, address: str, key: str, school: str) -> None:
        self.env = {
            **os.environ,
            "SCHOOL_ADMIN_ADDRESS": address,
            "SCHOOL_ADMIN_SANDBOX_KEY": key,
            "SCHOOL_ADMIN_SCHOOL": school,
            "COLUMNS": "200",
        }
        self.tmp_path = tmp_path
        self.school = school
        self.inbox = tmp_path / f"{school}-inbox.jsonl"
        self.follower: subprocess.Popen[str] | None = None
        self.starts = 0

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*CLIENT, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start_following(self) -> None:
        self.starts += 1
        log = (self.tmp_path / f"{self.school}-follow-{self.starts}.log").open("w")
        self.follower = subprocess.Popen(
            [*CLIENT, "follow", "--inbox", str(self.inbox)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def kill(self) -> None:
        assert self.follower is not None
        self.follower.kill()  # SIGKILL: no chance to tidy up
        self.follower.wait(timeout=10)

    def stop(self) -> None:
        if self.follower is not None and self.follower.poll() is None:
            self.follower.terminate()
            self.follower.wait(timeout=10)


@pytest.fixture
def sandbox_process(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    """`sandbox up`, seeded, as a real process on SQLite and on PostgreSQL; yields (address, sandbox key)."""
    port = free_port()
    log_path = tmp_path / "sandbox.log"
    env = {**os.environ, "REGISTRY_DATABASE_URL": database_url, "REGISTRY_PORT": str(port)}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    address = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(address) as channel:
            wait_until_serving(channel, [""])
        wait_for("the sandbox key", lambda: "x-sandbox-key: sk_test_" in log_path.read_text(), timeout=120)
        match = re.search(r"x-sandbox-key: (sk_test_\S+)", log_path.read_text())
        assert match is not None
        yield address, match.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def latest_per_enrolment(records: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    latest: dict[str, dict[str, object]] = {}
    for record in records:
        latest[str(record["enrolment_id"])] = record
    return latest


def funded_on(record: dict[str, object], count_date: dt.date) -> bool:
    wanted = {"year": count_date.year, "month": count_date.month, "day": count_date.day}
    funding = record.get("funding", [])
    assert isinstance(funding, list)
    return any(d.get("count_date") == wanted and d.get("funded", False) for d in funding)


def test_a_school_admin_package_receives_all_feedback_exactly_once(
    sandbox_process: tuple[str, str], tmp_path: Path
) -> None:
    address, key = sandbox_process
    channel = grpc.insecure_channel(address)
    admin = ((SANDBOX_KEY, key),)
    sandbox_pb2_grpc.SandboxAdminStub(channel).SetClock(
        sandbox_pb2.SetClockRequest(freeze_at=stamp(TODAY)), metadata=admin
    )
    rio = rio_pb2_grpc.RioServiceStub(channel)
    schools = rio.ListProviders(
        rio_pb2.ListProvidersRequest(sector=common_pb2.SECTOR_PO, reference_date=to_proto_date(TODAY.date())),
        metadata=admin,
    ).providers
    ours, theirs = schools[0].institution_code, schools[1].institution_code
    client, other = Client(tmp_path, address, key, ours), Client(tmp_path, address, key, theirs)

    # The other school enrolled the first 10 pupils earlier: our enrolments of them are in conflict.
    other.run("register", "--generate", str(SHARED), "--begin", OTHER_BEGIN, "--run-id", "other")

    client.start_following()
    registering = subprocess.Popen(
        [*CLIENT, "register", "--generate", str(ENROLMENTS), "--begin", BEGIN, "--run-id", "ours"],
        cwd=ROOT,
        env=client.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        # Kill the package mid-stream, then start it again on the same inbox.
        wait_for("some feedback", lambda: len(inbox_records(client.inbox)) >= 20)
        client.kill()
        at_kill = len(inbox_records(client.inbox))
        client.start_following()
        assert registering.wait(timeout=120) == 0

        def registered() -> set[str]:
            return {
                str(r["enrolment_id"])
                for r in inbox_records(client.inbox)
                if r.get("trigger") == "FEEDBACK_TRIGGER_SCHOOL_MESSAGE"
            }

        wait_for("feedback for every enrolment", lambda: len(registered()) == ENROLMENTS)
        assert at_kill < len(inbox_records(client.inbox))

        latest = latest_per_enrolment(inbox_records(client.inbox))
        conflicted = [
            r for r in latest.values() if any(s["code"] == "SBX-DOUBLE-ENROLMENT" for s in r.get("signals", []))
        ]  # type: ignore[union-attr]
        assert len(conflicted) == SHARED
        for record in conflicted:
            funding = record["funding"]
            assert isinstance(funding, list)
            assert funding[0]["reason_codes"] == ["SBX-SECOND-ENROLMENT"]

        # BRP: one shared pupil dies, one of ours only emigrates. RIO: our offering ends next summer.
        rod = rod_pb2_grpc.RodServiceStub(channel)
        ours_md = ((SANDBOX_KEY, key), (INSTITUTION_CODE, ours))
        enrolments = rod.ListEnrolments(
            rod_pb2.ListEnrolmentsRequest(institution_code=ours, page=common_pb2.PageRequest(page_size=500)),
            metadata=ours_md,
        ).enrolments
        shared_bsn = conflicted[0]["pupil"]["bsn"]  # type: ignore[index]
        only_ours = next(e for e in enrolments if e.enrolment_id not in {str(r["enrolment_id"]) for r in conflicted})
        brp = brp_pb2_grpc.BrpServiceStub(channel)
        for bsn, event, changes in (
            (shared_bsn, "nl.brp.overleden", "<Overlijden><Datum>2026-08-25</Datum></Overlijden>"),
            (
                only_ours.pupil.bsn,
                "nl.brp.verhuisd.naar-buitenland",
                "<VerblijfBuitenland><Land>9089</Land><DatumAanvang>2026-08-26</DatumAanvang></VerblijfBuitenland>",
            ),
        ):
            person = brp.GetPerson(brp_pb2.GetPersonRequest(bsn=str(bsn)), metadata=admin)
            effective = dt.date(2026, 8, 25)
            answer = brp.SubmitChanges(
                brp_pb2.SubmitChangesRequest(
                    xml_document=mutation(str(bsn), person.last_sequence + 1, event, effective, changes)
                ),
                metadata=admin,
            )
            assert answer.results[0].outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED, answer
        provider = rio.ListProviders(rio_pb2.ListProvidersRequest(institution_code=ours), metadata=admin).providers[0]
        offering = rio.ListCourseOfferings(
            rio_pb2.ListCourseOfferingsRequest(provider_code=provider.provider_code), metadata=admin
        ).offerings[0]
        rio.EndCourseOffering(
            rio_pb2.EndRecordRequest(code=offering.offering_id, end_date=to_proto_date(dt.date(2027, 6, 30))),
            metadata=admin,
        )

        def triggered(trigger: str) -> list[dict[str, object]]:
            return [r for r in inbox_records(client.inbox) if r.get("trigger") == trigger]

        wait_for("BRP feedback", lambda: len(triggered("FEEDBACK_TRIGGER_BRP_CHANGE")) >= 2)
        wait_for(
            "RIO feedback",
            lambda: len({str(r["enrolment_id"]) for r in triggered("FEEDBACK_TRIGGER_RIO_CHANGE")}) == ENROLMENTS,
        )
        by_pupil = {r["pupil"]["bsn"]: r for r in triggered("FEEDBACK_TRIGGER_BRP_CHANGE")}  # type: ignore[index]
        assert by_pupil[shared_bsn]["funding"][0]["reason_codes"] == ["SBX-DECEASED"]  # type: ignore[index]
        assert by_pupil[only_ours.pupil.bsn]["funding"][0]["reason_codes"] == ["SBX-ABROAD"]  # type: ignore[index]
        for record in triggered("FEEDBACK_TRIGGER_RIO_CHANGE"):
            assert "SBX-COURSE-ENDED" in [s["code"] for s in record["signals"]]  # type: ignore[union-attr]

        # The other school hears of the death of its pupil, and of nothing about our offering.
        theirs_md = ((SANDBOX_KEY, key), (INSTITUTION_CODE, theirs))
        their_feedback = list(
            _drain(rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=theirs_md, timeout=3))
        )
        assert {f.trigger for f in their_feedback} == {
            rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE,
            rod_pb2.FEEDBACK_TRIGGER_OTHER_ENROLMENT,
            rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE,
        }
        assert [f.pupil.bsn for f in their_feedback if f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE] == [shared_bsn]

        # Past the correction window the count is final, and the school is told so.
        sandbox_pb2_grpc.SandboxAdminStub(channel).SetClock(
            sandbox_pb2.SetClockRequest(freeze_at=stamp(AFTER_WINDOW)), metadata=admin
        )
        wait_for(
            "final decisions",
            lambda: len({str(r["enrolment_id"]) for r in triggered("FEEDBACK_TRIGGER_COUNT_DATE")}) == ENROLMENTS,
        )
        count = rod.GetFundingCount(
            rod_pb2.GetFundingCountRequest(institution_code=ours, count_date=to_proto_date(COUNT)), metadata=ours_md
        )
        assert count.status == rod_pb2.FUNDING_STATUS_FINAL
        latest = latest_per_enrolment(inbox_records(client.inbox))
        funded = sorted(eid for eid, record in latest.items() if funded_on(record, COUNT))
        assert sorted(count.funded_enrolment_ids) == funded
        assert 0 < count.funded_pupils <= ENROLMENTS - SHARED - 1

        # No gap, no duplicate: the inbox holds exactly the school's feedback, in order.
        everything = [
            f.cursor for f in _drain(rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=ours_md, timeout=3))
        ]
        assert [r["cursor"] for r in inbox_records(client.inbox)] == everything
    finally:
        client.stop()
        if registering.poll() is None:
            registering.kill()
        channel.close()


def _drain(call: Iterator[rod_pb2.Feedback]) -> Iterator[rod_pb2.Feedback]:
    """Everything a stream sends before its deadline (the backlog), without the deadline error."""
    try:
        yield from call
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
            raise
