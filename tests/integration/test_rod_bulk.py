"""ROD's bulk path (RegisterEnrolments) over real gRPC: good items registered with decisions and feedback, each bad
one refused typed beside them, a retried batch registering nothing twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import pytest
from sqlmodel import Session

from services._gen.registry.v1 import brp_pb2, common_pb2, rod_pb2
from services.brp_sync.rules import Gebeurtenis
from services.common import identifiers
from services.common.errors import read_details
from services.rod import store
from services.rod.rules import LOCATION, LOCATION_USE, MAX_BULK_ENROLMENTS, PROVIDER, use_key
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import _BRP_NS, FeedbackCollector, Offering, Rod, mutation, period, rod_in

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 20)
TEEN = dt.date(2014, 5, 5)
PUPILS = 200


async def _born(rod: Rod, count: int) -> list[str]:
    """`count` persons born in one BRP document (free test BSNs from the top of the range)."""
    bsns = list(identifiers.test_bsns())[::-1][:count]
    persoon = (
        f"<Persoon><Voornamen>Sam</Voornamen><Geslachtsnaam>Jansen</Geslachtsnaam>"
        f"<Geboortedatum>{TEEN.isoformat()}</Geboortedatum><Geslacht>O</Geslacht></Persoon>"
        "<Verblijfplaats><Straatnaam>Dorpsstraat</Straatnaam><Huisnummer>3</Huisnummer>"
        "<Postcode>1012AB</Postcode><Woonplaats>Amsterdam</Woonplaats><Gemeentecode>0363</Gemeentecode>"
        "</Verblijfplaats>"
    )
    own_namespace = f' xmlns="{_BRP_NS}"'.encode()
    messages = b"".join(
        mutation(bsn, 1, Gebeurtenis.GEBOORTE, TEEN, persoon).replace(own_namespace, b"") for bsn in bsns
    )
    answer = await rod.world.brp.SubmitChanges(
        brp_pb2.SubmitChangesRequest(
            xml_document=f'<MutatieBericht xmlns="{_BRP_NS}">'.encode() + messages + b"</MutatieBericht>"
        ),
        metadata=rod.world.metadata,
    )
    assert {r.outcome for r in answer.results} == {brp_pb2.MESSAGE_OUTCOME_APPLIED}
    return bsns


def _item(
    offering: Offering, institution_code: str, *, bsn: str = "", document_id: str = ""
) -> rod_pb2.RegisterEnrolmentRequest:
    item = rod_pb2.RegisterEnrolmentRequest(
        document_id=document_id or str(uuid.uuid4()),
        institution_code=institution_code,
        periods=[period(offering, START)],
        sequence=1,
    )
    item.pupil.bsn = bsn
    return item


async def test_a_batch_registers_its_good_items_and_refuses_each_bad_one_typed(sandbox: SandboxHarness) -> None:
    rod = await rod_in(sandbox, TODAY)
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    elsewhere = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    bsns = await _born(rod, PUPILS)
    nowhere = Offering(offering.institution_code, "999X999", offering.course_code)
    unknown_person = list(identifiers.test_bsns())[len(bsns) + 1200]  # valid, in the range, never born in this sandbox
    repeated = str(uuid.uuid4())
    bad = {
        PUPILS: (_item(offering, offering.institution_code, bsn="123456789"), grpc.StatusCode.INVALID_ARGUMENT),
        PUPILS + 1: (_item(offering, elsewhere.institution_code, bsn=bsns[0]), grpc.StatusCode.PERMISSION_DENIED),
        PUPILS + 2: (
            _item(offering, offering.institution_code, bsn=unknown_person),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        PUPILS + 3: (_item(nowhere, offering.institution_code, bsn=bsns[1]), grpc.StatusCode.FAILED_PRECONDITION),
        PUPILS + 5: (
            _item(offering, offering.institution_code, bsn=bsns[3], document_id=repeated),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
    }
    items = [_item(offering, offering.institution_code, bsn=bsn) for bsn in bsns]
    items += [bad[PUPILS][0], bad[PUPILS + 1][0], bad[PUPILS + 2][0], bad[PUPILS + 3][0]]
    # A document id sent twice in one batch: the first registers, the second is a duplicate.
    items[2] = _item(offering, offering.institution_code, bsn=bsns[2], document_id=repeated)
    items += [_item(offering, offering.institution_code, bsn=bsns[3]), bad[PUPILS + 5][0]]
    request = rod_pb2.RegisterEnrolmentsRequest(idempotency_key="bulk-1", enrolments=items)

    async with FeedbackCollector(school) as collector:
        answer = await school.rod.RegisterEnrolments(request, metadata=school.metadata)
        refused = {r.index: r.refused for r in answer.results if r.HasField("refused")}
        assert [r.index for r in answer.results] == list(range(len(items)))
        assert {i: r.status_code for i, r in refused.items()} == {i: code.value[0] for i, (_, code) in bad.items()}
        assert refused[PUPILS].violations[0].field == "pupil.bsn" and refused[PUPILS].reason
        assert refused[PUPILS + 1].reason == "AUT401"
        assert refused[PUPILS + 2].reason == "SBX-PERSON-UNKNOWN"
        assert refused[PUPILS + 3].reason == "A01060"
        assert refused[PUPILS + 5].reason == "SBX-DUPLICATE-DOCUMENT"
        assert (answer.accepted, answer.refused) == (PUPILS + 1, len(bad))
        accepted = [r.accepted for r in answer.results if r.HasField("accepted")]
        assert all(a.enrolment.funding and a.feedback_cursor for a in accepted)
        # Every accepted item's feedback and each functional refusal's REJECTED feedback reach the school.
        rejected = 2  # unknown person, unknown location (the others never reached the functional checks)
        wanted = {a.enrolment.enrolment_id for a in accepted}

        def arrived(got: list[rod_pb2.Feedback]) -> bool:
            refusals = sum(f.outcome == rod_pb2.FEEDBACK_OUTCOME_REJECTED for f in got)
            return wanted <= {f.enrolment_id for f in got} and refusals >= rejected

        await collector.until(arrived, within=30)
        assert {f.enrolment_id for f in collector.received if f.enrolment_id} == {
            a.enrolment.enrolment_id for a in accepted
        }
        assert sum(f.outcome == rod_pb2.FEEDBACK_OUTCOME_REJECTED for f in collector.received) == rejected

    # The same key replays the answer; the batch resent under a new key registers nothing twice.
    assert await school.rod.RegisterEnrolments(request, metadata=school.metadata) == answer
    request.idempotency_key = "bulk-2"
    again = await school.rod.RegisterEnrolments(request, metadata=school.metadata)
    assert again.accepted == 0
    listed = await school.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(
            institution_code=offering.institution_code, page=common_pb2.PageRequest(page_size=500)
        ),
        metadata=school.metadata,
    )
    assert len(listed.enrolments) == PUPILS + 1


async def test_an_empty_or_oversized_batch_is_refused_whole(sandbox: SandboxHarness) -> None:
    rod = await rod_in(sandbox, TODAY)
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    for count, reason in ((0, "SBX-REQUIRED"), (MAX_BULK_ENROLMENTS + 1, "SBX-BATCH-TOO-LARGE")):
        items = [_item(offering, offering.institution_code, bsn="999999990") for _ in range(count)]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await school.rod.RegisterEnrolments(
                rod_pb2.RegisterEnrolmentsRequest(enrolments=items), metadata=school.metadata
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert read_details(refused.value)[0] == reason


async def test_a_batch_decides_each_pupil_as_a_single_registration_does(sandbox: SandboxHarness) -> None:
    """Pairs of alike pupils: one of each registered by RegisterEnrolment, the other in one batch (pupils new to
    ROD written per table, pupils ROD holds through the single path): the same decisions and reasons per pair."""
    rod = await rod_in(sandbox, TODAY)
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    other = await rod.world.offering(common_pb2.SECTOR_VO)
    school, elsewhere = rod.school(offering), rod.school(other)
    shapes = [
        (START, None),  # funded on the count date
        (START, dt.date(2027, 9, 15)),  # ended before the count date
        (dt.date(2027, 10, 5), None),  # begins after the count date
        (START, None),  # already enrolled at another school: a second enrolment
    ]
    bsns = await _born(rod, 2 * len(shapes))
    pairs = [(bsns[2 * i], bsns[2 * i + 1]) for i in range(len(shapes))]
    held_pair = pairs[-1]
    for bsn in held_pair:
        await elsewhere.rod.RegisterEnrolment(
            _item(other, other.institution_code, bsn=bsn), metadata=elsewhere.metadata
        )

    def item(bsn: str, shape: tuple[dt.date, dt.date | None]) -> rod_pb2.RegisterEnrolmentRequest:
        request = _item(offering, offering.institution_code, bsn=bsn)
        request.periods[0].CopyFrom(period(offering, *shape))
        return request

    single = [
        await school.rod.RegisterEnrolment(item(one, shape), metadata=school.metadata)
        for (one, _), shape in zip(pairs, shapes, strict=True)
    ]
    batch = await school.rod.RegisterEnrolments(
        rod_pb2.RegisterEnrolmentsRequest(
            idempotency_key="alike",
            enrolments=[item(two, shape) for (_, two), shape in zip(pairs, shapes, strict=True)],
        ),
        metadata=school.metadata,
    )
    assert batch.accepted == len(shapes)

    def judged(answer: rod_pb2.EnrolmentResponse) -> list[tuple[str, bool, int, tuple[str, ...], str]]:
        return [
            (d.count_date.SerializeToString().hex(), d.funded, d.status, tuple(d.reason_codes), d.status_code)
            for d in answer.enrolment.funding
        ] + [("outcome", True, answer.outcome, tuple(s.code for s in answer.signals), "")]

    got = [judged(r.accepted) for r in batch.results]
    assert got == [judged(s) for s in single]
    # The shapes do judge differently (the comparison above can fail).
    assert len({tuple(j) for j in got}) == len(shapes)


async def test_a_batch_across_a_thousand_schools_reads_only_the_ends_of_its_own_school_location_pairs(
    sandbox: SandboxHarness,
) -> None:
    # A national seed's batch names 1,000 schools, each at its own location: every location with every school
    # was a million codes in one query, beyond SQLite's and PostgreSQL's limits of bound variables.
    taught = {(f"{n:03d}X{n:03d}", f"{n % 100:02d}{chr(65 + n // 100)}A") for n in range(1000)}
    (location, school), (other_location, other_school) = sorted(taught)[:2]
    ended = dt.date(2027, 12, 31)

    def work(session: Session) -> store.RioEnds:
        sandbox_id = sandbox.sandbox_id
        store.store_rio_end(session, sandbox_id=sandbox_id, kind=LOCATION, code=location, end=ended)
        store.store_rio_end(session, sandbox_id=sandbox_id, kind=PROVIDER, code=other_school, end=ended)
        # A use the batch teaches at, and one it does not: (other location, school) is no pair of it.
        for pair in ((location, school), (other_location, school)):
            store.store_rio_end(session, sandbox_id=sandbox_id, kind=LOCATION_USE, code=use_key(*pair), end=ended)
        return store.rio_ends_for(session, sandbox_id, taught=taught)

    ends = await sandbox.running.database.run(work)
    assert ends.locations == {location: ended}
    assert ends.providers == {other_school: ended}
    assert ends.uses == {use_key(location, school): ended}


async def test_two_batches_in_flight_naming_the_same_new_pupils_both_register_every_item(
    sandbox: SandboxHarness,
) -> None:
    # Each batch reads which pupils ROD holds only under their locks: the one that waits finds the other's
    # pupils held and registers its items through the single path (on PostgreSQL it used to insert them
    # again and fail whole).
    rod = await rod_in(sandbox, TODAY)
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    bsns = await _born(rod, 50)
    batches = [
        rod_pb2.RegisterEnrolmentsRequest(
            idempotency_key=f"in-flight-{n}",
            enrolments=[_item(offering, offering.institution_code, bsn=bsn) for bsn in order],
        )
        for n, order in enumerate((bsns, bsns[::-1]))
    ]
    answers = await asyncio.gather(*(school.rod.RegisterEnrolments(b, metadata=school.metadata) for b in batches))
    assert [(a.accepted, a.refused) for a in answers] == [(50, 0), (50, 0)]
    listed = await school.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(
            institution_code=offering.institution_code, page=common_pb2.PageRequest(page_size=500)
        ),
        metadata=school.metadata,
    )
    assert sorted(e.pupil.bsn for e in listed.enrolments) == sorted(bsns * 2)
