"""The replayer's bookkeeping without a server: exactly-once by cause, funding counts, SLOs, the day's file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from clients.replay.accounting import Arrival, Ledger, Sent
from clients.replay.report import parse_slo
from clients.replay.traffic import Message, Period, build_day, read_day, season, write_day
from services._gen.registry.v1 import rod_pb2
from services.brp_sync.rules import PersonState
from services.common.dates import to_proto_date

COUNT_DATE = dt.date(2027, 10, 1)


def _registration(doc: str, school: str = "25BE", ref: str = "e1") -> Message:
    period = Period(dt.date(2027, 9, 1), "100X001", "BAO", 1)
    return Message(
        "register", "day", dt.datetime(2027, 9, 1, 8, tzinfo=dt.UTC), ref, doc, school, "999970008", (period,), 1
    )


def _feedback(cursor: int, cause: str, enrolment: str, school: str = "25BE", funded: bool = True) -> rod_pb2.Feedback:
    return rod_pb2.Feedback(
        cursor=cursor,
        institution_code=school,
        enrolment_id=enrolment,
        outcome=rod_pb2.FEEDBACK_OUTCOME_APPROVED,
        trigger=rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE,
        cause=rod_pb2.FeedbackCause(trigger=rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE, id=cause),
        funding=[rod_pb2.FundingDecision(count_date=to_proto_date(COUNT_DATE), funded=funded)],
    )


def _ledger(*arrivals: rod_pb2.Feedback) -> Ledger:
    ledger = Ledger()
    ledger.sent["doc-1"] = Sent(_registration("doc-1"), status="ok", enrolment_id="enr-1")
    ledger.arrivals.extend(Arrival(f.institution_code, f, 1.0, 1.0) for f in arrivals)
    return ledger


def test_one_feedback_per_answered_message_and_a_matching_count_passes() -> None:
    ledger = _ledger(_feedback(1, "doc-1", "enr-1"))

    verdict = ledger.check(
        trail=[_feedback(1, "doc-1", "enr-1")], counts={("25BE", COUNT_DATE): ["enr-1"]}, schools={"25BE"}
    )

    assert verdict.passed, verdict.examples
    assert verdict.expected == 1 and verdict.funding_checked == 1


def test_a_feedback_delivered_twice_fails() -> None:
    ledger = _ledger(_feedback(1, "doc-1", "enr-1"), _feedback(1, "doc-1", "enr-1"))

    verdict = ledger.check(trail=None, counts={}, schools={"25BE"})

    assert not verdict.passed
    assert verdict.problems["duplicate"] >= 1


def test_the_same_cause_and_enrolment_under_two_cursors_fails() -> None:
    ledger = _ledger(_feedback(1, "doc-1", "enr-1"), _feedback(2, "doc-1", "enr-1"))

    verdict = ledger.check(trail=None, counts={}, schools={"25BE"})

    assert verdict.problems["duplicate_by_cause"] == 1


def test_a_missing_feedback_fails_and_so_does_one_the_register_listed_but_the_stream_never_gave() -> None:
    verdict = _ledger().check(trail=[_feedback(7, "brp-1", "enr-9")], counts={}, schools={"25BE"})

    assert verdict.problems["missing"] == 2
    assert any("#7" in example for example in verdict.examples)


def test_a_funding_count_that_differs_from_the_feedback_fails() -> None:
    ledger = _ledger(_feedback(1, "doc-1", "enr-1", funded=False))

    verdict = ledger.check(trail=None, counts={("25BE", COUNT_DATE): ["enr-1"]}, schools={"25BE"})

    assert verdict.problems["funding_count"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("feedback<50ms", "unknown metric"),
        ("feedback.p99 50ms", "write METRIC<VALUE"),
        ("errors<0.1ms", "measured in %"),
        ("feedback.p99<5%", "ms, s or us"),
        ("feedback.p101<5ms", "between 0 and 100"),
    ],
)
def test_a_bad_slo_is_refused_with_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slo(text)


def test_slos_compare_in_the_unit_given() -> None:
    figures = {
        "latency_ms": {"feedback.brp": {"count": 3, "p99.9": 120.0}},
        "errors": {"rate": 0.002},
    }
    assert parse_slo("feedback.brp.p99.9<0.2s").check(figures)["passed"]
    assert not parse_slo("feedback.brp.p99.9<100ms").check(figures)["passed"]
    assert not parse_slo("errors<0.1%").check(figures)["passed"]  # 0.2 %
    assert not parse_slo("feedback.school.p99<1s").check(figures)["passed"]  # nothing measured: not a pass


def _persons(count: int) -> list[PersonState]:
    from services.brp_sync.seeding import seed_persons

    return seed_persons("small", 7, dt.date(2027, 9, 1))[:count]


def _day(date: dt.date) -> object:
    from clients.replay.traffic import School

    schools = [
        School("11AA", "po", (("100X001", "BAO"),)),
        School("22BB", "po", (("100X002", "BAO"),)),
        School("33CC", "vo", (("100X003", "3001"), ("100X003", "3002"))),
    ]
    return build_day(
        date=date,
        seed=5,
        schools=schools,
        persons=_persons(360),
        brp=[],
        pupils_per_school=10,
        seed_size="small",
        register_seed=7,
        brp_source="none",
        fingerprint="x",
    )


def test_the_same_seed_gives_the_same_file_and_it_reads_back(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_day(_day(dt.date(2027, 9, 1)), first)  # type: ignore[arg-type]
    write_day(_day(dt.date(2027, 9, 1)), second)  # type: ignore[arg-type]

    assert first.read_bytes() == second.read_bytes()
    assert read_day(first) == _day(dt.date(2027, 9, 1))


def test_every_enrolment_message_follows_its_registration_with_rising_sequence_numbers() -> None:
    day = _day(dt.date(2027, 9, 1))
    registered: set[str] = set()
    sequence: dict[str, int] = {}
    for message in day.messages:  # type: ignore[attr-defined]
        if message.kind == "register":
            registered.add(message.ref)
            sequence[message.ref] = 1
        elif message.kind in ("change", "end"):
            assert message.ref in registered
            assert message.sequence > sequence[message.ref]
            sequence[message.ref] = message.sequence
        elif message.kind == "delete":
            assert message.ref in registered


def test_the_start_of_the_school_year_is_busier_than_an_ordinary_november_day() -> None:
    peak = len(_day(dt.date(2027, 9, 1)).timed)  # type: ignore[attr-defined]
    ordinary = len(_day(dt.date(2027, 11, 17)).timed)  # type: ignore[attr-defined]

    assert peak > 3 * max(ordinary, 1)
    assert season(dt.date(2027, 10, 1))["counting"] == 1.0
    assert season(dt.date(2027, 9, 4))["weekday"] < 1.0  # a Saturday


def test_a_file_with_a_bad_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl"
    write_day(_day(dt.date(2027, 9, 1)), path)  # type: ignore[arg-type]
    lines = path.read_text().splitlines()
    lines[3] = '{"kind": "teleport", "ref": "x", "id": "y"}'
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(ValueError, match=r"day.jsonl:4: unknown message kind 'teleport'"):
        read_day(path)
