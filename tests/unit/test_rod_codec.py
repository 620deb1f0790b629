"""ROD's codec: bad input is refused with INVALID_ARGUMENT naming the field, before any database sees it."""

from __future__ import annotations

import grpc
import pytest

from services._gen.registry.v1 import common_pb2, rod_pb2
from services.common.errors import RegistryError
from services.common.paging import MAX_TOKEN_LENGTH
from services.rod import codec
from services.rod.rules import MAX_INT32, Outcome, Trigger

DOCUMENT = "0b8f0c4e-5d6f-4a4e-8c53-2b2f8d9c4b10"


def test_the_domain_enums_keep_the_contracts_numbers() -> None:
    assert {t.name: t.value for t in Trigger} == {
        name.removeprefix("FEEDBACK_TRIGGER_"): number
        for name, number in rod_pb2.FeedbackTrigger.items()
        if number != rod_pb2.FEEDBACK_TRIGGER_UNSPECIFIED
    }
    assert {o.name: o.value for o in Outcome} == {
        name.removeprefix("FEEDBACK_OUTCOME_"): number
        for name, number in rod_pb2.FeedbackOutcome.items()
        if number != rod_pb2.FEEDBACK_OUTCOME_UNSPECIFIED
    }


def refused_fields(decode: object, request: object) -> list[str]:
    assert callable(decode)
    with pytest.raises(RegistryError) as refused:
        decode(request)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return [v.field for v in refused.value.violations]


def test_strings_longer_than_their_column_or_with_nul_are_refused() -> None:
    period = rod_pb2.EnrolmentPeriod(location_code="1" * 21, course_code="21\x0001")
    period.begin_date.year, period.begin_date.month, period.begin_date.day = 2027, 8, 15
    change = rod_pb2.ChangeEnrolmentRequest(document_id=DOCUMENT, enrolment_id="e" * 37, periods=[period], sequence=2)
    assert refused_fields(codec.change_enrolment, change) == [
        "enrolment_id",
        "periods[0].location_code",
        "periods[0].course_code",
    ]
    details = rod_pb2.PupilDetails(
        given_names="Sam\x00",
        surname="J" * 201,
        address=common_pb2.Address(postcode="1012AB", house_number=1, house_number_addition="x" * 21),
    )
    details.birth_date.year, details.birth_date.month, details.birth_date.day = 2014, 5, 5
    assert refused_fields(codec.identify_pupil, rod_pb2.IdentifyPupilRequest(details=details)) == [
        "details.surname",
        "details.given_names",
        "details.address.house_number_addition",
    ]
    assert refused_fields(codec.list_feedback, rod_pb2.ListFeedbackRequest(cause_id="c" * 121)) == ["cause_id"]


def test_numbers_beyond_their_32_bit_columns_are_refused() -> None:
    end = rod_pb2.EndEnrolmentRequest(document_id=DOCUMENT, enrolment_id="e", sequence=MAX_INT32 + 1)
    end.end_date.year, end.end_date.month, end.end_date.day = 2027, 10, 1
    assert refused_fields(codec.end_enrolment, end) == ["sequence"]
    ack = rod_pb2.AcknowledgeFeedbackRequest(subscriber="package", cursor=MAX_INT32 + 1)
    assert refused_fields(codec.acknowledge_feedback, ack) == ["cursor"]
    stream = rod_pb2.StreamFeedbackRequest(after_cursor=-1)
    assert refused_fields(codec.follow_feedback, stream) == ["after_cursor"]


def test_dates_rod_cannot_count_with_and_foreign_page_tokens_are_refused() -> None:
    end = rod_pb2.EndEnrolmentRequest(document_id=DOCUMENT, enrolment_id="e", sequence=2)
    end.end_date.year, end.end_date.month, end.end_date.day = 9999, 12, 31
    assert refused_fields(codec.end_enrolment, end) == ["end_date"]
    overlong = rod_pb2.ListFeedbackRequest(page=common_pb2.PageRequest(page_token="A" * (MAX_TOKEN_LENGTH + 1)))
    assert refused_fields(codec.list_feedback, overlong) == ["page.page_token"]
    too_big = rod_pb2.ListEnrolmentsRequest(institution_code="25BE", page=common_pb2.PageRequest(page_size=501))
    assert refused_fields(codec.list_enrolments, too_big) == ["page.page_size"]


def test_sector_fields_outside_the_contracts_values_and_a_long_end_reason_are_refused() -> None:
    period = rod_pb2.EnrolmentPeriod(course_code="25180")
    period.begin_date.year, period.begin_date.month, period.begin_date.day = 2027, 8, 15
    change = rod_pb2.ChangeEnrolmentRequest(
        document_id=DOCUMENT, enrolment_id="e", periods=[period], sequence=2, ho_study_mode=4, mbo_leerweg=3
    )  # type: ignore[arg-type]
    # A period without a location is no shape error: a po or vo school with one location may leave it out.
    assert refused_fields(codec.change_enrolment, change) == ["mbo_leerweg", "ho_study_mode"]
    change.ho_study_mode, change.mbo_leerweg = rod_pb2.HO_STUDY_MODE_DUAAL, rod_pb2.MBO_LEERWEG_UNSPECIFIED
    assert codec.change_enrolment(change).fields.study_mode is not None
    end = rod_pb2.EndEnrolmentRequest(document_id=DOCUMENT, enrolment_id="e", sequence=2, end_reason_code="x" * 21)
    end.end_date.year, end.end_date.month, end.end_date.day = 2028, 1, 31
    assert refused_fields(codec.end_enrolment, end) == ["end_reason_code"]
