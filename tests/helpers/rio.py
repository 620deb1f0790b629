"""RIO test helpers: a stub, dates, a typed refusal, a small register of two boards, every page of a list."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.type.date_pb2 import Date

from services._gen.registry.v1 import common_pb2, rio_pb2, rio_pb2_grpc
from services.common.caller import internal_metadata
from services.common.dates import to_proto_date
from services.common.errors import read_details
from tests.conftest import SandboxHarness

B1, B2 = "100B001", "100B002"


def d(year: int, month: int, day: int) -> Date:
    date = to_proto_date(dt.date(year, month, day))
    assert date is not None
    return date


def rio(sandbox: SandboxHarness) -> rio_pb2_grpc.RioServiceStub:
    return rio_pb2_grpc.RioServiceStub(sandbox.channel)


def internal(sandbox: SandboxHarness, sandbox_id: str | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata of a register calling for a sandbox, as SandboxAdmin does for SeedRegister and PurgeSandbox."""
    return internal_metadata(sandbox.internal_token, sandbox_id or sandbox.sandbox_id)


async def refusal(call: object) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    """Awaits a call that must fail; returns its status code, ErrorInfo reason and (field, reason) violations."""
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call  # type: ignore[misc]
    reason, violations = read_details(failed.value)
    return failed.value.code(), reason, [(v.field, v.reason) for v in violations]


async def register(sandbox: SandboxHarness) -> dict[str, str]:
    """Two boards; board 1 has provider 25BE with location L1 offering BAO; board 2 has location L2."""
    stub, admin = rio(sandbox), sandbox.metadata()
    for code, name in ((B1, "Stichting Openbaar Onderwijs Amstelland"), (B2, "Stichting Katholiek Onderwijs Zuid")):
        await stub.CreateBoard(
            rio_pb2.CreateBoardRequest(board_code=code, name=name, begin_date=d(2000, 1, 1)), metadata=admin
        )
    await stub.CreateCourse(
        rio_pb2.CreateCourseRequest(
            course_code="BAO",
            code_system=rio_pb2.COURSE_CODE_SYSTEM_PO,
            sector=common_pb2.SECTOR_PO,
            name="Basisonderwijs",
            level="PO-BAO",
            begin_date=d(2000, 8, 1),
        ),
        metadata=admin,
    )
    provider = await stub.CreateProvider(
        rio_pb2.CreateProviderRequest(
            institution_code="25BE", name="OBS De Regenboog", sector=common_pb2.SECTOR_PO, begin_date=d(2020, 8, 1)
        ),
        metadata=sandbox.metadata(x_board_code=B1),
    )
    address = common_pb2.Address(street="Dorpsstraat", house_number=1, postcode="1234 AB", city="Amstelveen")
    l1 = await stub.CreateLocation(
        rio_pb2.CreateLocationRequest(name="Hoofdgebouw", address=address, begin_date=d(2020, 8, 1)),
        metadata=sandbox.metadata(x_board_code=B1),
    )
    l2 = await stub.CreateLocation(
        rio_pb2.CreateLocationRequest(board_code=B2, name="Elders", address=address, begin_date=d(2020, 8, 1)),
        metadata=admin,
    )
    offering = await stub.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=provider.provider_code,
            course_code="BAO",
            location_code=l1.location_code,
            begin_date=d(2020, 8, 1),
            end_date=d(2026, 7, 31),
        ),
        metadata=sandbox.metadata(x_board_code=B1),
    )
    return {
        "provider": provider.provider_code,
        "l1": l1.location_code,
        "l2": l2.location_code,
        "offering": offering.offering_id,
    }


async def all_changes(stub: rio_pb2_grpc.RioServiceStub, metadata: object, limit: int = 0) -> list[rio_pb2.RioChange]:
    """The whole changes feed, page by page from cursor 0."""
    changes: list[rio_pb2.RioChange] = []
    cursor = 0
    while True:
        page = await stub.ListChanges(rio_pb2.ListChangesRequest(after_cursor=cursor, limit=limit), metadata=metadata)
        changes += page.changes
        cursor = page.next_cursor
        if not page.has_more:
            return changes


async def every_page(fetch: Callable[[common_pb2.PageRequest], Awaitable[Any]], items: str) -> list[Any]:
    """Every item of a List call, following next_page_token at the largest page size."""
    found: list[Any] = []
    token = ""
    while True:
        answer = await fetch(common_pb2.PageRequest(page_size=500, page_token=token))
        found += getattr(answer, items)
        token = answer.page.next_page_token
        if not token:
            return found
