"""`sandbox replay run`: plays a recorded day against a sandbox over the public gRPC API and measures it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from clients.replay import target
from clients.replay.accounting import Arrival, Ledger, Sent, Verdict, cause_of
from clients.replay.metrics import Metrics
from clients.replay.schedule import Clock, Launched, MonotonicClock, Send, run_closed, run_open, speed_offsets
from clients.replay.schedule import rate_offsets as fixed_rate_offsets
from clients.replay.traffic import Day, Message, Period
from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, rod_pb2, rod_pb2_grpc
from services.common.caller import INSTITUTION_CODE
from services.common.dates import from_timestamp, to_proto_date
from services.common.errors import read_details

RPC_OF = {
    "register": "RegisterEnrolment",
    "change": "ChangeEnrolment",
    "end": "EndEnrolment",
    "delete": "DeleteEnrolment",
    "brp": "SubmitChanges",
}
FEEDBACK_GROUP = {
    rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE: "feedback.school",
    rod_pb2.FEEDBACK_TRIGGER_OTHER_ENROLMENT: "feedback.other_enrolment",
    rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE: "feedback.brp",
}
# Per-call deadline: a hung server shows up as DEADLINE_EXCEEDED errors, not as a hung replay.
CALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class RunOptions:
    address: str
    speed: float | None = 100.0
    rate: float | None = None
    closed: bool = False
    concurrency: int = 8
    duration: float = 900.0
    settle: float = 30.0
    setup_concurrency: int = 8
    sandbox_key: str = ""

    @property
    def mode(self) -> str:
        if self.closed:
            return f"closed, concurrency {self.concurrency}"
        if self.rate:
            return f"open, {self.rate:g} messages/s"
        return f"open, {self.speed:g}x real speed"


@dataclass
class Progress:
    """What the live display shows; updated as the run goes."""

    phase: str = "starting"
    planned: int = 0
    sent: int = 0
    answered: int = 0
    errors: int = 0
    feedback: int = 0
    started: float = 0.0
    metrics: Metrics = field(default_factory=Metrics)


@dataclass
class RunResult:
    options: RunOptions
    day: Day
    metrics: Metrics
    ledger: Ledger
    verdict: Verdict
    sandbox_id: str
    day_seconds: float
    not_sent: int
    notes: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """The JSON result (without SLOs): counts, throughput, latencies, errors, correctness."""
        timed = [s for s in self.ledger.sent.values() if s.message.phase == "day"]
        statuses: dict[str, int] = {}
        for record in timed:
            statuses[record.status or "not_sent"] = statuses.get(record.status or "not_sent", 0) + 1
        sent = sum(1 for s in timed if s.status)
        answered = sum(1 for s in timed if s.status in ("ok", "refused", "error"))
        span = max(self.day_seconds, 1e-9)
        offered = len(timed) / span if not self.options.closed else 0.0
        return {
            "file": {"date": self.day.header.date.isoformat(), "counts": self.day.header.counts},
            "mode": self.options.mode,
            "address": self.options.address,
            "sandbox_id": self.sandbox_id,
            "duration_s": round(self.day_seconds, 3),
            "messages": {"planned": len(timed), "sent": sent, "not_sent": self.not_sent, "by_status": statuses},
            "throughput": {
                "offered_per_s": round(offered, 2),
                "sent_per_s": round(sent / span, 2),
                "achieved_per_s": round(answered / span, 2),
            },
            "errors": {
                "count": sum(self.metrics.errors.values()),
                "rate": round(sum(self.metrics.errors.values()) / max(sent, 1), 6),
                "by_status_and_reason": dict(self.metrics.errors),
            },
            "refused": dict(self.metrics.refused),
            "latency_ms": self.metrics.summaries(),
            "correctness": self.verdict.to_json(),
            "notes": self.notes,
        }


class Replayer:
    """Sends a day's messages and follows every school's feedback stream; the clock is injectable."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        day: Day,
        sandbox_key: str,
        *,
        clock: Clock | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.channel = channel
        self.day = day
        self.key = sandbox_key
        self.clock = clock or MonotonicClock()
        self.rod = rod_pb2_grpc.RodServiceStub(channel)
        self.brp = brp_pb2_grpc.BrpServiceStub(channel)
        self.progress = progress or Progress()
        self.metrics = self.progress.metrics
        self.ledger = Ledger()
        # Each school's sector, for the fields ROD requires of it (mbo leerweg and intensity, ho mode of study).
        self.sectors = {school.institution_code: school.sector for school in day.header.schools}
        self.enrolment_ids: dict[str, str] = {}
        self.last_of: dict[str, asyncio.Task[None]] = {}
        self.day_start = 0.0
        self.streams: list[asyncio.Task[None]] = []
        self.arrived = asyncio.Event()

    # ---- feedback streams ----

    async def listen(self) -> None:
        """Subscribes to each school's feedback stream, as that school's package would, from the start.

        The stream serves everything after cursor 0 and then each new feedback as it commits, so nothing
        sent after this call can be missed, whenever the server gets round to the subscription.
        """
        for school in self.day.header.schools:
            self.streams.append(asyncio.create_task(self._follow(school.institution_code)))
        await asyncio.sleep(0)

    async def _follow(self, school: str) -> None:
        call = self.rod.StreamFeedback(
            rod_pb2.StreamFeedbackRequest(after_cursor=0),
            metadata=(*target.metadata(self.key), (INSTITUTION_CODE, school)),
        )
        try:
            async for feedback in call:
                now, wall = self.clock.now(), time.time()
                self.ledger.arrivals.append(Arrival(school, feedback, now, wall))
                if self.day_start:  # setup feedback is not part of the day's throughput
                    self.metrics.feedback_at.append(now - self.day_start)
                lag = wall - from_timestamp(feedback.committed_at).timestamp()
                self.metrics.record("stream_lag", max(lag, 0.0))
                self._record_feedback(school, feedback, now)
                self.progress.feedback += 1
                self.arrived.set()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.metrics.errors[f"StreamFeedback {error.code().name}"] += 1

    def _record_feedback(self, school: str, feedback: rod_pb2.Feedback, now: float) -> None:
        record = self.ledger.sent.get(cause_of(feedback))
        if record is None or record.message.phase != "day" or not record.intended:
            return
        at = now - self.day_start
        self.metrics.record("feedback", now - record.intended, at)
        group = FEEDBACK_GROUP.get(feedback.cause.trigger or feedback.trigger)
        if group:
            self.metrics.record(group, now - record.intended, at)

    async def stop_listening(self) -> None:
        for task in self.streams:
            task.cancel()
        await asyncio.gather(*self.streams, return_exceptions=True)

    # ---- sending ----

    def prepare(self, messages: list[Message]) -> None:
        for message in messages:
            self.ledger.sent[message.id] = Sent(message)

    def sender(self, messages: list[Message]) -> Send:
        """send(index, intended) for the scheduler: waits for the previous message about the same
        enrolment (or person) to be answered, so each one's sequence stays in order, then calls."""

        async def send(index: int, intended: float) -> None:
            message = messages[index]
            previous = self.last_of.get(message.ref)
            current = asyncio.current_task()
            assert current is not None
            self.last_of[message.ref] = current
            if previous is not None and previous is not current:
                await asyncio.wait([previous])
            await self._send(message, intended)

        return send

    async def _send(self, message: Message, intended: float) -> None:
        record = self.ledger.sent[message.id]
        record.intended = intended
        rpc = RPC_OF[message.kind]
        if message.kind != "register" and message.kind != "brp" and message.ref not in self.enrolment_ids:
            record.status = "skipped"
            self.metrics.refused[f"{rpc} SKIPPED (its registration failed)"] += 1
            return
        record.sent = self.clock.now()
        self.progress.sent += 1
        if message.phase == "day":
            self.metrics.sent_at.append(record.sent - self.day_start)
        try:
            await self._call(message, record)
            record.status = "ok"
        except grpc.aio.AioRpcError as error:
            reason, _violations = read_details(error)
            label = f"{rpc} {error.code().name} {reason}".strip()
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                # A functional refusal is a normal answer for the register (and gets REJECTED feedback).
                record.status = "refused"
                self.metrics.refused[label] += 1
            else:
                record.status = "error"
                record.code = error.code().name
                self.metrics.errors[label] += 1
                self.progress.errors += 1
        record.answered = self.clock.now()
        self.progress.answered += 1
        if message.phase == "day":
            at = record.answered - self.day_start
            self.metrics.answered_at.append(at)
            self.metrics.record(f"call.{rpc}", record.answered - intended, at)
            self.metrics.record("calls", record.answered - intended, at)
            self.metrics.record(f"service.{rpc}", record.answered - record.sent)

    async def _call(self, message: Message, record: Sent) -> None:
        school = (*target.metadata(self.key), (INSTITUTION_CODE, message.school))
        if message.kind == "brp":
            answer = await self.brp.SubmitChanges(
                brp_pb2.SubmitChangesRequest(idempotency_key=message.id, xml_document=message.xml.encode()),
                metadata=target.metadata(self.key),
                timeout=CALL_TIMEOUT,
            )
            for result in answer.results:
                if result.outcome not in (brp_pb2.MESSAGE_OUTCOME_APPLIED, brp_pb2.MESSAGE_OUTCOME_HELD):
                    name = brp_pb2.MessageOutcome.Name(result.outcome).removeprefix("MESSAGE_OUTCOME_")
                    self.metrics.refused[f"SubmitChanges {name} {result.reason_code}".strip()] += 1
            return
        if message.kind == "register":
            answer = await self.rod.RegisterEnrolment(
                rod_pb2.RegisterEnrolmentRequest(
                    idempotency_key=message.id,
                    document_id=message.id,
                    pupil=rod_pb2.PupilId(bsn=message.bsn),
                    institution_code=message.school,
                    periods=[_period(p) for p in message.periods],
                    sequence=message.sequence or 1,
                    **_SECTOR_FIELDS.get(self.sectors.get(message.school, ""), {}),  # type: ignore[arg-type]
                ),
                metadata=school,
                timeout=CALL_TIMEOUT,
            )
            self.enrolment_ids[message.ref] = answer.enrolment.enrolment_id
            record.enrolment_id = answer.enrolment.enrolment_id
            return
        enrolment_id = self.enrolment_ids[message.ref]
        record.enrolment_id = enrolment_id
        if message.kind == "change":
            await self.rod.ChangeEnrolment(
                rod_pb2.ChangeEnrolmentRequest(
                    idempotency_key=message.id,
                    document_id=message.id,
                    enrolment_id=enrolment_id,
                    periods=[_period(p) for p in message.periods],
                    sequence=message.sequence,
                    **_SECTOR_FIELDS.get(self.sectors.get(message.school, ""), {}),  # type: ignore[arg-type]
                ),
                metadata=school,
                timeout=CALL_TIMEOUT,
            )
        elif message.kind == "end":
            await self.rod.EndEnrolment(
                rod_pb2.EndEnrolmentRequest(
                    idempotency_key=message.id,
                    document_id=message.id,
                    enrolment_id=enrolment_id,
                    end_date=to_proto_date(message.end_date),
                    sequence=message.sequence,
                    end_reason_code=_END_REASONS.get(self.sectors.get(message.school, ""), ""),
                ),
                metadata=school,
                timeout=CALL_TIMEOUT,
            )
        else:
            await self.rod.DeleteEnrolment(
                rod_pb2.DeleteEnrolmentRequest(
                    idempotency_key=message.id, document_id=message.id, enrolment_id=enrolment_id
                ),
                metadata=school,
                timeout=CALL_TIMEOUT,
            )

    # ---- phases ----

    async def run_setup(self, concurrency: int, duration: float) -> int:
        """The enrolments that exist before the day, sent closed-model; returns how many were not sent."""
        setup = self.day.setup
        self.progress.phase = "setup"
        self.progress.planned = len(setup)
        self.prepare(setup)
        launched = await run_closed(
            len(setup), self.sender(setup), self.clock, duration=duration, concurrency=concurrency
        )
        return launched.not_sent

    async def run_day(self, options: RunOptions, duration: float) -> Launched:
        timed = self.day.timed
        self.prepare(timed)
        self.progress.phase = "day"
        self.progress.planned = len(timed)
        self.progress.sent = self.progress.answered = 0
        self.day_start = self.clock.now()
        self.progress.started = self.day_start
        send = self.sender(timed)
        if options.closed:
            return await run_closed(len(timed), send, self.clock, duration=duration, concurrency=options.concurrency)
        if options.rate:
            offsets = fixed_rate_offsets(len(timed), options.rate)
        else:
            assert options.speed is not None
            offsets = speed_offsets([m.at for m in timed if m.at is not None], options.speed)
        return await run_open(offsets, send, self.clock, duration=duration)

    async def settle(self, launched: Launched, seconds: float) -> None:
        """Waits (bounded) for calls still in flight and for every answered message's own feedback."""
        self.progress.phase = "settling"
        deadline = self.clock.now() + seconds
        if launched.tasks:
            await asyncio.wait(launched.tasks, timeout=max(0.0, deadline - self.clock.now()))
        while self.ledger.own_feedback_missing() and self.clock.now() < deadline:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout=min(1.0, max(0.01, deadline - self.clock.now())))
        # Feedback caused by BRP messages follows ROD's own BRP stream: wait until the streams go quiet.
        quiet_since = self.clock.now()
        while self.clock.now() < deadline and self.clock.now() - quiet_since < 2.0:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout=0.5)
                quiet_since = self.clock.now()
            except TimeoutError:
                pass

    async def trail(self) -> list[rod_pb2.Feedback] | None:
        """Every feedback ROD wrote in this sandbox (ListFeedback as the sandbox admin), or None if unsupported."""
        listed: list[rod_pb2.Feedback] = []
        token = ""
        try:
            while True:
                page = await self.rod.ListFeedback(
                    rod_pb2.ListFeedbackRequest(page=common_pb2.PageRequest(page_size=500, page_token=token)),
                    metadata=target.metadata(self.key),
                    timeout=CALL_TIMEOUT,
                )
                listed.extend(page.feedback)
                token = page.page.next_page_token
                if not token:
                    return listed
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise

    async def funding_counts(self) -> dict[tuple[str, dt.date], list[str]]:
        counts: dict[tuple[str, dt.date], list[str]] = {}
        for school, count_date in sorted(self.ledger.count_dates()):
            answer = await self.rod.GetFundingCount(
                rod_pb2.GetFundingCountRequest(institution_code=school, count_date=to_proto_date(count_date)),
                metadata=target.metadata(self.key),
                timeout=CALL_TIMEOUT,
            )
            counts[(school, count_date)] = list(answer.funded_enrolment_ids)
        return counts


