"""The seed's plan of onderwijslocatiegebruik, without a database: every location used, a few handed over."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from services.common.seeding import PROFILES
from services.rio import seed


def test_every_seeded_location_is_used_and_a_few_changed_hands_before_their_offerings_began() -> None:
    plan = seed.plan(PROFILES["medium"], 3)
    uses: dict[int, list[dict[str, object]]] = defaultdict(list)
    for use in plan.location_uses:
        uses[int(use["location"])].append(use)  # type: ignore[call-overload]
    assert set(uses) == set(range(len(plan.locations)))
    handed_over = {index: pair for index, pair in uses.items() if len(pair) == 2}
    assert 0 < len(handed_over) < len(plan.locations) // 10
    for index, (former, current) in handed_over.items():
        location = plan.locations[index]
        # The first user registered the location; its use ends the day before the current board's begins.
        assert former["begin_date"] == location["begin_date"] and former["board"] == location["board"]
        assert former["board"] != current["board"] and current["end_date"] is None
        assert former["end_date"] == current["begin_date"] - dt.timedelta(days=1)  # type: ignore[operator]
    # Each offering is given where its provider's board uses the location on the offering's begindatum.
    provider_board = [p["board"] for p in plan.providers]
    for offering in plan.offerings:
        on_begin = [
            u
            for u in uses[offering["location"]]
            if u["begin_date"] <= offering["begin_date"]  # type: ignore[operator]
            and (u["end_date"] is None or offering["begin_date"] <= u["end_date"])  # type: ignore[operator]
        ]
        assert [u["board"] for u in on_begin] == [provider_board[offering["provider"]]]
    # A few buildings stand vacant: their one use ended on 31 July 2023 and nothing is offered there.
    assert plan.vacated and all(
        [(u["begin_date"], u["end_date"]) for u in uses[index]]
        == [(plan.locations[index]["begin_date"], seed.ENDED_ON)]
        for index in plan.vacated
    )
    assert not plan.vacated & {offering["location"] for offering in plan.offerings}
    assert len({u["use_id"] for u in plan.location_uses}) == len(plan.location_uses)
    assert seed.plan(PROFILES["medium"], 3).location_uses == plan.location_uses  # deterministic
