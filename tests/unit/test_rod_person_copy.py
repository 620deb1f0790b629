"""ROD's copy of BRP's persons (services.rod.copies.PersonCopy, CopiedBrp) with the in-process fake BRP: when a
follow is answered from the copy, and when it must reach BRP."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

from services.rod.copies import RECENT_CHANGES, CopiedBrp, PersonCopy
from services.rod.peers import FakeBrp
from services.rod.reevaluation import _pump
from services.rod.rules import BrpFacts, PersonChanged

SANDBOX, OTHER_SANDBOX = "sb-1", "sb-2"
BSN, OTHER_BSN = "999990019", "999990020"
TEEN = dt.date(2014, 5, 5)
DIED = dt.date(2027, 8, 1)


def copied(*, following: bool = True) -> tuple[FakeBrp, CopiedBrp]:
    brp = FakeBrp()
    brp.add(BSN, TEEN)
    brp.add(OTHER_BSN, TEEN)
    copy = PersonCopy()
    copy.following_from_now(following)
    return brp, CopiedBrp(brp, copy)


def death(bsn: str, sandbox_id: str = SANDBOX, cursor: int = 1) -> PersonChanged:
    facts = BrpFacts(bsn, TEEN, DIED, None, 2, effective_date=DIED)
    return PersonChanged(sandbox_id, cursor, f"message-{cursor}", facts)


class ChangingBrp(FakeBrp):
    """A BRP whose person changes (and the change arrives on ROD's stream) while a follow is being answered."""

    copy: PersonCopy | None = None
    change: PersonChanged | None = None

    async def follow(self, sandbox_id: str, bsn: str, until: dt.date | None = None) -> BrpFacts | None:
        answer = await super().follow(sandbox_id, bsn, until)
        if self.copy is not None and self.change is not None:
            self.copy.changed(self.change)
        return answer


async def test_a_followed_person_is_asked_once_and_then_answered_from_the_copy() -> None:
    brp, gateway = copied()
    first = await gateway.follow(SANDBOX, BSN)
    assert await gateway.follow(SANDBOX, BSN) == first
    assert brp.asked == [(SANDBOX, BSN, None)]
    # Per sandbox: the same BSN in another sandbox is another person.
    await gateway.follow(OTHER_SANDBOX, BSN)
    assert len(brp.asked) == 2


async def test_nothing_is_kept_or_used_while_brps_stream_is_not_followed() -> None:
    brp, gateway = copied(following=False)
    await gateway.follow(SANDBOX, BSN)
    await gateway.follow(SANDBOX, BSN)
    assert len(brp.asked) == 2
    gateway.copy.following_from_now(True)
    await gateway.follow(SANDBOX, BSN)
    gateway.copy.following_from_now(False)  # the stream ended: what was kept goes
    gateway.copy.following_from_now(True)
    await gateway.follow(SANDBOX, BSN)
    assert len(brp.asked) == 4


async def test_a_change_that_arrives_replaces_the_persons_facts() -> None:
    brp, gateway = copied()
    await gateway.follow(SANDBOX, BSN)
    await gateway.follow(SANDBOX, OTHER_BSN)
    gateway.copy.changed(death(BSN))
    facts = await gateway.follow(SANDBOX, BSN)
    assert facts is not None and facts.death_date == DIED and facts.effective_date is None
    assert (await gateway.follow(SANDBOX, OTHER_BSN)) == brp.persons[OTHER_BSN]
    assert len(brp.asked) == 2


async def test_an_older_change_arriving_late_does_not_roll_the_person_back() -> None:
    brp, gateway = copied()
    brp.persons[BSN] = BrpFacts(BSN, TEEN, DIED, None, 3)
    await gateway.follow(SANDBOX, BSN)
    # Applied before ROD followed the person: the stream passes it once the person is followed.
    gateway.copy.changed(PersonChanged(SANDBOX, 1, "birth", BrpFacts(BSN, TEEN, None, None, 1)))
    assert gateway.copy.get((SANDBOX, BSN)) == brp.persons[BSN]


async def test_an_answer_asked_across_a_change_of_its_person_is_not_kept() -> None:
    brp = ChangingBrp()
    brp.add(BSN, TEEN)
    copy = PersonCopy()
    copy.following_from_now(True)
    brp.copy, brp.change = copy, death(BSN)
    gateway = CopiedBrp(brp, copy)
    answered = await gateway.follow(SANDBOX, BSN)
    assert answered is not None and answered.death_date is None  # BRP answered before the death
    brp.change = None
    assert (await gateway.follow(SANDBOX, BSN)) is not None
    assert len(brp.asked) == 2


async def test_an_answer_asked_across_another_persons_change_is_kept() -> None:
    brp = ChangingBrp()
    brp.add(BSN, TEEN)
    copy = PersonCopy()
    copy.following_from_now(True)
    brp.copy, brp.change = copy, death(OTHER_BSN)
    gateway = CopiedBrp(brp, copy)
    await gateway.follow(SANDBOX, BSN)
    brp.change = None
    await gateway.follow(SANDBOX, BSN)
    assert len(brp.asked) == 1


async def test_an_answer_asked_across_more_changes_than_are_remembered_is_not_kept() -> None:
    brp, gateway = copied()
    news = gateway.copy.news
    for cursor in range(RECENT_CHANGES + 1):
        gateway.copy.changed(death(OTHER_BSN, cursor=cursor + 1))
    gateway.copy.keep((SANDBOX, BSN), brp.persons[BSN], news)
    assert gateway.copy.get((SANDBOX, BSN)) is None


async def test_a_follow_with_an_end_reaches_brp_and_drops_the_person() -> None:
    brp, gateway = copied()
    await gateway.follow(SANDBOX, BSN)
    await gateway.follow(SANDBOX, BSN, DIED)
    assert brp.follow_ends[(SANDBOX, BSN)] == DIED
    # The next registration reopens the indication in BRP: it is not answered from the copy.
    await gateway.follow(SANDBOX, BSN)
    assert brp.asked == [(SANDBOX, BSN, None), (SANDBOX, BSN, DIED), (SANDBOX, BSN, None)]
    assert brp.follow_ends[(SANDBOX, BSN)] is None


async def test_a_purged_sandbox_loses_its_persons_only() -> None:
    brp, gateway = copied()
    await gateway.follow(SANDBOX, BSN)
    await gateway.follow(OTHER_SANDBOX, BSN)
    gateway.copy.forget(SANDBOX)
    await gateway.follow(SANDBOX, BSN)
    await gateway.follow(OTHER_SANDBOX, BSN)
    assert brp.asked == [(SANDBOX, BSN, None), (OTHER_SANDBOX, BSN, None), (SANDBOX, BSN, None)]


async def test_an_unknown_person_is_never_kept() -> None:
    brp, gateway = copied()
    assert await gateway.follow(SANDBOX, "999990032") is None
    assert await gateway.follow(SANDBOX, "999990032") is None
    assert len(brp.asked) == 2


async def test_a_batch_asks_brp_only_for_the_persons_not_kept() -> None:
    brp, gateway = copied()
    await gateway.follow(SANDBOX, BSN)
    found = await gateway.follow_many(SANDBOX, [BSN, OTHER_BSN, OTHER_BSN])
    assert found == {BSN: brp.persons[BSN], OTHER_BSN: brp.persons[OTHER_BSN]}
    assert brp.asked == [(SANDBOX, BSN, None), (SANDBOX, OTHER_BSN, None)]
    await gateway.follow_many(SANDBOX, [BSN, OTHER_BSN])
    assert len(brp.asked) == 2


async def test_nothing_is_kept_or_used_while_rods_queue_of_brp_changes_is_full() -> None:
    brp, gateway = copied()
    await gateway.follow(SANDBOX, BSN)
    gateway.copy.behind(True)  # BRP may answer an ingestion before its change reached ROD
    await gateway.follow(SANDBOX, BSN)
    await gateway.follow(SANDBOX, BSN)
    gateway.copy.behind(False)
    await gateway.follow(SANDBOX, BSN)
    await gateway.follow(SANDBOX, BSN)
    assert len(brp.asked) == 4


async def test_the_pump_says_behind_when_the_queue_is_full() -> None:
    queue: asyncio.Queue[tuple[int, None] | BaseException] = asyncio.Queue(maxsize=2)
    told: list[bool] = []

    async def changes() -> AsyncIterator[tuple[int, None]]:
        for cursor in range(1, 4):
            yield cursor, None

    pump = asyncio.create_task(_pump(changes(), queue, told.append))
    for _ in range(10):
        await asyncio.sleep(0)
    assert told == [True] and queue.full()
    pump.cancel()
