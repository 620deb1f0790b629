"""The bulk path's rules without a server: batch sizes, and each distinct peer question asked once per batch."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from services.common.errors import RegistryError
from services.rod import rules
from services.rod.funding import Sector
from services.rod.peers import FakeBrp, FakeClock, FakeRio, RodPeers, once_each
from services.rod.rules import BrpFacts

DAY = dt.date(2027, 8, 20)


@pytest.mark.parametrize(
    ("count", "reason"), [(0, "SBX-REQUIRED"), (rules.MAX_BULK_ENROLMENTS + 1, "SBX-BATCH-TOO-LARGE")]
)
def test_a_batch_outside_1_to_1000_items_is_refused_whole(count: int, reason: str) -> None:
    with pytest.raises(RegistryError) as refused:
        rules.require_batch_size(count)
    assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    rules.require_batch_size(rules.MAX_BULK_ENROLMENTS)  # the largest batch passes


class CountingBrp(FakeBrp):
    reads: int = 0

    async def person(self, sandbox_id: str, bsn: str) -> BrpFacts | None:
        self.reads += 1
        await asyncio.sleep(0)  # let the other askers arrive while this question is open
        return await super().person(sandbox_id, bsn)


async def test_one_batch_asks_rio_once_per_offering_and_brp_once_per_person() -> None:
    rio, brp = FakeRio(), CountingBrp()
    rio.offer("25BE", "100X001", "BAO", Sector.PO)
    brp.add("999970008", dt.date(2020, 1, 1))
    batch = once_each(RodPeers(rio=rio, brp=brp, clock=FakeClock(DAY)))

    checks = await asyncio.gather(
        *(
            batch.rio.check_offering("sbx", institution_code="25BE", location_code="100X001", course_code="BAO", on=DAY)
            for _ in range(500)
        ),
        batch.rio.check_offering("sbx", institution_code="25BE", location_code="100X002", course_code="BAO", on=DAY),
    )
    persons = await asyncio.gather(*(batch.brp.person("sbx", "999970008") for _ in range(300)))

    assert [c.offered for c in checks] == [True] * 500 + [False]
    assert len(rio.asked) == 2  # one question per distinct offering
    assert brp.reads == 1 and {p.bsn for p in persons if p} == {"999970008"}
    # The next batch asks afresh: answers are never kept beyond their batch.
    await once_each(RodPeers(rio=rio, brp=brp, clock=FakeClock(DAY))).brp.person("sbx", "999970008")
    assert brp.reads == 2
