"""Latency histograms (HDR), timelines for the plots, and errors by status and reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

# Microseconds, from 1 µs to one hour, 3 significant digits.
_LOWEST, _HIGHEST, _DIGITS = 1, 3_600_000_000, 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
# The percentile curve in the report: the classic HDR plot points.
CURVE = (0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9, 99.95, 99.99, 100)


class Latency:
    """One HDR histogram of latencies, recorded in seconds, reported in milliseconds."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(_LOWEST, _HIGHEST, _DIGITS)

    def record(self, seconds: float) -> None:
        micros = min(max(int(seconds * 1_000_000), _LOWEST), _HIGHEST)
        self.histogram.record_value(micros)

    @property
    def count(self) -> int:
        return int(self.histogram.get_total_count())

    def percentile_ms(self, percentile: float) -> float:
        if self.count == 0:
            return 0.0
        if percentile >= 100:
            return self.histogram.get_max_value() / 1000
        return self.histogram.get_value_at_percentile(percentile) / 1000

    def summary(self) -> dict[str, float]:
        result: dict[str, float] = {"count": self.count}
        for percentile in PERCENTILES:
            result[f"p{percentile:g}"] = round(self.percentile_ms(percentile), 3)
        result["max"] = round(self.percentile_ms(100), 3)
        result["mean"] = round(self.histogram.get_mean_value() / 1000, 3) if self.count else 0.0
        return result

    def curve(self) -> list[tuple[float, float]]:
        return [(p, self.percentile_ms(p)) for p in CURVE] if self.count else []


@dataclass
class Sample:
    at: float  # seconds since the day's start
    seconds: float


@dataclass
class Metrics:
    """Everything measured during a run; histograms by name ("call.RegisterEnrolment", "feedback.brp", ...)."""

    histograms: dict[str, Latency] = field(default_factory=dict)
    timelines: dict[str, list[Sample]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    sent_at: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    feedback_at: list[float] = field(default_factory=list)

    def record(self, name: str, seconds: float, at: float | None = None) -> None:
        self.histograms.setdefault(name, Latency()).record(seconds)
        if at is not None:
            self.timelines.setdefault(name, []).append(Sample(at, seconds))

    def get(self, name: str) -> Latency:
        return self.histograms.get(name) or Latency()

    def summaries(self) -> dict[str, dict[str, float]]:
        return {name: self.histograms[name].summary() for name in sorted(self.histograms)}


def per_second(moments: list[float], length: float) -> list[int]:
    """How many of the moments (seconds since start) fall in each whole second of [0, length)."""
    bins = [0] * (int(length) + 1)
    for moment in moments:
        if 0 <= moment <= length:
            bins[int(moment)] += 1
    return bins
