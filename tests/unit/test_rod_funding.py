"""ROD funding rules on their boundaries: count dates, birthdays, end dates, correction window, conflicts."""

from __future__ import annotations

import datetime as dt

import pytest

from services.rod import funding as f
from services.rod.funding import (
    CountDateCalendar,
    Decision,
    EnrolmentFacts,
    Period,
    PersonFacts,
    Sector,
    evaluate_pupil,
)

D = dt.date
VO_COUNT = D(2026, 10, 1)
SCHOOL_YEAR_START = D(2026, 8, 15)
PO_COUNT = D(2027, 2, 1)


def enrolment(
    eid: str = "e1",
    school: str = "25BE",
    sector: Sector = Sector.VO,
    begin: dt.date = SCHOOL_YEAR_START,
    end: dt.date | None = None,
    order: int = 1,
    offering_end: dt.date | None = None,
    deleted: bool = False,
) -> EnrolmentFacts:
    return EnrolmentFacts(eid, school, sector, (Period(begin, end, offering_end),), order, deleted)


def decision_on(evaluation: f.Evaluation, count_date: dt.date) -> Decision:
    return next(d for d in evaluation.decisions if d.count_date == count_date)


TEEN = PersonFacts(birth_date=D(2013, 5, 5))


# --- count dates ---


def test_po_counts_on_1_february_since_2023_and_on_1_october_before() -> None:
    calendar = CountDateCalendar()
    assert calendar.count_dates_in_year(Sector.PO, 2023) == (D(2023, 2, 1),)
    assert calendar.count_dates_in_year(Sector.PO, 2022) == (D(2022, 10, 1),)
    for sector in (Sector.VO, Sector.MBO, Sector.HO):
        assert calendar.count_dates_in_year(sector, 2027) == (D(2027, 10, 1),)


def test_the_calendar_is_configurable_per_year() -> None:
    calendar = CountDateCalendar(po_february_from_year=2030, overrides={(Sector.VO, 2027): (D(2027, 9, 15),)})
    assert calendar.count_dates_in_year(Sector.PO, 2029) == (D(2029, 10, 1),)
    assert calendar.count_dates_in_year(Sector.VO, 2027) == (D(2027, 9, 15),)
    assert calendar.next_count_date(Sector.VO, D(2027, 9, 16)) == D(2028, 10, 1)


def test_next_count_date_includes_the_day_itself() -> None:
    assert f.DEFAULT_CALENDAR.next_count_date(Sector.VO, VO_COUNT) == VO_COUNT
    assert f.DEFAULT_CALENDAR.next_count_date(Sector.VO, VO_COUNT + dt.timedelta(days=1)) == D(2027, 10, 1)


# --- correction window ---


def test_count_is_provisional_until_four_weeks_after_the_count_date_then_final() -> None:
    assert f.correction_deadline(VO_COUNT) == D(2026, 10, 29)
    assert not f.is_final(VO_COUNT, D(2026, 10, 29))
    assert f.is_final(VO_COUNT, D(2026, 10, 30))


def test_a_change_inside_the_window_alters_the_count_and_just_after_it_does_not() -> None:
    registered = evaluate_pupil([enrolment()], TEEN, {}, today=D(2026, 9, 1))["e1"]
    assert decision_on(registered, VO_COUNT).funded
    # The school ends the enrolment before the count date.
    ended = enrolment(end=D(2026, 9, 30))
    previous = {"e1": registered.decisions}
    inside = evaluate_pupil([ended], TEEN, previous, today=D(2026, 10, 29))["e1"]
    assert not decision_on(inside, VO_COUNT).funded
    assert decision_on(inside, VO_COUNT).reason_codes == (f.NOT_ENROLLED_ON_COUNT_DATE,)
    after = evaluate_pupil([ended], TEEN, previous, today=D(2026, 10, 30))["e1"]
    kept = decision_on(after, VO_COUNT)
    assert kept.funded and kept.final and kept.reason_codes == (f.FUNDED,)


def test_a_registration_after_the_count_is_final_does_not_count_there_but_counts_next_year() -> None:
    late = evaluate_pupil([enrolment()], TEEN, {}, today=D(2026, 11, 29))["e1"]
    assert [d.count_date for d in late.decisions] == [D(2027, 10, 1)]
    assert late.decisions[0].funded and not late.decisions[0].final


def test_an_open_enrolment_lists_count_dates_up_to_the_next_one_only() -> None:
    evaluation = evaluate_pupil([enrolment(begin=D(2026, 8, 15))], TEEN, {}, today=D(2026, 9, 1))["e1"]
    assert [d.count_date for d in evaluation.decisions] == [VO_COUNT]


# --- enrolled on the count date ---


