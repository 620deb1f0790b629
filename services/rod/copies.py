"""ROD's copies of RIO's offering checks and of BRP's persons, kept while ROD follows each peer's change stream.

Offerings: most registrations ask RIO nothing.

Every registration asks "did this school offer this course at this location on
this date?"; thousands of pupils share a handful of answers. The copy is
trusted only under three conditions, which together keep a registration from
using an answer a RIO change made stale:

1. ROD follows RIO's StreamChanges as a confirming follower (RIO sent its
   initial metadata): RIO answers a write only once the change was handed to
   ROD's stream (services.common.wakeup.LogWakeup.delivered), so a school board
   that heard back from RIO can count on ROD knowing of the change;
2. every change that arrives on the stream drops the whole copy at once, as it
   arrives, before it is re-evaluated (RIO changes are rare; answers are cheap
   to ask again);
3. an answer asked before a change arrived is not kept (a counter of changes
   seen is compared), and while the stream is down nothing is kept or used.

Persons: a registration of a pupil ROD already follows asks BRP nothing. The
copy holds BRP's facts of a person as the answer to ROD's follow indication
without an end (SetFollowIndication) brought them, under the same three
conditions with BRP's StreamPersonChanges (BRP's SubmitChanges answers only
once its changes were handed to ROD's stream), except that a change replaces
only its own person's facts as it arrives (persons change daily; one change
must not cost every other pupil a BRP call). A follow with an end, a sandbox
purged or its clock told (ResetSandbox tells it after BRP was purged), and a
change of the person while it was asked drop or refuse the person's facts; a
BSN unknown to BRP is never kept, so its first follow always reaches BRP. While
ROD's queue of BRP changes is full (re-evaluation behind a burst, so BRP may
stop waiting for the stream) nothing is kept or used.

With several RIO (or BRP) processes behind one address a write in another
process does not wait for ROD's stream, so the copies are kept by default only
on SQLite (one process per register); REGISTRY_ROD_PEER_COPIES=true turns them
on with PostgreSQL when RIO and BRP are one process each.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

from services.rod.funding import Sector
from services.rod.peers import Brp, Rio
from services.rod.rules import BrpFacts, OfferingCheck, PersonChanged, PupilDetails, SchoolLocations

# ("offering", sandbox, school, location, course, date) or ("locations", sandbox, school, date).
CopyKey = tuple[object, ...]
T = TypeVar("T")
# Answers kept at most; beyond it the copy starts afresh (a bound on memory, not a cache policy worth more).
MAX_KEPT = 100_000
# Persons kept at most (a national sandbox enrols 1.3 million pupils; a few hundred bytes each).
MAX_PERSONS = 2_000_000
# Person changes remembered by number, to tell whether an answer's person changed while it was asked. An answer
# asked before the oldest remembered change is simply not kept (it was asked across thousands of changes).
RECENT_CHANGES = 10_000
PersonKey = tuple[str, str]  # (sandbox, BSN)


class OfferingCopy:
    """RIO's answers (offering checks, a school's locations) by question, valid while RIO's stream is followed."""

    def __init__(self) -> None:
        self._checks: dict[CopyKey, object] = {}
        self.following = False
        # Changes (and stream starts and ends) seen: an answer asked across one of them is not kept.
        self.news = 0

    def get(self, key: CopyKey) -> object | None:
        return self._checks.get(key) if self.following else None

    def keep(self, key: CopyKey, check: object, news: int) -> None:
        if self.following and news == self.news:
            if len(self._checks) >= MAX_KEPT:
                self._checks.clear()
            self._checks[key] = check

    def changed(self) -> None:
        """A RIO change arrived: every answer may be stale."""
        self.news += 1
        self._checks.clear()

    def following_from_now(self, following: bool) -> None:
        """RIO registered ROD's stream as a confirming follower (True), or the stream ended (False)."""
        self.changed()
        self.following = following


class CopiedRio:
    """The Rio gateway with ROD's copy in front: an answer is asked once per key until RIO changes."""

    def __init__(self, rio: Rio, copy: OfferingCopy) -> None:
        self._rio = rio
        self.copy = copy

    async def _kept(self, key: CopyKey, ask: Callable[[], Awaitable[T]]) -> T:
        kept = self.copy.get(key)
        if kept is not None:
            return cast(T, kept)
        news = self.copy.news
        answer = await ask()
        self.copy.keep(key, answer, news)
        return answer

    async def check_offering(
        self, sandbox_id: str, *, institution_code: str, location_code: str, course_code: str, on: dt.date
    ) -> OfferingCheck:
        return await self._kept(
            ("offering", sandbox_id, institution_code, location_code, course_code, on),
            lambda: self._rio.check_offering(
                sandbox_id,
                institution_code=institution_code,
                location_code=location_code,
                course_code=course_code,
                on=on,
            ),
        )

    async def school_locations(self, sandbox_id: str, institution_code: str, on: dt.date) -> SchoolLocations:
        return await self._kept(
            ("locations", sandbox_id, institution_code, on),
            lambda: self._rio.school_locations(sandbox_id, institution_code, on),
        )

    async def school_sector(self, sandbox_id: str, institution_code: str) -> Sector | None:
        return await self._rio.school_sector(sandbox_id, institution_code)

    async def board_schools(self, sandbox_id: str, board_code: str, on: dt.date | None) -> tuple[str, ...]:
        # Asked only when a use of a location changes (rare): not worth a copy that a board's new school would stale.
        return await self._rio.board_schools(sandbox_id, board_code, on)


