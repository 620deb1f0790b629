"""RIO rules without a server: validity periods, versions, as-of selection, ownership, the offering decision."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import grpc
import pytest

from services.common.errors import RegistryError
from services.common.identifiers import format_rio_code
from services.rio import rules
from services.rio.rules import Period

D = dt.date


@dataclass
class Version:
    name: str
    begin_date: dt.date
    end_date: dt.date | None = None


def test_a_period_includes_its_first_and_last_day() -> None:
    period = Period(D(2020, 8, 1), D(2021, 7, 31))
    assert period.contains(D(2020, 8, 1)) and period.contains(D(2021, 7, 31))
    assert not period.contains(D(2020, 7, 31)) and not period.contains(D(2021, 8, 1))
    assert Period(D(2020, 8, 1)).contains(D(2999, 1, 1))


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        (Period(D(2020, 1, 1), D(2020, 12, 31)), Period(D(2020, 12, 31)), True),  # touching on one shared day
        (Period(D(2020, 1, 1), D(2020, 12, 31)), Period(D(2021, 1, 1)), False),  # back to back
        (Period(D(2020, 1, 1)), Period(D(1990, 1, 1), D(2019, 12, 31)), False),
        (Period(D(2020, 1, 1)), Period(D(2030, 1, 1)), True),  # two open periods always meet
        (Period(D(2020, 1, 1), D(2020, 1, 1)), Period(D(2019, 1, 1), D(2021, 1, 1)), True),
    ],
)
def test_overlap_is_symmetric_and_exact(a: Period, b: Period, overlap: bool) -> None:
    assert a.overlaps(b) is overlap and b.overlaps(a) is overlap


def test_an_einddatum_before_the_begindatum_is_refused_naming_the_field() -> None:
    [violation] = rules.check_period(D(2020, 8, 1), D(2020, 7, 31))
    assert (violation.field, violation.code) == ("end_date", rules.END_BEFORE_BEGIN)
    assert rules.check_period(D(2020, 8, 1), D(2020, 8, 1)) == []  # a one-day period is fine
    assert rules.check_period(D(2020, 8, 1), None) == []


def test_as_of_picks_the_version_valid_on_the_peildatum() -> None:
    versions = [
        Version("old", D(2000, 1, 1), D(2009, 12, 31)),
        Version("new", D(2010, 1, 1), D(2029, 12, 31)),
    ]
    assert rules.as_of(versions, D(1999, 12, 31)) is None
    assert rules.as_of(versions, D(2009, 12, 31)).name == "old"  # type: ignore[union-attr]
    assert rules.as_of(versions, D(2010, 1, 1)).name == "new"  # type: ignore[union-attr]
    assert rules.as_of(versions, D(2030, 1, 1)) is None


def test_a_new_version_ends_the_current_one_the_day_before_and_keeps_its_planned_end() -> None:
    plan = rules.plan_new_version(Period(D(2020, 8, 1), D(2030, 7, 31)), D(2024, 8, 1))
    assert plan.current == Period(D(2020, 8, 1), D(2024, 7, 31))
    assert plan.new == Period(D(2024, 8, 1), D(2030, 7, 31))
    assert not plan.current.overlaps(plan.new)


def test_a_new_version_may_not_overlap_or_follow_an_ended_record() -> None:
    with pytest.raises(RegistryError) as same_day:
        rules.plan_new_version(Period(D(2020, 8, 1)), D(2020, 8, 1))
    assert same_day.value.violations[0].field == "effective_date"
    assert same_day.value.reason == rules.PERIOD_OVERLAP
    with pytest.raises(RegistryError) as ended:
        rules.plan_new_version(Period(D(2020, 8, 1), D(2021, 7, 31)), D(2022, 1, 1))
    assert ended.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_ending_sets_the_einddatum_but_not_before_the_begindatum() -> None:
    assert rules.plan_end(Period(D(2020, 8, 1)), D(2020, 8, 1)) == Period(D(2020, 8, 1), D(2020, 8, 1))
    with pytest.raises(RegistryError) as early:
        rules.plan_end(Period(D(2020, 8, 1)), D(2020, 7, 31))
    assert early.value.reason == rules.END_BEFORE_BEGIN


def test_first_overlap_finds_a_clashing_fact() -> None:
    existing = [Version("a", D(2000, 1, 1), D(2004, 12, 31)), Version("b", D(2010, 1, 1))]
    assert rules.first_overlap(existing, Period(D(2005, 1, 1), D(2009, 12, 31))) is None
    assert rules.first_overlap(existing, Period(D(2005, 1, 1))).name == "b"  # type: ignore[union-attr]


def test_only_the_owner_or_the_sandbox_admin_may_change_a_record() -> None:
    rules.require_owner(None, "100B001")
    rules.require_owner("100B001", "100B001")
    with pytest.raises(RegistryError) as other:
        rules.require_owner("100B002", "100B001", field="board_code")
    assert other.value.code == grpc.StatusCode.PERMISSION_DENIED and other.value.reason == "AUT401"
    assert other.value.violations[0].field == "board_code"
    with pytest.raises(RegistryError):
        rules.require_admin("100B001", "add courses")


def test_an_offering_is_given_at_a_location_the_providers_board_uses_that_day() -> None:
    day = D(2025, 10, 1)
    assert rules.check_location_of_board("100B001", "100B001", day) == []
    for user in ("100B002", None):
        [violation] = rules.check_location_of_board(user, "100B001", day)
        assert (violation.field, violation.code) == ("location_code", rules.LOCATION_NOT_IN_USE)


@dataclass
class Use:
    board_code: str
    begin_date: dt.date
    end_date: dt.date | None = None


# Board 1 used the location until the summer of 2023, board 2 from then on.
HANDED_OVER = [Use("100B001", D(2010, 8, 1), D(2023, 7, 31)), Use("100B002", D(2023, 8, 1))]


def test_the_user_on_a_date_is_the_board_whose_use_covers_it() -> None:
    assert rules.user_on(HANDED_OVER, D(2023, 7, 31)) == "100B001"
    assert rules.user_on(HANDED_OVER, D(2023, 8, 1)) == "100B002"
    assert rules.user_on(HANDED_OVER, D(2009, 1, 1)) is None


def test_a_location_has_one_user_at_a_time_and_a_handover_follows_the_old_use() -> None:
    first = [Use("100B001", D(2010, 8, 1))]
    [clash] = rules.check_new_use(first, "100B002", Period(D(2023, 8, 1)))
    assert (clash.field, clash.code) == ("begin_date", rules.LOCATION_IN_USE) and "100B001" in clash.description
    [twice] = rules.check_new_use(first, "100B001", Period(D(2023, 8, 1)))
    assert twice.code == rules.PERIOD_OVERLAP
    assert rules.check_new_use(HANDED_OVER[:1], "100B002", Period(D(2023, 8, 1))) == []
    assert rules.check_new_use(HANDED_OVER, "100B003", Period(D(2023, 7, 31), D(2023, 7, 31)))[0].code == (
        rules.LOCATION_IN_USE
    )


def test_a_use_lies_within_its_locations_life() -> None:
    location = Period(D(2010, 8, 1), D(2030, 7, 31))
    assert rules.check_use_within_location(location, Period(D(2010, 8, 1), D(2030, 7, 31))) == []
    [early] = rules.check_use_within_location(location, Period(D(2010, 7, 31)))
    assert (early.field, early.code) == ("location_code", rules.LOCATION_UNKNOWN)
    for end in (None, D(2030, 8, 1)):
        [late] = rules.check_use_within_location(location, Period(D(2020, 1, 1), end))
        assert (late.field, late.code) == ("end_date", rules.LOCATION_UNKNOWN)


def test_the_board_answering_for_a_location_is_its_user_on_the_date_or_the_nearest_one() -> None:
    assert rules.responsible_board(HANDED_OVER, D(2020, 1, 1)) == "100B001"
    assert rules.responsible_board(HANDED_OVER, D(2024, 1, 1)) == "100B002"
    assert rules.responsible_board(HANDED_OVER, D(2000, 1, 1)) == "100B001"  # before any use: the first user
    gap = [Use("100B001", D(2010, 8, 1), D(2012, 7, 31)), Use("100B002", D(2015, 8, 1))]
    assert rules.responsible_board(gap, D(2013, 1, 1)) == "100B001"  # unused: the last user so far
    assert rules.responsible_board([], D(2013, 1, 1)) is None
    rules.require_user(None, None, D(2013, 1, 1))  # the admin always may
    rules.require_user("100B002", "100B002", D(2024, 1, 1))
    with pytest.raises(RegistryError) as refused:
        rules.require_user("100B001", "100B002", D(2024, 1, 1))
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and refused.value.reason == "AUT401"


@pytest.mark.parametrize(
    ("facts", "offered", "reason"),
    [
        ({}, True, ""),
        ({"location_found": False, "location_user": None}, False, "A01060"),
        ({"location_found": False, "course_found": False}, False, "A01060"),  # location is checked first
        ({"course_found": False}, False, "A01070"),
        ({"provider_board": None}, False, "SBX-INSTITUTION-UNKNOWN"),
        ({"location_user": "100B002"}, False, "SBX-LOCATION-NOT-IN-USE"),  # another board uses it that day
        ({"location_user": None}, False, "SBX-LOCATION-NOT-IN-USE"),  # nobody uses it that day
        ({"offering_found": False}, False, "SBX-NOT-OFFERED"),
    ],
)
def test_the_offering_decision_follows_the_register_order(facts: dict[str, object], offered: bool, reason: str) -> None:
    arguments: dict[str, object] = {
        "day": D(2025, 10, 1),
        "institution_code": "25BE",
        "course_code": "BAO",
        "location_code": "100X001",
        "location_found": True,
        "location_user": "100B001",
        "course_found": True,
        "provider_board": "100B001",
        "offering_found": True,
    }
    arguments.update(facts)
    decision = rules.decide_offering(**arguments)  # type: ignore[arg-type]
    assert (decision.offered, decision.reason_code) == (offered, reason)
    assert bool(decision.reason) is not offered


def test_rio_code_numbers_round_trip_and_the_next_code_follows_the_highest() -> None:
    for number in (1, 999, 1000, 123_456):
        assert rules.rio_code_number("provider", format_rio_code("provider", number)) == number
    assert rules.next_rio_number("location", []) == 1
    assert rules.next_rio_number("location", ["100X007", "101X002", "rubbish"]) == 1003
    with pytest.raises(ValueError):
        rules.rio_code_number("board", "100A001")


def test_a_course_belongs_to_its_code_systems_sector_at_one_of_its_levels() -> None:
    assert rules.course_sector(rules.CodeSystem.CREBO, None, "MBO-2") == rules.Sector.MBO
    assert rules.course_sector(rules.CodeSystem.ILT, rules.Sector.VO, "VO-HAVO") == rules.Sector.VO
    for system, sector, level, field in (
        (rules.CodeSystem.CREBO, rules.Sector.HO, "MBO-2", "sector"),
        (rules.CodeSystem.ISAT, None, "MBO-2", "level"),
    ):
        with pytest.raises(RegistryError) as refused:
            rules.course_sector(system, sector, level)
        assert [v.field for v in refused.value.violations] == [field]