def test_an_enrolment_ending_on_the_count_date_counts_and_one_ending_the_day_before_does_not() -> None:
    on = evaluate_pupil([enrolment(end=VO_COUNT)], TEEN, {}, today=D(2026, 9, 1))["e1"]
    assert decision_on(on, VO_COUNT).funded
    before = enrolment(end=VO_COUNT - dt.timedelta(days=1))
    previous = {"e1": on.decisions}
    day_before = evaluate_pupil([before], TEEN, previous, today=D(2026, 9, 1))["e1"]
    assert decision_on(day_before, VO_COUNT).reason_codes == (f.NOT_ENROLLED_ON_COUNT_DATE,)


def test_an_enrolment_starting_on_the_count_date_counts_and_one_starting_the_day_after_does_not() -> None:
    on = evaluate_pupil([enrolment(begin=VO_COUNT)], TEEN, {}, today=D(2026, 9, 1))["e1"]
    assert decision_on(on, VO_COUNT).funded
    after = evaluate_pupil([enrolment(begin=VO_COUNT + dt.timedelta(days=1))], TEEN, {}, today=D(2026, 9, 1))["e1"]
    assert [d.count_date for d in after.decisions] == [D(2027, 10, 1)]


# --- ages ---


@pytest.mark.parametrize(
    ("birth", "funded", "codes"),
    [
        (D(2023, 2, 2), False, (f.UNDER_AGE,)),  # turns 4 the day after the count date
        (D(2023, 2, 1), True, (f.FUNDED,)),  # turns 4 on the count date itself
        (D(2023, 1, 31), True, (f.FUNDED,)),  # turned 4 the day before
        (D(2013, 2, 1), False, (f.OVER_AGE,)),  # turns 14 on the count date
        (D(2013, 2, 2), True, (f.FUNDED,)),  # still 13 on the count date
    ],
)
def test_primary_age_limits_around_birthdays(birth: dt.date, funded: bool, codes: tuple[str, ...]) -> None:
    pupil = PersonFacts(birth_date=birth)
    e = enrolment(sector=Sector.PO, begin=D(2026, 8, 15))
    decision = decision_on(evaluate_pupil([e], pupil, {}, today=D(2026, 9, 1))["e1"], PO_COUNT)
    assert (decision.funded, decision.reason_codes) == (funded, codes)


def test_age_of_someone_born_on_29_february() -> None:
    assert f.age_on(D(2020, 2, 29), D(2024, 2, 28)) == 3
    assert f.age_on(D(2020, 2, 29), D(2024, 2, 29)) == 4
    assert f.age_on(D(2020, 2, 29), D(2025, 2, 28)) == 4
    assert f.age_on(D(2020, 2, 29), D(2025, 3, 1)) == 5


def test_every_sector_has_an_age_limit_with_a_reason() -> None:
    assert set(f.AGE_LIMITS) == set(Sector)
    assert f.age_reason(Sector.MBO, D(2011, 10, 2), VO_COUNT) == f.UNDER_AGE  # 15 on the count date
    assert f.age_reason(Sector.MBO, D(2010, 10, 1), VO_COUNT) is None  # 16 on the count date
    assert f.age_reason(Sector.HO, D(1950, 1, 1), VO_COUNT) is None


# --- BRP and RIO facts ---


def test_no_funding_after_death_on_or_before_the_count_date() -> None:
    e = enrolment()
    on_count = evaluate_pupil([e], PersonFacts(D(2013, 5, 5), death_date=VO_COUNT), {}, D(2026, 9, 1))["e1"]
    assert decision_on(on_count, VO_COUNT).reason_codes == (f.DECEASED,)
    assert [s.code for s in on_count.signals] == [f.SIGNAL_DECEASED]
    after = evaluate_pupil([e], PersonFacts(D(2013, 5, 5), death_date=D(2026, 10, 2)), {}, D(2026, 9, 1))["e1"]
    assert decision_on(after, VO_COUNT).funded


def test_no_funding_after_emigration() -> None:
    person = PersonFacts(D(2013, 5, 5), emigration_date=D(2026, 9, 30))
    evaluation = evaluate_pupil([enrolment()], person, {}, D(2026, 9, 1))["e1"]
    assert decision_on(evaluation, VO_COUNT).reason_codes == (f.EMIGRATED,)
    assert [s.code for s in evaluation.signals] == [f.SIGNAL_EMIGRATED]


def test_no_funding_for_an_offering_that_ended_before_the_count_date() -> None:
    ended = enrolment(offering_end=D(2026, 9, 30))
    evaluation = evaluate_pupil([ended], TEEN, {}, D(2026, 9, 1))["e1"]
    assert decision_on(evaluation, VO_COUNT).reason_codes == (f.OFFERING_ENDED,)
    assert [s.code for s in evaluation.signals] == [f.SIGNAL_OFFERING_ENDED]
    on_count = evaluate_pupil([enrolment(offering_end=VO_COUNT)], TEEN, {}, D(2026, 9, 1))["e1"]
    assert decision_on(on_count, VO_COUNT).funded


