"""The replayer's schedulers on a fake clock: the open model sends on time and shows a slow server as latency."""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from clients.replay.schedule import rate_offsets, run_closed, run_open, speed_offsets

T = TypeVar("T")


class FakeClock:
    """Time moves only when every task is waiting on it: it jumps to the earliest sleeper's moment."""

    def __init__(self) -> None:
        self.time = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.time

    async def sleep_until(self, moment: float) -> None:
        if moment <= self.time:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (moment, next(self._order), future))
        await future

    async def drive(self, work: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(work)
        while True:
            for _ in range(50):  # let every runnable task reach its next wait
                await asyncio.sleep(0)
            if not self._sleepers:
                if task.done():
                    return task.result()
                raise AssertionError("deadlock: nothing sleeps and the work is not done")
            moment, _, future = heapq.heappop(self._sleepers)
            self.time = moment
            future.set_result(None)


class SlowServer:
    """Answers one call at a time, each taking `seconds` (a server that cannot keep up)."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.lock = asyncio.Lock()
        self.started: list[float] = []
        self.latencies: dict[int, float] = {}
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, index: int, intended: float) -> None:
        self.started.append(self.clock.now())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        async with self.lock:
            await self.clock.sleep_until(self.clock.now() + self.seconds)
        self.in_flight -= 1
        self.latencies[index] = self.clock.now() - intended


async def test_the_open_model_sends_each_message_at_its_time_whether_or_not_earlier_ones_were_answered() -> None:
    clock = FakeClock()
    server = SlowServer(clock, seconds=1.0)

    async def scenario() -> None:
        launched = await run_open([0.0, 0.1, 0.2, 0.3, 0.4], server.send, clock, duration=10)
        await asyncio.gather(*launched.tasks)

    await clock.drive(scenario())

    assert server.started == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert server.most_in_flight == 5


async def test_a_slow_server_shows_up_as_latency_from_the_intended_time() -> None:
    clock = FakeClock()
    server = SlowServer(clock, seconds=1.0)

    async def scenario() -> None:
        launched = await run_open([0.0, 0.1, 0.2, 0.3, 0.4], server.send, clock, duration=10)
        await asyncio.gather(*launched.tasks)

    await clock.drive(scenario())

    # The queue grows by 0.9 s per message: the last one waited 4.6 s from when it was meant to go out.
    assert [server.latencies[i] for i in range(5)] == pytest.approx([1.0, 1.9, 2.8, 3.7, 4.6])


async def test_the_closed_model_hides_the_same_queue_which_is_why_the_open_model_is_the_default() -> None:
    clock = FakeClock()
    server = SlowServer(clock, seconds=1.0)

    launched = await clock.drive(run_closed(5, server.send, clock, duration=100, concurrency=1))

    assert launched.not_sent == 0
    assert [server.latencies[i] for i in range(5)] == pytest.approx([1.0] * 5)
    assert clock.now() == pytest.approx(5.0)


async def test_the_open_model_stops_launching_at_its_duration() -> None:
    clock = FakeClock()
    server = SlowServer(clock, seconds=0.01)

    async def scenario() -> int:
        launched = await run_open([0, 1, 2, 3, 4, 5], server.send, clock, duration=2.5)
        await asyncio.gather(*launched.tasks)
        return launched.not_sent

    not_sent = await clock.drive(scenario())

    assert not_sent == 3
    assert len(server.started) == 3


def test_speed_compresses_the_days_own_timing() -> None:
    start = dt.datetime(2027, 9, 1, 6, 0, tzinfo=dt.UTC)
    times = [start, start + dt.timedelta(minutes=1), start + dt.timedelta(hours=10)]

    assert speed_offsets(times, 100) == pytest.approx([0.0, 0.6, 360.0])
    assert rate_offsets(4, 2.0) == pytest.approx([0.0, 0.5, 1.0, 1.5])


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_speed_or_rate_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        speed_offsets([], bad)
    with pytest.raises(ValueError, match="positive"):
        rate_offsets(3, bad)
