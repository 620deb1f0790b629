"""follow_log: backlog first, then new entries as soon as they are notified, never one twice."""

from __future__ import annotations

import asyncio

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
