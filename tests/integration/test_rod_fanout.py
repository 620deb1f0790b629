"""Fan-out: each stream gets its schools' feedback once, in order, and reads the database only to catch up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlmodel import Session

from services.common.database import Database, make_engine
from services.common.migrations import upgrade
from services.common.wakeup import LogWakeup
from services.rod import outbox, store
from services.rod.fanout import FeedbackFanout
from services.rod.rules import FeedbackEntry, OutboxEntry, Outcome, Trigger

SANDBOX = "sb_fanout"


@pytest.fixture
def database(database_url: str) -> AsyncIterator[Database]:
    engine = make_engine(database_url)
    upgrade("rod", engine)
    yield Database(engine)
    engine.dispose()


async def write(database: Database, wakeup: LogWakeup, schools: Sequence[str], sandbox_id: str = SANDBOX) -> list[int]:
    """One transaction with one feedback per school (in order); returns their cursors."""

    def work(session: Session) -> list[int]:
        return [
            outbox.append(
                session,
                FeedbackEntry(
                    sandbox_id=sandbox_id,
                    institution_code=school,
                    enrolment_id="",
                    pupil_number="",
                    outcome=Outcome.APPROVED,
                    trigger=Trigger.SCHOOL_MESSAGE,
                    cause_id="test",
                ),
            )
            for school in schools
        ]

    cursors = await database.run(work)
    wakeup.notify()
    return cursors


class Reads:
    """read_after for one stream, counting how often the stream read the database."""

    def __init__(self, database: Database, schools: Sequence[str]) -> None:
        self.database, self.schools, self.count = database, list(schools), 0

    async def __call__(self, cursor: int) -> list[OutboxEntry]:
        self.count += 1
        return await self.database.run(
            lambda s: store.feedback_after(s, sandbox_id=SANDBOX, institution_codes=self.schools, after=cursor, limit=7)
        )


async def collect(stream: AsyncIterator[OutboxEntry], into: list[int], until: int) -> None:
    async for entry in stream:
        into.append(entry.cursor)
        if entry.cursor >= until:
            return


async def test_each_stream_gets_its_schools_feedback_once_in_order_backlog_then_live(database: Database) -> None:
    wakeup = LogWakeup(poll_seconds=30)  # a poll would hide a missed hand-out
    fanout = FeedbackFanout(database, wakeup)
    schools = ["01AA", "02BB", "03CC"]
    written = await write(database, wakeup, schools * 10)  # backlog: more than one catch-up page per school
    got: dict[str, list[int]] = {school: [] for school in schools}
    streams = {school: fanout.follow(SANDBOX, [school], 0, Reads(database, [school])) for school in schools}
    tasks = [asyncio.create_task(collect(streams[s], got[s], 10**12)) for s in schools]
    # Live feedback while the streams catch up, and after.
    for _ in range(10):
        written += await write(database, wakeup, schools * 2)
        await asyncio.sleep(0.005)
    mine = {school: written[index :: len(schools)] for index, school in enumerate(schools)}
    for _ in range(200):
        if all(len(got[s]) >= len(mine[s]) for s in schools):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    assert got == mine
    # Resume after a cursor: only what came after it.
    for school in schools:
        resumed: list[int] = []
        stream = fanout.follow(SANDBOX, [school], mine[school][-4], Reads(database, [school]))
        await asyncio.wait_for(collect(stream, resumed, mine[school][-1]), 10)
        assert resumed == mine[school][-3:]
    await fanout.stop()


async def test_a_caught_up_stream_does_not_read_the_database_again(database: Database) -> None:
    wakeup = LogWakeup(poll_seconds=0.05)  # the reader polls often; the streams must not
    fanout = FeedbackFanout(database, wakeup)
    await write(database, wakeup, ["01AA", "02BB"])
    reads = [Reads(database, [f"{n:02d}ZZ"]) for n in range(50)]
    streams = [fanout.follow(SANDBOX, r.schools, 0, r) for r in reads]
    tasks = [asyncio.create_task(collect(s, [], 10**12)) for s in streams]
    await asyncio.sleep(0.3)
    caught_up = [r.count for r in reads]
    assert fanout.streams() == 50
    for _ in range(20):
        await write(database, wakeup, ["01AA"])  # other schools' feedback
    mine: list[int] = []
    own = asyncio.create_task(collect(fanout.follow(SANDBOX, ["01AA"], 10**12 - 1, Reads(database, ["01AA"])), mine, 0))
    await asyncio.sleep(0.5)
    assert [r.count for r in reads] == caught_up  # idle: no read per stream, neither on commits nor on polls
    for task in [*tasks, own]:
        task.cancel()
    await asyncio.sleep(0)
    assert fanout.streams() == 0
    await fanout.stop()


async def test_a_stream_that_stops_reading_catches_up_from_the_database_without_loss(database: Database) -> None:
    wakeup = LogWakeup(poll_seconds=30)
    fanout = FeedbackFanout(database, wakeup, queue_limit=5)
    reads = Reads(database, ["01AA"])
    stream = fanout.follow(SANDBOX, ["01AA"], 0, reads)
    first = await write(database, wakeup, ["01AA"])
    assert (await asyncio.wait_for(anext(stream), 5)).cursor == first[0]
    # The client stops reading while 40 arrive: its queue overflows.
    expected: list[int] = []
    for _ in range(8):
        expected += await write(database, wakeup, ["01AA"] * 5)
        await asyncio.sleep(0.01)
    got: list[int] = []
    await asyncio.wait_for(collect(stream, got, expected[-1]), 10)
    assert got == expected
    await stream.aclose()
    await fanout.stop()


async def test_other_sandboxes_feedback_is_not_handed_out(database: Database) -> None:
    wakeup = LogWakeup(poll_seconds=30)
    fanout = FeedbackFanout(database, wakeup)
    got: list[int] = []
    mine_before = await write(database, wakeup, ["01AA"])
    task = asyncio.create_task(collect(fanout.follow(SANDBOX, [], 0, Reads(database, [])), got, 10**12))
    await asyncio.sleep(0.1)
    await write(database, wakeup, ["01AA", "02BB"], sandbox_id="sb_other")
    mine = await write(database, wakeup, ["02BB"])
    await asyncio.sleep(0.2)
    task.cancel()
    assert got == mine_before + mine
    await fanout.stop()
