"""ROD's mutation path, internal guard and input checks over real gRPC, on SQLite and PostgreSQL.

Twenty identical calls at once (one idempotency key) of every mutating RPC
have one effect and one answer; a vendor key cannot call an internal RPC; an
acknowledgement cannot skip feedback; bad input is INVALID_ARGUMENT naming
its field, never INTERNAL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf.message import Message

from services._gen.registry.v1 import common_pb2, rod_pb2, rod_pb2_grpc
from services.common.caller import INTERNAL_TOKEN, SANDBOX_ID
from services.common.dates import to_proto_date
from services.common.errors import read_details
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import Rod, School, period, rod_in

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 15)
TEEN = dt.date(2014, 5, 5)
TIMES = 20


@pytest.fixture
async def rod(sandbox: SandboxHarness) -> Rod:
    return await rod_in(sandbox, TODAY)


async def all_at_once(call: Callable[[], Awaitable[Message]]) -> Message:
    """TIMES identical calls at once; all must succeed with the same answer, which is returned."""
    answers = await asyncio.gather(*(call() for _ in range(TIMES)), return_exceptions=True)
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, [f"{f.code()}: {f.details()}" if isinstance(f, grpc.aio.AioRpcError) else f for f in failures]
    assert all(a == answers[0] for a in answers), "the calls got different answers"
    first = answers[0]
    assert isinstance(first, Message)
    return first


def mutating_methods() -> set[str]:
    """Every RodService method that changes something: those with an idempotency key, and AcknowledgeFeedback."""
    service = rod_pb2.DESCRIPTOR.services_by_name["RodService"]
    keyed = {m.name for m in service.methods if "idempotency_key" in m.input_type.fields_by_name}
    return keyed | {"AcknowledgeFeedback"}


async def caused_by_answer(school: School, document_id: str) -> rod_pb2.Feedback:
    found = await school.rod.ListFeedback(rod_pb2.ListFeedbackRequest(cause_id=document_id), metadata=school.metadata)
    return found.feedback[-1]


async def caused_by(school: School, document_id: str) -> int:
    found = await school.rod.ListFeedback(rod_pb2.ListFeedbackRequest(cause_id=document_id), metadata=school.metadata)
    return len(found.feedback)


async def test_twenty_identical_calls_of_every_mutating_rpc_have_one_effect_and_one_answer(
    rod: Rod, sandbox: SandboxHarness
) -> None:
    covered: set[str] = set()
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    md = school.metadata

    details = rod_pb2.PupilDetails(
        given_names="Noor",
        surname="Visser",
        birth_date=to_proto_date(dt.date(2021, 6, 1)),
        address=common_pb2.Address(postcode="1012AB", house_number=9),
    )
    identified = await all_at_once(
        lambda: school.rod.IdentifyPupil(
            rod_pb2.IdentifyPupilRequest(idempotency_key="id-1", details=details), metadata=md
        )
    )
    assert isinstance(identified, rod_pb2.IdentifyPupilResponse) and identified.newly_assigned
    later = await school.rod.IdentifyPupil(rod_pb2.IdentifyPupilRequest(details=details), metadata=md)
    assert later.pupil == identified.pupil and not later.newly_assigned  # one number, assigned once
    bsn = await rod.world.person(TEEN)
    by_bsn = await all_at_once(
        lambda: school.rod.IdentifyPupil(rod_pb2.IdentifyPupilRequest(idempotency_key="id-2", bsn=bsn), metadata=md)
    )
    assert isinstance(by_bsn, rod_pb2.IdentifyPupilResponse) and by_bsn.pupil.bsn == bsn
    covered.add("IdentifyPupil")

    document = str(uuid.uuid4())
    register = rod_pb2.RegisterEnrolmentRequest(
        idempotency_key="reg-1",
        document_id=document,
        pupil=rod_pb2.PupilId(bsn=bsn),
        institution_code=offering.institution_code,
        periods=[period(offering, START)],
        sequence=1,
    )
    registered = await all_at_once(lambda: school.rod.RegisterEnrolment(register, metadata=md))
    assert isinstance(registered, rod_pb2.EnrolmentResponse)
    enrolment_id = registered.enrolment.enrolment_id
    listed = await school.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(institution_code=offering.institution_code), metadata=md
    )
    assert [e.enrolment_id for e in listed.enrolments] == [enrolment_id]
    assert await caused_by(school, document) == 1
    covered.add("RegisterEnrolment")

    # The bulk call: twenty identical batches (one key) register the new pupil once and answer alike.
    bulk_document = str(uuid.uuid4())
    bulk = rod_pb2.RegisterEnrolmentsRequest(
        idempotency_key="bulk-1",
        enrolments=[
            rod_pb2.RegisterEnrolmentRequest(
                document_id=bulk_document,
                pupil=rod_pb2.PupilId(bsn=await rod.world.person(TEEN)),
                institution_code=offering.institution_code,
                periods=[period(offering, START)],
                sequence=1,
            )
        ],
    )
    batch = await all_at_once(lambda: school.rod.RegisterEnrolments(bulk, metadata=md))
    assert isinstance(batch, rod_pb2.RegisterEnrolmentsResponse) and batch.accepted == 1
    assert await caused_by(school, bulk_document) == 1
    covered.add("RegisterEnrolments")

    # A school's later messages about the enrolment: each one's document causes exactly one feedback.
    change, end, delete = (str(uuid.uuid4()) for _ in range(3))
    messages: list[tuple[str, Callable[[], Awaitable[Message]], str]] = [
        (
            "ChangeEnrolment",
            lambda: school.rod.ChangeEnrolment(
                rod_pb2.ChangeEnrolmentRequest(
                    idempotency_key="chg-1",
                    document_id=change,
                    enrolment_id=enrolment_id,
                    periods=[period(offering, START, dt.date(2028, 7, 31))],
                    sequence=2,
                ),
                metadata=md,
            ),
            change,
        ),
        (
            "EndEnrolment",
            lambda: school.rod.EndEnrolment(
                rod_pb2.EndEnrolmentRequest(
                    idempotency_key="end-1",
                    document_id=end,
                    enrolment_id=enrolment_id,
                    end_date=to_proto_date(dt.date(2028, 6, 30)),
                    sequence=3,
                ),
                metadata=md,
            ),
            end,
        ),
        (
            "DeleteEnrolment",
            lambda: school.rod.DeleteEnrolment(
                rod_pb2.DeleteEnrolmentRequest(idempotency_key="del-1", document_id=delete, enrolment_id=enrolment_id),
                metadata=md,
            ),
            delete,
        ),
    ]
    states = []
    for method, call, document in messages:
        answer = await all_at_once(call)
        assert isinstance(answer, rod_pb2.EnrolmentResponse)
        states.append((answer.enrolment.sequence, answer.enrolment.status))
        assert await caused_by(school, document) == 1
        covered.add(method)
    assert states == [
        (2, rod_pb2.ENROLMENT_STATUS_ENDED),  # the new last period has an end date
        (3, rod_pb2.ENROLMENT_STATUS_ENDED),
        (3, rod_pb2.ENROLMENT_STATUS_DELETED),
    ]

    newest = (await caused_by_answer(school, delete)).cursor
    acknowledge = rod_pb2.AcknowledgeFeedbackRequest(subscriber="package", cursor=newest)
    acknowledged = await all_at_once(lambda: school.rod.AcknowledgeFeedback(acknowledge, metadata=md))
    assert isinstance(acknowledged, rod_pb2.AcknowledgeFeedbackResponse)
    assert acknowledged.acknowledged_cursor == newest
    covered.add("AcknowledgeFeedback")

    internal = ((INTERNAL_TOKEN, sandbox.internal_token), (SANDBOX_ID, sandbox.sandbox_id))
    purge = common_pb2.PurgeSandboxRequest(idempotency_key="purge-1")
    purged = await all_at_once(lambda: school.rod.PurgeSandbox(purge, metadata=internal))
    assert isinstance(purged, common_pb2.PurgeSandboxResponse) and purged.deleted > 0
    after = await school.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(institution_code=offering.institution_code), metadata=md
    )
    assert not after.enrolments
    covered.add("PurgeSandbox")

    assert covered == mutating_methods()


async def test_a_vendor_key_cannot_call_an_internal_rpc(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    await school.register(offering, START, bsn=await rod.world.person(TEEN))
    internal_rpcs = {"PurgeSandbox"}
    service = rod_pb2.DESCRIPTOR.services_by_name["RodService"]
    assert internal_rpcs == {m.name for m in service.methods if m.input_type.full_name.endswith("PurgeSandboxRequest")}
    for metadata in (rod.admin_metadata, school.metadata):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await school.rod.PurgeSandbox(common_pb2.PurgeSandboxRequest(), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert read_details(refused.value)[0] == "AUT401"
    still = await school.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(institution_code=offering.institution_code), metadata=school.metadata
    )
    assert len(still.enrolments) == 1


async def test_an_acknowledgement_beyond_the_newest_feedback_is_refused_and_a_later_resume_loses_nothing(
    rod: Rod,
) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    first = [await school.register(offering, START, bsn=await rod.world.person(TEEN)) for _ in range(2)]
    newest = first[-1].feedback_cursor
    with pytest.raises(grpc.aio.AioRpcError) as beyond:
        await school.rod.AcknowledgeFeedback(
            rod_pb2.AcknowledgeFeedbackRequest(subscriber="package", cursor=newest + 1000), metadata=school.metadata
        )
    assert beyond.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reason, violations = read_details(beyond.value)
    assert reason == "SBX-CURSOR-BEYOND-NEWEST" and [v.field for v in violations] == ["cursor"]
    acknowledged = await school.rod.AcknowledgeFeedback(
        rod_pb2.AcknowledgeFeedbackRequest(subscriber="package", cursor=newest), metadata=school.metadata
    )
    assert acknowledged.acknowledged_cursor == newest
    later = [await school.register(offering, START, bsn=await rod.world.person(TEEN)) for _ in range(3)]
    call = school.rod.StreamFeedback(
        rod_pb2.StreamFeedbackRequest(subscriber="package", resume_from_acknowledged=True), metadata=school.metadata
    )
    resumed = [await call.read() for _ in range(3)]
    call.cancel()
    assert [f.cursor for f in resumed] == [a.feedback_cursor for a in later]


async def test_bad_input_is_refused_with_the_field_before_the_database_sees_it(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    stub: rod_pb2_grpc.RodServiceStub = school.rod
    md = school.metadata
    bsn = await rod.world.person(TEEN)
    registered = await school.register(offering, START, bsn=bsn)
    enrolment_id = registered.enrolment.enrolment_id

    def register(**changes: object) -> rod_pb2.RegisterEnrolmentRequest:
        request = rod_pb2.RegisterEnrolmentRequest(
            document_id=str(uuid.uuid4()),
            pupil=rod_pb2.PupilId(bsn=bsn),
            institution_code=offering.institution_code,
            periods=[period(offering, START)],
            sequence=1,
        )
        for name, value in changes.items():
            setattr(request, name, value)
        return request

    long_location = rod_pb2.RegisterEnrolmentRequest(
        document_id=str(uuid.uuid4()),
        pupil=rod_pb2.PupilId(bsn=bsn),
        institution_code=offering.institution_code,
        periods=[rod_pb2.EnrolmentPeriod(begin_date=to_proto_date(START), location_code="X" * 300, course_code="2101")],
        sequence=1,
    )
    cases: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (lambda: stub.RegisterEnrolment(register(idempotency_key="k" * 201), metadata=md), "idempotency_key"),
        (lambda: stub.RegisterEnrolment(register(idempotency_key="k\x00"), metadata=md), "idempotency_key"),
        (lambda: stub.RegisterEnrolment(register(sequence=2**31), metadata=md), "sequence"),
        (lambda: stub.RegisterEnrolment(long_location, metadata=md), "periods[0].location_code"),
        (lambda: stub.GetEnrolment(rod_pb2.GetEnrolmentRequest(enrolment_id="e\x00"), metadata=md), "enrolment_id"),
        (
            lambda: stub.DeleteEnrolment(
                rod_pb2.DeleteEnrolmentRequest(document_id=str(uuid.uuid4()), enrolment_id=enrolment_id + "x" * 40),
                metadata=md,
            ),
            "enrolment_id",
        ),
        (
            lambda: stub.AcknowledgeFeedback(
                rod_pb2.AcknowledgeFeedbackRequest(subscriber="pack\x00age", cursor=1), metadata=md
            ),
            "subscriber",
        ),
        (
            lambda: stub.AcknowledgeFeedback(
                rod_pb2.AcknowledgeFeedbackRequest(subscriber="package", cursor=2**40), metadata=md
            ),
            "cursor",
        ),
        (lambda: stub.ListFeedback(rod_pb2.ListFeedbackRequest(cause_id="c\x00"), metadata=md), "cause_id"),
        (
            lambda: stub.ListFeedback(
                rod_pb2.ListFeedbackRequest(page=common_pb2.PageRequest(page_token="9" * 1000)), metadata=md
            ),
            "page.page_token",
        ),
        (
            lambda: stub.ListEnrolments(
                rod_pb2.ListEnrolmentsRequest(
                    institution_code=offering.institution_code, page=common_pb2.PageRequest(page_token=enrolment_id)
                ),
                metadata=md,
            ),
            "page.page_token",
        ),
    ]
    for call, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, refused.value.details())
        assert field in [v.field for v in read_details(refused.value)[1]]


async def test_list_enrolments_pages_with_an_opaque_token(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    ids = sorted(
        [
            (await school.register(offering, START, bsn=await rod.world.person(TEEN))).enrolment.enrolment_id
            for _ in range(3)
        ]
    )
    seen: list[str] = []
    token = ""
    while True:
        page = await school.rod.ListEnrolments(
            rod_pb2.ListEnrolmentsRequest(
                institution_code=offering.institution_code, page=common_pb2.PageRequest(page_size=2, page_token=token)
            ),
            metadata=school.metadata,
        )
        seen += [e.enrolment_id for e in page.enrolments]
        token = page.page.next_page_token
        if not token:
            break
        assert token not in ids  # opaque: not the last id itself
    assert seen == ids