# What the replayed schools send for the fields their sector requires: mbo BOL voltijd, ho voltijd.
_SECTOR_FIELDS = {
    "mbo": {"mbo_leerweg": rod_pb2.MBO_LEERWEG_BOL, "mbo_intensity": rod_pb2.MBO_INTENSITY_VOLTIJD},
    "ho": {"ho_study_mode": rod_pb2.HO_STUDY_MODE_VOLTIJD},
}
# Mbo ends with one of DUO's reden uitstroom codes; the recorded day does not say why, so "07" (onbekend).
_END_REASONS = {"mbo": "07"}


def _period(period: Period) -> rod_pb2.EnrolmentPeriod:
    return rod_pb2.EnrolmentPeriod(
        begin_date=to_proto_date(period.begin),
        end_date=to_proto_date(period.end),
        location_code=period.location,
        course_code=period.course,
        year=period.year,
    )


async def replay(
    day: Day, options: RunOptions, *, progress: Progress | None = None, clock: Clock | None = None
) -> RunResult:
    """The whole run: sandbox, streams, setup, the day, settle, accounting. Bounded by duration + settle."""
    progress = progress or Progress()
    notes: list[str] = []
    async with grpc.aio.insecure_channel(options.address) as channel:
        header = day.header
        if options.sandbox_key:
            key, sandbox_id = options.sandbox_key, "(given)"
            notes.append("ran in a given sandbox: counts include whatever it held before")
        else:
            progress.phase = "seeding a fresh sandbox"
            sandbox_id, key = await target.fresh_sandbox(
                channel,
                date=header.date,
                seed_size=header.seed_size,
                register_seed=header.register_seed,
                name=f"replay-{header.date}",
                synthetic_bsns=header.synthetic_bsns,
            )
        progress.phase = "checking the sandbox"
        persons, schools = await target.read_world(channel, key, header.date)
        codes = {s.institution_code for s in header.schools}
        found = target.fingerprint(persons, [s for s in schools if s.institution_code in codes])
        if found != header.fingerprint:
            raise ValueError(
                f"the sandbox's persons and schools (fingerprint {found}) are not those the day was recorded"
                f" for ({header.fingerprint}): seed size {header.seed_size}, register seed {header.register_seed},"
                f" date {header.date}"
            )
        replayer = Replayer(channel, day, key, clock=clock, progress=progress)
        await replayer.listen()
        began = replayer.clock.now()
        try:
            setup_left = await replayer.run_setup(options.setup_concurrency, options.duration)
            if setup_left:
                notes.append(f"{setup_left} setup messages not sent: the duration ran out during setup")
            remaining = max(0.0, options.duration - (replayer.clock.now() - began))
            launched = await replayer.run_day(options, remaining)
            day_seconds = replayer.clock.now() - replayer.day_start
            await replayer.settle(launched, options.settle)
            if launched.tasks:
                day_seconds = max(
                    day_seconds,
                    max((s.answered for s in replayer.ledger.sent.values()), default=0) - replayer.day_start,
                )
            progress.phase = "checking"
            trail = await replayer.trail()
            if trail is None:
                notes.append("ListFeedback is not implemented by this server: the cause trail was not checked")
            counts = await replayer.funding_counts()
        finally:
            await replayer.stop_listening()
        verdict = replayer.ledger.check(trail=trail, counts=counts, schools=codes)
        if launched.not_sent:
            notes.append(f"{launched.not_sent} messages of the day not sent: --duration ran out")
        progress.phase = "done"
        return RunResult(
            options=options,
            day=day,
            metrics=replayer.metrics,
            ledger=replayer.ledger,
            verdict=verdict,
            sandbox_id=sandbox_id,
            day_seconds=day_seconds,
            not_sent=launched.not_sent,
            notes=notes,
        )
