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
    first: bool = False,
    course: str = "",
) -> EnrolmentFacts:
    period = Period(begin, end, offering_end, course_code=course)
    return EnrolmentFacts(eid, school, sector, (period,), order, deleted, first_enrolment=first)


def decision_on(evaluation: f.Evaluation, count_date: dt.date) -> Decision:
    return next(d for d in evaluation.decisions if d.count_date == count_date)


TEEN = PersonFacts(birth_date=D(2013, 5, 5))


# --- count dates ---


def test_po_counts_on_1_february_from_2022_and_on_1_october_before() -> None:
    """vbs.nl: "Sinds 2022 is 1 februari wettelijk de nieuwe officiële teldatum"; the 2022 count funds 2023."""
    calendar = CountDateCalendar()
    assert calendar.count_dates_in_year(Sector.PO, 2022) == (D(2022, 2, 1),)
    assert calendar.count_dates_in_year(Sector.PO, 2021) == (D(2021, 10, 1),)
    assert calendar.is_count_date(Sector.PO, D(2022, 2, 1)) and not calendar.is_count_date(Sector.PO, D(2022, 10, 1))
    assert not calendar.is_count_date(Sector.VO, D(2022, 2, 1))
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


@pytest.mark.parametrize(
    ("count_date", "deadline"),
    [
        (D(2023, 2, 1), D(2023, 2, 28)),  # PO-Raad: "uiterlijk 28 februari 2023"
        (D(2025, 2, 1), D(2025, 3, 3)),  # DUO: 1 February 2025 in a weekend, so "tot en met 3 maart 2025"
        (D(2026, 10, 1), D(2026, 10, 28)),  # a Thursday: the 28th day from it
        (D(2026, 2, 1), D(2026, 3, 2)),  # a Sunday: from Monday 2 February, ending Sunday 1 March, so Monday
    ],
)
def test_the_prikdatum_follows_duos_practice(count_date: dt.date, deadline: dt.date) -> None:
    assert f.duo_correction_deadline(count_date) == deadline
    assert f.DEFAULT_CALENDAR.correction_deadline(Sector.PO, count_date) == deadline


def test_count_is_provisional_until_the_prikdatum_then_final() -> None:
    calendar = f.DEFAULT_CALENDAR
    assert not calendar.is_final(Sector.VO, VO_COUNT, D(2026, 10, 28))
    assert calendar.is_final(Sector.VO, VO_COUNT, D(2026, 10, 29))


def test_the_prikdatum_is_configurable_per_sector_and_count_date() -> None:
    calendar = CountDateCalendar(deadlines={(Sector.VO, VO_COUNT): D(2026, 11, 15)})
    assert calendar.correction_deadline(Sector.VO, VO_COUNT) == D(2026, 11, 15)
    assert calendar.correction_deadline(Sector.MBO, VO_COUNT) == D(2026, 10, 28)


def test_a_change_inside_the_window_alters_the_count_and_just_after_it_does_not() -> None:
    registered = evaluate_pupil([enrolment()], TEEN, {}, today=D(2026, 9, 1))["e1"]
    assert decision_on(registered, VO_COUNT).funded
    # The school ends the enrolment before the count date.
    ended = enrolment(end=D(2026, 9, 30))
    previous = {"e1": registered.decisions}
    inside = evaluate_pupil([ended], TEEN, previous, today=D(2026, 10, 28))["e1"]
    assert not decision_on(inside, VO_COUNT).funded
    assert decision_on(inside, VO_COUNT).reason_codes == (f.NOT_ENROLLED_ON_COUNT_DATE,)
    after = evaluate_pupil([ended], TEEN, previous, today=D(2026, 10, 29))["e1"]
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
        (D(2023, 2, 2), False, (f.PO_UNDER_4,)),  # turns 4 the day after the count date
        (D(2023, 2, 1), True, (f.FUNDED,)),  # turns 4 on the count date itself
        (D(2023, 1, 31), True, (f.FUNDED,)),  # turned 4 the day before
        # WPO art. 39: up to the end of the school year in which the pupil turns 14 (school year from 1 August 2026).
        (D(2013, 2, 1), True, (f.FUNDED,)),  # turns 14 on the count date, during the school year
        (D(2012, 8, 1), True, (f.FUNDED,)),  # turned 14 on the school year's first day
        (D(2012, 7, 31), False, (f.PO_PAST_14,)),  # was 14 on the last day before the school year
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


