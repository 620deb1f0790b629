"""Limits a shared sandbox service needs: calls per second per sandbox key, open streams per sandbox key."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from services.common.errors import RegistryError


@dataclass
class TokenBucket:
    """Allows `rate` calls a second on average and bursts of `burst`."""

    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """Takes one token; returns 0.0, or the seconds until one is available (nothing taken)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class CallLimits:
    """Per sandbox key: a rate limit on calls and a cap on open server streams. 0 switches a limit off.

    Internal calls between registers are not counted: they happen on behalf of
    calls that were counted already.
    """

    def __init__(self, calls_per_second: float, burst: int, streams_per_key: int) -> None:
        self.calls_per_second = calls_per_second
        self.burst = max(burst, 1)
        self.streams_per_key = streams_per_key
        self._buckets: dict[str, TokenBucket] = {}
        self._streams: dict[str, int] = defaultdict(int)

    def admit_call(self, key: str, now: float | None = None) -> None:
        if self.calls_per_second <= 0 or not key:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:  # bound memory against key spraying; buckets refill anyway
                self._buckets.clear()
            bucket = self._buckets[key] = TokenBucket(self.calls_per_second, self.burst)
        wait = bucket.take(time.monotonic() if now is None else now)
        if wait > 0:
            raise rate_limited(wait, self.calls_per_second)

    def open_stream(self, key: str) -> None:
        if self.streams_per_key <= 0 or not key:
            return
        if self._streams[key] >= self.streams_per_key:
            raise RegistryError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"at most {self.streams_per_key} open streams per sandbox key; close one first",
                "SBX-STREAMS-PER-SANDBOX",
            )
        self._streams[key] += 1

    def close_stream(self, key: str) -> None:
        if self.streams_per_key <= 0 or not key:
            return
        self._streams[key] -= 1
        if self._streams[key] <= 0:
            del self._streams[key]


def rate_limited(wait_seconds: float, rate: float) -> RegistryError:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(max(int(wait_seconds * 1e9), 1_000_000))
    return RegistryError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"more than {rate:g} calls a second for this sandbox key; retry after the RetryInfo delay",
        "SBX-RATE-LIMITED",
        extra_details=(error_details_pb2.RetryInfo(retry_delay=delay),),
    )