def test_the_ended_signal_names_the_rio_record_that_ended() -> None:
    closed_site = EnrolmentFacts(
        "e1", "25BE", Sector.VO, (Period(SCHOOL_YEAR_START, None, D(2026, 9, 30), "location"),), 1
    )
    (signal,) = evaluate_pupil([closed_site], TEEN, {}, D(2026, 9, 1))["e1"].signals
    assert dict(signal.parameters)["ended_record"] == "location"
    assert "location" in signal.text and "2026-09-30" in signal.text


# --- one funded enrolment per pupil per sector ---


def test_a_second_simultaneous_enrolment_is_not_funded_and_both_schools_get_a_signal() -> None:
    first = enrolment("a", "25BE", order=1)
    second = enrolment("b", "31XY", order=2)
    result = evaluate_pupil([first, second], TEEN, {}, D(2026, 9, 1))
    assert decision_on(result["a"], VO_COUNT).funded
    assert decision_on(result["b"], VO_COUNT).reason_codes == (f.SECOND_ENROLMENT,)
    assert "25BE" in decision_on(result["b"], VO_COUNT).reason
    assert [(s.code, dict(s.parameters)["other_institution_code"]) for s in result["a"].signals] == [
        (f.SIGNAL_DOUBLE_ENROLMENT, "31XY")
    ]
    assert [(s.code, dict(s.parameters)["other_institution_code"]) for s in result["b"].signals] == [
        (f.SIGNAL_DOUBLE_ENROLMENT, "25BE")
    ]


def test_enrolments_in_two_sectors_are_both_funded() -> None:
    vo = enrolment("a", "25BE", Sector.VO, order=1)
    mbo = enrolment("b", "31XY", Sector.MBO, order=2)
    person = PersonFacts(D(2009, 1, 1))
    result = evaluate_pupil([vo, mbo], person, {}, D(2026, 9, 1))
    assert decision_on(result["a"], VO_COUNT).funded and decision_on(result["b"], VO_COUNT).funded
    assert not result["a"].signals and not result["b"].signals


def test_when_the_first_school_ends_before_the_count_date_the_second_is_funded() -> None:
    first = enrolment("a", "25BE", order=1, end=D(2026, 9, 15))
    second = enrolment("b", "31XY", begin=D(2026, 9, 16), order=2)
    result = evaluate_pupil([first, second], TEEN, {}, D(2026, 9, 1))
    assert decision_on(result["b"], VO_COUNT).funded
    assert not result["b"].signals


def test_ho_first_enrolments_at_two_institutions_are_both_unfunded_with_jk() -> None:
    student = PersonFacts(D(2007, 3, 3))
    a = enrolment("a", "21AA", Sector.HO, begin=D(2026, 9, 1), order=1)
    b = enrolment("b", "22BB", Sector.HO, begin=D(2026, 9, 1), order=2)
    result = evaluate_pupil([a, b], student, {}, D(2026, 9, 1))
    for eid in ("a", "b"):
        decision = decision_on(result[eid], VO_COUNT)
        assert not decision.funded and decision.reason_codes == (f.HO_FIRST_ENROLMENT_TWICE,)
        assert [s.code for s in result[eid].signals] == [f.SIGNAL_HO_FIRST_ENROLMENT_TWICE]


def test_ho_a_later_second_enrolment_is_an_ordinary_second_enrolment() -> None:
    student = PersonFacts(D(2007, 3, 3))
    a = enrolment("a", "21AA", Sector.HO, begin=D(2026, 9, 1), order=1)
    b = enrolment("b", "22BB", Sector.HO, begin=D(2026, 9, 2), order=2)
    result = evaluate_pupil([a, b], student, {}, D(2026, 9, 1))
    assert decision_on(result["a"], VO_COUNT).funded
    assert decision_on(result["b"], VO_COUNT).reason_codes == (f.SECOND_ENROLMENT,)


def test_a_deleted_enrolment_frees_the_funding_for_the_other_school() -> None:
    first = enrolment("a", "25BE", order=1)
    second = enrolment("b", "31XY", order=2)
    before = evaluate_pupil([first, second], TEEN, {}, D(2026, 9, 1))
    previous = {k: v.decisions for k, v in before.items()}
    deleted = enrolment("a", "25BE", order=1, deleted=True)
    after = evaluate_pupil([deleted, second], TEEN, previous, D(2026, 9, 2))
    assert decision_on(after["a"], VO_COUNT).reason_codes == (f.ENROLMENT_DELETED,)
    assert decision_on(after["b"], VO_COUNT).funded
    assert not after["a"].signals and not after["b"].signals