def test_the_other_sectors_age_limits_are_the_sandboxs_own_code() -> None:
    assert set(f.AGE_LIMITS) == {Sector.VO, Sector.MBO, Sector.HO}
    assert f.OUTSIDE_SANDBOX_AGE_LIMIT.startswith("SBX-")
    assert f.age_reason(Sector.MBO, D(2011, 10, 2), VO_COUNT) == f.OUTSIDE_SANDBOX_AGE_LIMIT  # 15 on the count date
    assert f.age_reason(Sector.MBO, D(1996, 10, 2), VO_COUNT) is None  # 29 on the count date
    assert f.age_reason(Sector.MBO, D(1996, 10, 1), VO_COUNT) == f.OUTSIDE_SANDBOX_AGE_LIMIT  # 30 on it
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


def test_a_pupil_abroad_on_an_open_count_date_stays_unfunded_after_returning() -> None:
    """A return does not erase the stay abroad: the count date spent abroad stays unfunded, the next one counts."""
    back_home = PersonFacts(D(2013, 5, 5), abroad_before=((D(2026, 9, 20), D(2026, 10, 10)),))
    evaluation = evaluate_pupil([enrolment()], back_home, {}, D(2026, 10, 12))["e1"]
    assert decision_on(evaluation, VO_COUNT).reason_codes == (f.EMIGRATED,)
    assert dict(evaluation.signals[0].parameters) == {"date": "2026-09-20", "returned": "2026-10-11"}
    assert back_home.abroad_on(D(2026, 10, 10)) and not back_home.abroad_on(D(2026, 10, 11))
    returned_before = PersonFacts(D(2013, 5, 5), abroad_before=((D(2026, 9, 1), D(2026, 9, 30)),))
    assert decision_on(evaluate_pupil([enrolment()], returned_before, {}, D(2026, 10, 12))["e1"], VO_COUNT).funded


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


# DUO, "Dubbele inschrijving kan bekostiging in gevaar brengen": first enrolments at several institutions, or
# in different programmes of one, get status JK; the same programme twice at one institution DUO decides itself.
STUDENT = PersonFacts(D(2007, 3, 3))
HO_START = D(2026, 9, 1)


def ho(eid: str, school: str, course: str, *, first: bool = True, order: int = 1) -> EnrolmentFacts:
    return enrolment(eid, school, Sector.HO, begin=HO_START, order=order, first=first, course=course)


def test_ho_first_enrolments_at_two_institutions_are_both_unfunded_with_jk() -> None:
    result = evaluate_pupil([ho("a", "21AA", "34567"), ho("b", "22BB", "34567", order=2)], STUDENT, {}, HO_START)
    for eid in ("a", "b"):
        decision = decision_on(result[eid], VO_COUNT)
        assert not decision.funded and decision.reason_codes == (f.HO_FIRST_ENROLMENT_TWICE,)
        assert decision.status_code == "JK"
        assert [s.code for s in result[eid].signals] == [f.SIGNAL_HO_FIRST_ENROLMENT_TWICE]


def test_ho_first_enrolments_in_two_programmes_of_one_institution_are_jk() -> None:
    result = evaluate_pupil([ho("a", "21AA", "34567"), ho("b", "21AA", "50012", order=2)], STUDENT, {}, HO_START)
    assert {decision_on(result[e], VO_COUNT).status_code for e in "ab"} == {"JK"}


def test_ho_the_same_programme_twice_at_one_institution_is_decided_by_duo_itself() -> None:
    result = evaluate_pupil([ho("a", "21AA", "34567"), ho("b", "21AA", "34567", order=2)], STUDENT, {}, HO_START)
    assert decision_on(result["a"], VO_COUNT).funded
    assert decision_on(result["b"], VO_COUNT).reason_codes == (f.SECOND_ENROLMENT,)
    assert decision_on(result["b"], VO_COUNT).status_code == "V"


def test_ho_only_enrolments_flagged_first_take_part() -> None:
    not_first = ho("b", "22BB", "34567", first=False, order=2)
    result = evaluate_pupil([ho("a", "21AA", "34567"), not_first], STUDENT, {}, HO_START)
    assert decision_on(result["a"], VO_COUNT).funded
    assert decision_on(result["b"], VO_COUNT).reason_codes == (f.SECOND_ENROLMENT,)


def test_ho_jk_stays_provisional_past_the_prikdatum_until_resolved() -> None:
    both = [ho("a", "21AA", "34567"), ho("b", "22BB", "34567", order=2)]
    before = evaluate_pupil(both, STUDENT, {}, HO_START)
    previous = {k: v.decisions for k, v in before.items()}
    late = D(2026, 12, 1)
    still = evaluate_pupil(both, STUDENT, previous, late)
    assert decision_on(still["a"], VO_COUNT).status_code == "JK" and not decision_on(still["a"], VO_COUNT).final
    resolved = [both[0], ho("b", "22BB", "34567", first=False, order=2)]
    after = evaluate_pupil(resolved, STUDENT, {k: v.decisions for k, v in still.items()}, late)
    funded = decision_on(after["a"], VO_COUNT)
    assert funded.funded and funded.final and funded.status_code == "D"


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
