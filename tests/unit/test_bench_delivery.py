"""The day benchmark's delivery accounting without a server: what ROD lists must arrive once, at its school."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from benchmarks.delivery import Deliveries, percentile
from services._gen.registry.v1 import rod_pb2

SCHOOL = rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE
BRP = rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE


def _feedback(cursor: int, school: str = "25BE", cause: str = "doc-1", trigger: int = SCHOOL) -> rod_pb2.Feedback:
    return rod_pb2.Feedback(
        cursor=cursor,
        institution_code=school,
        trigger=trigger,
        cause=rod_pb2.FeedbackCause(trigger=trigger, id=cause),
        committed_at=Timestamp(seconds=1000),
    )


def _deliveries(*arrivals: tuple[str, rod_pb2.Feedback]) -> Deliveries:
    deliveries = Deliveries()
    for at, (stream, feedback) in enumerate(arrivals):
        deliveries.arrived(stream, feedback, at=10.0 + at, wall=1000.25)
    return deliveries


def test_every_listed_feedback_arriving_once_at_its_school_passes() -> None:
    deliveries = _deliveries(("25BE", _feedback(3)), ("30XY", _feedback(4, "30XY")))

    check = deliveries.check([(3, "25BE"), (4, "30XY")], after=0)

    assert check.passed, check.summary()
    assert (check.expected, check.arrived) == (2, 2)


def test_a_listed_feedback_that_never_arrived_is_missing() -> None:
    check = _deliveries(("25BE", _feedback(3))).check([(3, "25BE"), (5, "25BE")], after=0)

    assert not check.passed
    assert set(check.missing) == {5}
    assert "1 missing (#5)" in check.summary()


def test_a_feedback_arriving_twice_is_duplicated() -> None:
    check = _deliveries(("25BE", _feedback(3)), ("25BE", _feedback(3))).check([(3, "25BE")], after=0)

    assert not check.passed
    assert check.duplicated[3] == 2


def test_a_feedback_on_another_schools_stream_or_not_listed_fails() -> None:
    deliveries = _deliveries(("30XY", _feedback(3)), ("25BE", _feedback(9)))

    check = deliveries.check([(3, "25BE")], after=0)

    assert set(check.wrong_school) == {3}
    assert set(check.unexpected) == {9}


def test_feedback_from_before_the_run_is_not_expected() -> None:
    check = _deliveries(("25BE", _feedback(3))).check([(1, "25BE"), (3, "25BE")], after=2)

    assert check.passed, check.summary()
    assert check.expected == 1


def test_latency_runs_from_the_causes_send_and_from_the_commit() -> None:
    deliveries = _deliveries(
        ("25BE", _feedback(3, cause="doc-1")),
        ("25BE", _feedback(4, cause="brp-1", trigger=BRP)),
        ("25BE", _feedback(5, cause="from-setup")),
    )
    sent = {"doc-1": 9.5, "brp-1": 10.0}

    assert deliveries.send_to_arrival(sent, SCHOOL) == [0.5]
    assert deliveries.send_to_arrival(sent, BRP) == [1.0]
    assert deliveries.commit_to_arrival() == [0.25, 0.25, 0.25]
    assert deliveries.has_cause("brp-1") and not deliveries.has_cause("doc-2")
    assert deliveries.last_at() == 12.0


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]

    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 99) == 0.0
