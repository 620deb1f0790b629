"""Exactly-once accounting by cause: what was sent, what feedback arrived where, and what should have.

Keys: every feedback names its cause (Feedback.cause.id: the school's document id, the BRP message id,
"rio:<cursor>", "teldatum:<date>"). One cause gives at most one feedback per enrolment, so
(cause id, enrolment id) identifies a feedback independently of its cursor.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clients.replay.traffic import Message
from services._gen.registry.v1 import rod_pb2
from services.common.dates import from_proto_date

SCHOOL_KINDS = ("register", "change", "end", "delete")
# BRP events that change a pupil's funding: the enrolment's school must hear of them.
FUNDING_EVENTS = ("overleden", "verhuisd.emigratie")
# Problems listed in the result; the counts say how many there were in all.
SHOWN = 20


@dataclass
class Sent:
    """One message of the traffic and what became of it (times on the monotonic clock)."""

    message: Message
    intended: float = 0.0
    sent: float = 0.0
    answered: float = 0.0
    # "ok", "refused" (a functional refusal: FAILED_PRECONDITION), "error", "skipped" (its enrolment was
    # never registered), or "" (not sent: the duration ran out).
    status: str = ""
    enrolment_id: str = ""
    code: str = ""


@dataclass(frozen=True)
class Arrival:
    stream: str  # the school whose stream delivered it
    feedback: rod_pb2.Feedback
    at: float  # monotonic
    wall: float  # time.time(), for the stream lag against committed_at


def cause_of(feedback: rod_pb2.Feedback) -> str:
    """The feedback's cause id; for a server that predates Feedback.cause, the document id of a school message."""
    if feedback.cause.id:
        return feedback.cause.id
    if feedback.trigger == rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE:
        return feedback.document_id
    return ""


@dataclass
class Verdict:
    expected: int = 0
    arrived: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    foreign_causes: Counter[str] = field(default_factory=Counter)
    funding_checked: int = 0
    trail_checked: bool = False

    def fail(self, kind: str, example: str) -> None:
        self.problems[kind] += 1
        if len(self.examples) < SHOWN:
            self.examples.append(f"{kind}: {example}")

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "expected_feedback": self.expected,
            "feedback_arrived": self.arrived,
            "problems": dict(self.problems),
            "examples": self.examples,
            "foreign_causes": dict(self.foreign_causes),
            "funding_counts_checked": self.funding_checked,
            "cause_trail_checked": self.trail_checked,
        }


