"""follow_log: backlog first, then new entries as soon as they are notified, never one twice; writers wait for
confirming followers (a register that keeps a copy), but not for ever."""

from __future__ import annotations

import asyncio

import pytest

from services.common import wakeup as wakeup_module
from services.common.wakeup import LogWakeup, follow_log


async def test_follow_log_yields_backlog_then_new_entries_without_waiting_for_a_poll() -> None:
    log = [1, 2, 3]
    wakeup = LogWakeup(poll_seconds=30)  # a poll would time the test out: only notify can wake it

    async def read_after(cursor: int) -> list[int]:
        return [n for n in log if n > cursor][:2]

    seen: list[int] = []
    caught_up = asyncio.Event()

    async def consume() -> None:
        async for entry in follow_log(read_after, lambda n: n, 1, wakeup):
            seen.append(entry)
            if entry == 3:
                caught_up.set()
            if entry == 5:
                return

    task = asyncio.create_task(consume())
    await asyncio.wait_for(caught_up.wait(), timeout=5)
    log.extend([4, 5])
    wakeup.notify()
    await asyncio.wait_for(task, timeout=5)
    assert seen == [2, 3, 4, 5]


async def test_a_writer_answers_only_once_a_confirming_follower_was_handed_its_commit() -> None:
    log: list[int] = []
    wakeup = LogWakeup(poll_seconds=30)
    handed: list[int] = []
    follower = wakeup.join()

    async def read_after(cursor: int) -> list[int]:
        await asyncio.sleep(0.05)  # a slow reader: the writer must wait for it, not for a fixed time
        return [n for n in log if n > cursor]

    async def consume() -> None:
        async for entry in follow_log(read_after, lambda n: n, 0, wakeup, follower):
            handed.append(entry)

    task = asyncio.create_task(consume())
    try:
        await asyncio.sleep(0.2)  # caught up with the empty log
        log.append(1)
        number = wakeup.notify()
        await asyncio.wait_for(wakeup.delivered(number), timeout=1.5)
        assert handed == [1]
    finally:
        task.cancel()
        wakeup.leave(follower)
    # Gone followers hold nobody up.
    log.append(2)
    await asyncio.wait_for(wakeup.delivered(wakeup.notify()), timeout=0.5)


async def test_a_silent_follower_is_waited_for_only_so_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wakeup_module, "DELIVERY_TIMEOUT_SECONDS", 0.2)
    wakeup = LogWakeup(poll_seconds=30)
    wakeup.join()  # never reads
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(wakeup.delivered(wakeup.notify()), timeout=2)
    assert 0.15 < asyncio.get_running_loop().time() - started < 1.5
