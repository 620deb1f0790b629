"""ROD's copy of RIO's offering checks, kept while ROD follows RIO's change stream: most registrations ask RIO nothing.

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

With several RIO processes behind one address a write in another process does
not wait for ROD's stream, so the copy is kept by default only on SQLite (one
process per register); REGISTRY_ROD_PEER_COPIES=true turns it on with
PostgreSQL when RIO is one process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from services.rod.funding import Sector
from services.rod.peers import Rio
from services.rod.rules import OfferingCheck, SchoolLocations

# ("offering", sandbox, school, location, course, date) or ("locations", sandbox, school, date).
CopyKey = tuple[object, ...]
T = TypeVar("T")
# Answers kept at most; beyond it the copy starts afresh (a bound on memory, not a cache policy worth more).
MAX_KEPT = 100_000


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
