"""ROD's use cases without a server: the service over a scratch SQLite database, in-process peers, a plain commit."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlmodel import Session

from services.common.caller import Caller
from services.common.database import Database
from services.common.wakeup import LogWakeup
from services.rod import rules
from services.rod.funding import Sector
from services.rod.peers import FakeBrp, FakeClock, FakeRio, RodPeers
from services.rod.service import RodService

T = TypeVar("T")


@dataclass(frozen=True)
class LocalCommit(Generic[T]):
    """The mutation path reduced to one transaction: no idempotency key, the outcome itself is the answer."""

    database: Database

    async def answered(self) -> T | None:
        return None

    async def __call__(self, work: Callable[[Session], T], *, locks: Sequence[str] = ()) -> T:
        return await self.database.run(work)


@dataclass
class RodUnit:
    """RodService with fakes for RIO, BRP and the clock, and one fresh sandbox per test."""

    database: Database
    rio: FakeRio = field(default_factory=FakeRio)
    brp: FakeBrp = field(default_factory=FakeBrp)
    clock: FakeClock = field(default_factory=lambda: FakeClock(dt.date(2027, 9, 1)))
    sandbox_id: str = field(default_factory=lambda: f"sb_{uuid.uuid4().hex[:12]}")

    def __post_init__(self) -> None:
        self.service = RodService(self.database, RodPeers(self.rio, self.brp, self.clock), LogWakeup())

    @property
    def admin(self) -> Caller:
        return Caller(self.sandbox_id)

    def school(self, institution_code: str) -> Caller:
        return Caller(self.sandbox_id, institution_code=institution_code)

    def registration(
        self,
        institution_code: str,
        bsn: str,
        begin: dt.date,
        *,
        location_code: str = "100X001",
        course_code: str = "2101",
        document_id: str = "",
    ) -> rules.RegisterEnrolment:
        return rules.RegisterEnrolment(
            document_id=document_id or str(uuid.uuid4()),
            institution_code=institution_code,
            pupil_number=bsn,
            pupil_has_bsn=True,
            details=None,
            periods=(rules.PeriodShape(begin, None, location_code, course_code, 0),),
            sequence=1,
        )

    def offer(self, institution_code: str, sector: Sector = Sector.VO) -> None:
        self.rio.offer(institution_code, "100X001", "2101", sector)