class PersonCopy:
    """BRP's facts of the persons ROD follows without an end, by (sandbox, BSN), while BRP's stream is followed."""

    def __init__(self) -> None:
        self._facts: dict[PersonKey, BrpFacts] = {}
        self.following = False
        # ROD's re-evaluation lags so far that BRP's stream waits for it (see behind()).
        self._behind = False
        # Person news (changes, follows with an end, purges) are numbered; the recent ones say whose.
        self.news = 0
        self._recent: collections.deque[tuple[int, str, str | None]] = collections.deque(maxlen=RECENT_CHANGES)
        # News up to this number is no longer told apart: an answer asked before it is not kept.
        self._forgotten = 0

    def get(self, key: PersonKey) -> BrpFacts | None:
        return self._facts.get(key) if self.following and not self._behind else None

    def keep(self, key: PersonKey, facts: BrpFacts, news: int) -> None:
        """Keeps the facts BRP answered to a follow without an end, asked when the news counter stood at `news`."""
        if not self.following or self._behind or not self._unchanged_since(key, news):
            return
        if len(self._facts) >= MAX_PERSONS:
            self._facts.clear()
        self._facts[key] = facts

    def _unchanged_since(self, key: PersonKey, news: int) -> bool:
        if news == self.news:
            return True
        if news < self._forgotten:
            return False
        for number, sandbox_id, bsn in reversed(self._recent):
            if number <= news:
                break
            if sandbox_id == key[0] and bsn in (None, key[1]):
                return False
        return True

    def _tell(self, sandbox_id: str, bsn: str | None) -> None:
        self.news += 1
        if len(self._recent) == self._recent.maxlen:
            self._forgotten = self._recent[0][0]
        self._recent.append((self.news, sandbox_id, bsn))

    def changed(self, change: PersonChanged) -> None:
        """A BRP change arrived on the stream: the person's kept facts become the facts after it, unless they are
        newer."""
        key = (change.sandbox_id, change.facts.bsn)
        self._tell(*key)
        kept = self._facts.get(key)
        if kept is None:
            return
        # BRP numbers a person's states (Volgnummer, never reused): a change older than the kept facts (one applied
        # before ROD followed the person, which the stream passes once it does, or a backlog read again after a
        # reconnect) must not roll the person back; the kept facts already hold it.
        if change.facts.sequence > kept.sequence:
            # As a follow would answer them (the change's own effective date belongs to the change, not the person).
            self._facts[key] = dataclasses.replace(change.facts, effective_date=None)

    def forget(self, sandbox_id: str, bsn: str | None = None) -> None:
        """The person's follow indication gets an end (or, bsn None, the sandbox was purged or its clock moved):
        nothing of them is kept, and no answer asked before this is."""
        self._tell(sandbox_id, bsn)
        if bsn is not None:
            self._facts.pop((sandbox_id, bsn), None)
            return
        for key in [k for k in self._facts if k[0] == sandbox_id]:
            del self._facts[key]

    def following_from_now(self, following: bool) -> None:
        """BRP registered ROD's stream as a confirming follower (True), or the stream ended (False)."""
        self._start_afresh()
        self.following = following

    def behind(self, behind: bool) -> None:
        """ROD's queue of BRP changes is full, so its stream is no longer read as changes come (True), or the
        queue has been emptied (False).

        BRP's ingestion waits at most 2 s for the stream (LogWakeup.delivered): a burst that outruns
        re-evaluation would let it answer before ROD has the change. While behind, nothing is kept or used.
        """
        if behind != self._behind:
            self._start_afresh()
            self._behind = behind

    def _start_afresh(self) -> None:
        self.news += 1
        self._forgotten = self.news
        self._recent.clear()
        self._facts.clear()


class CopiedBrp:
    """The Brp gateway with ROD's copy in front: a person ROD follows without an end is asked once, until it
    changes."""

    def __init__(self, brp: Brp, copy: PersonCopy) -> None:
        self._brp = brp
        self.copy = copy

    async def follow(self, sandbox_id: str, bsn: str, until: dt.date | None = None) -> BrpFacts | None:
        key = (sandbox_id, bsn)
        if until is not None:
            # An end: the changes after it no longer reach ROD. Before and after, so no follow without an end that
            # crossed this call keeps the person.
            self.copy.forget(sandbox_id, bsn)
            try:
                return await self._brp.follow(sandbox_id, bsn, until)
            finally:
                self.copy.forget(sandbox_id, bsn)
        kept = self.copy.get(key)
        if kept is not None:
            return kept
        news = self.copy.news
        facts = await self._brp.follow(sandbox_id, bsn)
        if facts is not None:
            self.copy.keep(key, facts, news)
        return facts

    async def follow_many(self, sandbox_id: str, bsns: Sequence[str]) -> dict[str, BrpFacts | None]:
        """The kept persons from the copy, the others followed in one call (and kept)."""
        found: dict[str, BrpFacts | None] = {}
        for bsn in bsns:
            kept = self.copy.get((sandbox_id, bsn))
            if kept is not None:
                found[bsn] = kept
        asked = [bsn for bsn in dict.fromkeys(bsns) if bsn not in found]
        if asked:
            news = self.copy.news
            followed = await self._brp.follow_many(sandbox_id, asked)
            for bsn, facts in followed.items():
                if facts is not None:
                    self.copy.keep((sandbox_id, bsn), facts, news)
            found.update(followed)
        return found

    async def person(self, sandbox_id: str, bsn: str) -> BrpFacts | None:
        return await self._brp.person(sandbox_id, bsn)

    async def candidates(self, sandbox_id: str, details: PupilDetails) -> list[BrpFacts]:
        return await self._brp.candidates(sandbox_id, details)
