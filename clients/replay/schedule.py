"""When each message is sent: the open model (at its intended time, answered or not) and the closed model.

The open model never waits for an answer before sending the next message, and the latency the caller
records is measured from the *intended* send time, so a server (or a client loop) that falls behind
shows up as latency instead of silently lowering the offered rate (coordinated omission).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Protocol

# send(index, intended): sends message `index`; `intended` is the clock time it was meant to go out.
Send = Callable[[int, float], Coroutine[object, object, None]]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    async def sleep_until(self, moment: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, moment: float) -> None:
        delay = moment - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def speed_offsets(times: Sequence[dt.datetime], speed: float) -> list[float]:
    """Intended send offsets (seconds from the start) that play the day's own timing `speed` times faster."""
    if speed <= 0:
        raise ValueError("--speed must be positive")
    if not times:
        return []
    first = times[0]
    return [max(0.0, (moment - first).total_seconds() / speed) for moment in times]


def rate_offsets(count: int, rate: float) -> list[float]:
    """Intended send offsets for a fixed arrival rate (messages per second), in the file's order."""
    if rate <= 0:
        raise ValueError("--rate must be positive")
    return [index / rate for index in range(count)]


@dataclass
class Launched:
    """What a scheduler started: the send tasks (still running, perhaps) and the messages never sent."""

    tasks: list[asyncio.Task[None]]
    started_at: float
    not_sent: int


async def run_open(offsets: Sequence[float], send: Send, clock: Clock, *, duration: float) -> Launched:
    """Starts send(i, intended) at start + offsets[i], without waiting for earlier sends to answer.

    Stops launching at `duration` seconds: messages due later are counted as not sent.
    """
    start = clock.now()
    tasks: list[asyncio.Task[None]] = []
    for index, offset in enumerate(offsets):
        if offset >= duration:
            return Launched(tasks, start, len(offsets) - index)
        intended = start + offset
        await clock.sleep_until(intended)
        tasks.append(asyncio.create_task(send(index, intended)))
    return Launched(tasks, start, 0)


async def run_closed(count: int, send: Send, clock: Clock, *, duration: float, concurrency: int) -> Launched:
    """K workers, each sending the next message as soon as its previous one answered (throughput runs).

    There is no intended time here: each send's `intended` is the moment it actually goes out.
    """
    if concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    start = clock.now()
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count and clock.now() - start < duration:
            index = next_index
            next_index += 1
            await send(index, clock.now())

    tasks = [asyncio.create_task(worker()) for _ in range(min(concurrency, max(count, 1)))]
    await asyncio.gather(*tasks, return_exceptions=True)
    return Launched([], start, count - next_index)
