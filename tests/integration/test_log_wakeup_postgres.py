"""On PostgreSQL a commit to a log wakes readers in other processes through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlmodel import Session

from services.common.database import Database, lock_log_for_append, make_engine
from services.common.settings import Settings
from services.common.wakeup import LogWakeup

pytestmark = pytest.mark.postgres


async def test_a_commit_by_another_connection_wakes_the_listener_before_any_poll(postgres_url: str) -> None:
    url = Settings(database_url=postgres_url).database_url
    wakeup = LogWakeup(poll_seconds=60)  # only the notification can wake it in time
    listener = asyncio.create_task(wakeup.listen_postgres(url, "test_log"))
    database = Database(make_engine(url))
    try:
        await asyncio.sleep(0.5)  # let LISTEN register
        event = wakeup.current()

        def append(session: Session) -> None:
            lock_log_for_append(session, "test_log")
            session.execute(text("SELECT 1"))

        await database.run(append)
        await asyncio.wait_for(event.wait(), timeout=5)
    finally:
        listener.cancel()
        database.engine.dispose()


async def test_a_rolled_back_append_wakes_nobody(postgres_url: str) -> None:
    url = Settings(database_url=postgres_url).database_url
    wakeup = LogWakeup(poll_seconds=60)
    listener = asyncio.create_task(wakeup.listen_postgres(url, "test_log"))
    database = Database(make_engine(url))
    try:
        await asyncio.sleep(0.5)
        event = wakeup.current()

        def append_then_fail(session: Session) -> None:
            lock_log_for_append(session, "test_log")
            raise RuntimeError("refused")

        with pytest.raises(RuntimeError):
            await database.run(append_then_fail)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=1)
    finally:
        listener.cancel()
        database.engine.dispose()
