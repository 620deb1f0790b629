"""A peer change ROD cannot apply is parked (reported, passed) after a few tries; the stream goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.common.database import Database, make_engine
from services.common.migrations import upgrade
from services.common.wakeup import LogWakeup
from services.rod import reevaluation, store


async def test_a_change_that_keeps_failing_is_parked_and_later_changes_are_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reevaluation, "_RECONNECT_SECONDS", 0.01)
    engine = make_engine(f"sqlite:///{tmp_path / 'rod.db'}")
    upgrade("rod", engine)
    database = Database(engine)
    handled: list[int] = []
    tries: list[int] = []

    async def open_stream(after: int) -> AsyncIterator[tuple[int, str]]:
        for cursor in (1, 2, 3):
            if cursor > after:
                yield cursor, f"change {cursor}"
        await asyncio.Event().wait()  # a live stream: open, with nothing more to say

    async def handle(batch: list[tuple[int, str]]) -> None:
        tries.extend(cursor for cursor, _ in batch if cursor == 2)
        if any(cursor == 2 for cursor, _ in batch):
            raise ValueError("a change no rule can apply")
        handled.extend(cursor for cursor, _ in batch)
        await database.run(lambda s: store.store_stream_cursor(s, "brp", batch[-1][0]))

    parked_before = REGISTRY.get_sample_value("registry_parked_changes_total", {"stream": "brp"}) or 0.0
    reevaluator = reevaluation.Reevaluator(database, None, None, LogWakeup(), None)  # type: ignore[arg-type]
    follower = asyncio.create_task(reevaluator._follow("brp", open_stream, handle))
    try:
        for _ in range(500):
            if await database.run(lambda s: store.stream_cursor(s, "brp")) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        engine.dispose()
    assert handled == [1, 3]
    assert len(tries) > reevaluation.PARK_AFTER_TRIES - 1  # tried again before giving up on it
    parked = REGISTRY.get_sample_value("registry_parked_changes_total", {"stream": "brp"}) or 0.0
    assert parked == parked_before + 1
