"""RIO's codec: the domain's numbers are the contract's, and text no column could hold is refused by field."""

from __future__ import annotations

import pytest

from services._gen.registry.v1 import common_pb2, rio_pb2
from services.common.errors import RegistryError
from services.rio import codec
from services.rio.rules import ChangeKind, CodeSystem, RecordKind, Sector


@pytest.mark.parametrize(
    ("domain", "prefix", "descriptor"),
    [
        (Sector, "SECTOR_", common_pb2.Sector),
        (CodeSystem, "COURSE_CODE_SYSTEM_", rio_pb2.CourseCodeSystem),
        (RecordKind, "RIO_RECORD_KIND_", rio_pb2.RioRecordKind),
        (ChangeKind, "RIO_CHANGE_KIND_", rio_pb2.RioChangeKind),
    ],
)
def test_domain_enums_are_numbered_as_the_contract(domain: type, prefix: str, descriptor: object) -> None:
    # The tables store these numbers and the change log hands them out as the contract's enums.
    contract = {name.removeprefix(prefix): number for name, number in descriptor.items() if number}  # type: ignore[attr-defined]
    assert {member.name: member.value for member in domain} == contract  # type: ignore[attr-defined]


def test_text_longer_than_its_column_is_refused_naming_every_field_including_nested_ones() -> None:
    request = rio_pb2.CreateLocationRequest(
        name="n" * 201, address=common_pb2.Address(street="s" * 201, city="c" * 101, house_number_addition="A")
    )
    with pytest.raises(RegistryError) as refused:
        codec.check_text(request)
    assert [(v.field, v.code) for v in refused.value.violations] == [
        ("name", "SBX-TOO-LONG"),
        ("address.street", "SBX-TOO-LONG"),
        ("address.city", "SBX-TOO-LONG"),
    ]
    codec.check_text(rio_pb2.CreateLocationRequest(name="n" * 200, address=common_pb2.Address(city="c" * 100)))


def test_a_course_decodes_its_system_and_leaves_the_sector_to_the_rules() -> None:
    course = codec.new_course(
        rio_pb2.CreateCourseRequest(
            course_code="25001", code_system=rio_pb2.COURSE_CODE_SYSTEM_CREBO, name=" Kok ", level="MBO-2"
        )
    )
    assert (course.code_system, course.sector, course.name, course.begin) == (CodeSystem.CREBO, None, "Kok", None)
    with pytest.raises(RegistryError) as refused:
        codec.new_course(rio_pb2.CreateCourseRequest(course_code="25001", name="Kok", level="MBO-2"))
    assert [(v.field, v.code) for v in refused.value.violations] == [("code_system", "SBX-INVALID-ENUM")]


def test_a_location_use_names_its_location_and_may_leave_the_board_to_the_header() -> None:
    use = codec.new_location_use(rio_pb2.CreateLocationUseRequest(location_code="100X001"))
    assert (use.location_code, use.board_code, use.begin, use.end) == ("100X001", "", None, None)
    for request, field, reason in (
        (rio_pb2.CreateLocationUseRequest(), "location_code", "SBX-REQUIRED"),
        (
            rio_pb2.CreateLocationUseRequest(location_code="100X001", board_code="100A001"),
            "board_code",
            "SBX-MALFORMED",
        ),
    ):
        with pytest.raises(RegistryError) as refused:
            codec.new_location_use(request)
        assert [(v.field, v.code) for v in refused.value.violations] == [(field, reason)]
    history = codec.location_uses_query(rio_pb2.ListLocationUsesRequest(board_code="100B001", all_periods=True))
    assert history.all_periods and history.board_code == "100B001" and history.location_code == ""
