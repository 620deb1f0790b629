"""Which feedback a benchmark's school streams received, checked against what ROD lists: none missing, none twice.

The register's own list (ListFeedback, read after the run) is the expected
set, so the check does not depend on predicting which BRP changes alter a
decision; cursors are the outbox's, unique per feedback.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services._gen.registry.v1 import rod_pb2

# How many cursors of each problem a check keeps for the report; the counts say how many there were.
SHOWN = 10


@dataclass(frozen=True)
class Delivered:
    """One feedback as it reached a school's stream (`at` on the monotonic clock, `lag` = arrival − commit, s)."""

    stream: str
    cursor: int
    institution_code: str
    cause_id: str
    trigger: int
    at: float
    lag: float


@dataclass
class DeliveryCheck:
    expected: int = 0
    arrived: int = 0
    missing: Counter[int] = field(default_factory=Counter)
    duplicated: Counter[int] = field(default_factory=Counter)
    wrong_school: Counter[int] = field(default_factory=Counter)
    unexpected: Counter[int] = field(default_factory=Counter)

    @property
    def passed(self) -> bool:
        return not (self.missing or self.duplicated or self.wrong_school or self.unexpected)

    def summary(self) -> str:
        parts = [f"{self.arrived:,} of {self.expected:,} expected feedbacks arrived"]
        for name in ("missing", "duplicated", "wrong_school", "unexpected"):
            problem: Counter[int] = getattr(self, name)
            if problem:
                shown = ", ".join(f"#{c}" for c in sorted(problem)[:SHOWN])
                parts.append(f"{len(problem):,} {name.replace('_', ' ')} ({shown})")
        return "; ".join(parts)


@dataclass
class Deliveries:
    """Everything the listening streams received during one run."""

    arrivals: list[Delivered] = field(default_factory=list)
    _causes: set[str] = field(default_factory=set)

    def arrived(self, stream: str, feedback: rod_pb2.Feedback, *, at: float, wall: float) -> None:
        committed = feedback.committed_at.seconds + feedback.committed_at.nanos / 1e9
        self.arrivals.append(
            Delivered(
                stream,
                feedback.cursor,
                feedback.institution_code,
                feedback.cause.id or feedback.document_id,
                feedback.trigger,
                at,
                wall - committed,
            )
        )
        self._causes.add(feedback.cause.id or feedback.document_id)

    def has_cause(self, cause_id: str) -> bool:
        return cause_id in self._causes

    def cursors(self) -> set[int]:
        return {a.cursor for a in self.arrivals}

    def last_at(self) -> float:
        return max((a.at for a in self.arrivals), default=0.0)

    def check(self, listed: Iterable[tuple[int, str]], *, after: int) -> DeliveryCheck:
        """`listed`: (cursor, school) of every feedback ROD lists for the sandbox; those past `after` are expected,
        each exactly once and on its own school's stream; nothing else may arrive."""
        expected = {cursor: school for cursor, school in listed if cursor > after}
        times = Counter(a.cursor for a in self.arrivals)
        result = DeliveryCheck(expected=len(expected), arrived=len(times))
        for cursor in expected.keys() - times.keys():
            result.missing[cursor] += 1
        for arrival in self.arrivals:
            if arrival.cursor not in expected:
                result.unexpected[arrival.cursor] += 1
            elif arrival.stream != expected[arrival.cursor]:
                result.wrong_school[arrival.cursor] += 1
        for cursor, count in times.items():
            if count > 1:
                result.duplicated[cursor] = count
        return result

    def send_to_arrival(self, sent_at: Mapping[str, float], trigger: int) -> list[float]:
        """Seconds from the send of each feedback's cause (its school message, or the BRP document holding
        its message) to the feedback's arrival, for feedback of one trigger whose cause was sent in the run."""
        return [a.at - sent_at[a.cause_id] for a in self.arrivals if a.trigger == trigger and a.cause_id in sent_at]

    def commit_to_arrival(self) -> list[float]:
        return [a.lag for a in self.arrivals]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