@dataclass
class Ledger:
    sent: dict[str, Sent] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)

    def arrived_for(self, cause_id: str) -> list[Arrival]:
        return self._by_cause().get(cause_id, [])

    def _by_cause(self) -> dict[str, list[Arrival]]:
        index: dict[str, list[Arrival]] = defaultdict(list)
        for arrival in self.arrivals:
            index[cause_of(arrival.feedback)].append(arrival)
        return index

    def own_feedback_missing(self) -> int:
        """How many answered school messages still wait for their own feedback (for the settle phase)."""
        by_cause = self._by_cause()
        missing = 0
        for record in self.sent.values():
            answered = record.message.kind in SCHOOL_KINDS and record.status in ("ok", "refused")
            if answered and not any(a.stream == record.message.school for a in by_cause.get(record.message.id, ())):
                missing += 1
        return missing

    def check(
        self,
        *,
        trail: Iterable[rod_pb2.Feedback] | None,
        counts: Mapping[tuple[str, dt.date], Iterable[str]],
        schools: set[str],
    ) -> Verdict:
        """Every expected feedback arrived exactly once; none twice; nothing the register did not send;
        each school's funded enrolments per count date equal what its feedback said."""
        verdict = Verdict(arrived=len(self.arrivals))
        by_cause = self._by_cause()

        # Nothing twice: not the same cursor, not the same (cause, enrolment) under two cursors.
        cursors = Counter(a.feedback.cursor for a in self.arrivals)
        for cursor, times in cursors.items():
            if times > 1:
                verdict.fail("duplicate", f"feedback #{cursor} arrived {times} times")
        keys: dict[tuple[str, str, str], set[int]] = defaultdict(set)
        for arrival in self.arrivals:
            cause = cause_of(arrival.feedback)
            if not cause:
                verdict.fail(
                    "no_cause",
                    f"feedback #{arrival.feedback.cursor} names no cause (the server predates Feedback.cause)",
                )
                continue
            keys[(cause, arrival.feedback.enrolment_id, arrival.stream)].add(arrival.feedback.cursor)
            if arrival.feedback.institution_code != arrival.stream:
                verdict.fail(
                    "wrong_school",
                    f"#{arrival.feedback.cursor} for {arrival.feedback.institution_code} on {arrival.stream}'s stream",
                )
        for (cause, enrolment, school), seen in keys.items():
            if len(seen) > 1:
                verdict.fail(
                    "duplicate_by_cause", f"{cause} gave enrolment {enrolment} at {school} {len(seen)} feedbacks"
                )
            if cause not in self.sent:
                verdict.foreign_causes[cause.split(":")[0] if ":" in cause else "unknown"] += 1

        # The school's own message: exactly one feedback, at that school, about that enrolment.
        registered_before: dict[str, list[Sent]] = defaultdict(list)
        for record in self.sent.values():
            message = record.message
            if message.kind not in SCHOOL_KINDS or record.status not in ("ok", "refused"):
                continue
            verdict.expected += 1
            own = [a for a in by_cause.get(message.id, ()) if a.stream == message.school]
            if record.status == "ok":
                own = [a for a in own if a.feedback.enrolment_id == record.enrolment_id]
            else:
                own = [a for a in own if a.feedback.outcome == rod_pb2.FEEDBACK_OUTCOME_REJECTED]
            if not own:
                verdict.fail(
                    "missing", f"{message.kind} {message.id} at {message.school} ({record.status}): no feedback"
                )
            elif len(own) > 1:
                verdict.fail("duplicate", f"{message.kind} {message.id} at {message.school}: {len(own)} feedbacks")
            if message.kind == "register" and record.status == "ok":
                registered_before[message.bsn].append(record)

        # A death or emigration of a pupil enrolled (and never ended or deleted) tells that pupil's school.
        touched = {r.message.ref for r in self.sent.values() if r.message.kind in ("end", "delete")}
        for record in self.sent.values():
            message = record.message
            if message.kind != "brp" or record.status != "ok" or message.event not in FUNDING_EVENTS:
                continue
            for registration in registered_before.get(message.bsn, ()):
                if registration.message.ref in touched or registration.answered > record.sent:
                    continue
                verdict.expected += 1
                school = registration.message.school
                got = [
                    a
                    for a in by_cause.get(message.id, ())
                    if a.stream == school and a.feedback.enrolment_id == registration.enrolment_id
                ]
                if not got:
                    verdict.fail("missing", f"BRP {message.event} {message.id}: no feedback at {school}")

        # The register's own trail (ListFeedback): everything it sent to our schools arrived, nothing else did.
        if trail is not None:
            verdict.trail_checked = True
            arrived = set(cursors)
            listed = set()
            for feedback in trail:
                listed.add(feedback.cursor)
                if feedback.institution_code in schools and feedback.cursor not in arrived:
                    verdict.fail(
                        "missing",
                        f"#{feedback.cursor} ({cause_of(feedback) or 'no cause'}) for "
                        f"{feedback.institution_code} never arrived on its stream",
                    )
            for cursor in arrived - listed:
                verdict.fail("not_in_trail", f"#{cursor} arrived but ListFeedback does not list it")

        # Funding: the latest decision each enrolment's feedback gave, per count date, equals ROD's count.
        latest: dict[str, rod_pb2.Feedback] = {}
        for arrival in sorted(self.arrivals, key=lambda a: a.feedback.cursor):
            if arrival.feedback.outcome != rod_pb2.FEEDBACK_OUTCOME_REJECTED and arrival.feedback.enrolment_id:
                latest[arrival.feedback.enrolment_id] = arrival.feedback
        said: dict[tuple[str, dt.date], set[str]] = defaultdict(set)
        for enrolment_id, feedback in latest.items():
            for decision in feedback.funding:
                count_date = from_proto_date(decision.count_date)
                assert count_date is not None
                key = (feedback.institution_code, count_date)
                said.setdefault(key, set())
                if decision.funded:
                    said[key].add(enrolment_id)
        for key, funded in counts.items():
            verdict.funding_checked += 1
            expected = said.get(key, set())
            actual = set(funded)
            if actual != expected:
                verdict.fail(
                    "funding_count",
                    f"{key[0]} on {key[1]}: ROD counts {len(actual)}, the feedback said {len(expected)}"
                    f" ({len(actual - expected)} counted without funded feedback,"
                    f" {len(expected - actual)} not counted)",
                )
        return verdict

    def count_dates(self) -> set[tuple[str, dt.date]]:
        """(school, count date) pairs the feedback spoke of: the counts to ask ROD for."""
        pairs = set()
        for arrival in self.arrivals:
            for decision in arrival.feedback.funding:
                count_date = from_proto_date(decision.count_date)
                if count_date is not None:
                    pairs.add((arrival.feedback.institution_code, count_date))
        return pairs
