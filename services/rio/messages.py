"""Rows of the rio tables as protobuf messages, and change-log entries as RioChange."""

from __future__ import annotations

import datetime as dt

from google.protobuf.message import Message

from services._gen.registry.v1 import common_pb2, rio_pb2
from services.common.dates import to_proto_date, to_timestamp
from services.rio.tables import (
    RioBoard,
    RioChangeEntry,
    RioCourse,
    RioCourseOffering,
    RioLocation,
    RioProvider,
)


def validity(begin: dt.date, end: dt.date | None) -> common_pb2.ValidityPeriod:
    return common_pb2.ValidityPeriod(begin_date=to_proto_date(begin), end_date=to_proto_date(end))


def board_message(row: RioBoard) -> rio_pb2.Board:
    return rio_pb2.Board(
        board_code=row.board_code,
        name=row.name,
        kvk_number=row.kvk_number,
        validity=validity(row.begin_date, row.end_date),
    )


def provider_message(row: RioProvider) -> rio_pb2.Provider:
    return rio_pb2.Provider(
        provider_code=row.provider_code,
        board_code=row.board_code,
        institution_code=row.institution_code,
        name=row.name,
        sector=row.sector,  # type: ignore[arg-type]
        validity=validity(row.begin_date, row.end_date),
        version=row.version,
    )


def address_message(row: RioLocation) -> common_pb2.Address:
    return common_pb2.Address(
        street=row.street,
        house_number=row.house_number,
        house_number_addition=row.house_number_addition,
        postcode=row.postcode,
        city=row.city,
        municipality_code=row.municipality_code,
        country_code=row.country_code,
    )


def location_message(row: RioLocation) -> rio_pb2.Location:
    return rio_pb2.Location(
        location_code=row.location_code,
        board_code=row.board_code,
        name=row.name,
        address=address_message(row),
        validity=validity(row.begin_date, row.end_date),
        version=row.version,
    )


def course_message(row: RioCourse) -> rio_pb2.Course:
    return rio_pb2.Course(
        course_code=row.course_code,
        code_system=row.code_system,  # type: ignore[arg-type]
        sector=row.sector,  # type: ignore[arg-type]
        name=row.name,
        level=row.level,
        validity=validity(row.begin_date, row.end_date),
    )


def offering_message(row: RioCourseOffering) -> rio_pb2.CourseOffering:
    return rio_pb2.CourseOffering(
        offering_id=row.offering_id,
        provider_code=row.provider_code,
        course_code=row.course_code,
        location_code=row.location_code,
        validity=validity(row.begin_date, row.end_date),
    )


# record_kind -> (the RioChange oneof field, the message class stored in the log)
RECORD_TYPES: dict[int, tuple[str, type[Message]]] = {
    rio_pb2.RIO_RECORD_KIND_BOARD: ("board", rio_pb2.Board),
    rio_pb2.RIO_RECORD_KIND_PROVIDER: ("provider", rio_pb2.Provider),
    rio_pb2.RIO_RECORD_KIND_LOCATION: ("location", rio_pb2.Location),
    rio_pb2.RIO_RECORD_KIND_COURSE: ("course", rio_pb2.Course),
    rio_pb2.RIO_RECORD_KIND_COURSE_OFFERING: ("course_offering", rio_pb2.CourseOffering),
}


def change_message(entry: RioChangeEntry) -> rio_pb2.RioChange:
    assert entry.cursor is not None
    change = rio_pb2.RioChange(
        cursor=entry.cursor,
        sandbox_id=entry.sandbox_id,
        record_kind=entry.record_kind,  # type: ignore[arg-type]
        change_kind=entry.change_kind,  # type: ignore[arg-type]
        code=entry.code,
        committed_at=to_timestamp(entry.committed_at),
    )
    field, _ = RECORD_TYPES[entry.record_kind]
    getattr(change, field).MergeFromString(entry.record)
    return change
