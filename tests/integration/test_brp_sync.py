"""BRP sync over real gRPC on SQLite and PostgreSQL: seed, ingest (ordered, idempotent, tolerant), stream, purge."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time

import grpc
import pytest

from services._gen.registry.v1 import brp_pb2, common_pb2
from services.brp_sync import scenarios
from services.brp_sync.parsing import MAX_MESSAGES_PER_DOCUMENT
from services.brp_sync.rules import Emigratie, Gebeurtenis, Mutatie, Overlijden, Persoon, Verblijfplaats
from services.brp_sync.xml_codec import batch_document, message_document
from services.common.caller import internal_metadata
from services.common.errors import read_details
from services.common.identifiers import TEST_BSN_FIRST, TEST_BSN_LAST
from services.common.identifiers import test_bsns as official_test_bsns
from tests.conftest import SandboxHarness
from tests.helpers.brp import DAY, get, move_within, new_id, seed, stub, submit


async def test_seed_gives_persons_aged_4_to_25_with_test_bsns_and_is_idempotent(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    # Small profile: schools × persons_per_school, plus the scenario persons (scenarios.toml).
    assert len(persons) == 18 * 20 + len(scenarios.reserved_bsns())
    assert all(TEST_BSN_FIRST <= int(p.bsn) <= TEST_BSN_LAST for p in persons)
    today = dt.datetime.now(dt.UTC).date()
    seeded = [p for p in persons if p.bsn not in scenarios.reserved_bsns()]
    ages = {(today - dt.date(p.birth_date.year, p.birth_date.month, p.birth_date.day)).days // 365 for p in seeded}
    assert min(ages) == 4 and max(ages) == 25
    assert all(p.address.postcode and p.address.municipality_code and p.surname for p in persons)
    again = await seed(sandbox)
    assert [p.bsn for p in again] == [p.bsn for p in persons]


async def test_get_person_refuses_a_bad_bsn_and_an_unknown_one(sandbox: SandboxHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await get(sandbox, "123456789")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read_details(bad.value)[0] == "SBX-INVALID-BSN"
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await get(sandbox, "999990019")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_each_kind_of_change_arrives_in_the_person_and_history(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    mover, emigrant, deceased = persons[0], persons[1], persons[2]
    taken = {p.bsn for p in persons}
    baby_bsn = next(bsn for bsn in official_test_bsns() if bsn not in taken)
    document = batch_document(
        [
            move_within(mover, 1),
            Mutatie(
                new_id(),
                emigrant.bsn,
                1,
                emigrant.address.municipality_code,
                Gebeurtenis.EMIGRATIE,
                DAY,
                emigratie=Emigratie("9089", DAY),
            ),
            Mutatie(
                new_id(),
                deceased.bsn,
                1,
                deceased.address.municipality_code,
                Gebeurtenis.OVERLEDEN,
                DAY,
                overlijden=Overlijden(DAY),
            ),
            Mutatie(
                new_id(),
                baby_bsn,
                1,
                "0363",
                Gebeurtenis.GEBOORTE,
                DAY,
                persoon=Persoon("Noor", "", "Bakker", DAY, "V"),
                verblijfplaats=Verblijfplaats("Damrak", 1, "1012LG", "Amsterdam", "0363"),
            ),
            Mutatie(
                new_id(),
                mover.bsn,
                2,
                mover.address.municipality_code,
                Gebeurtenis.GECORRIGEERD,
                DAY,
                persoon=Persoon(geboortedatum=dt.date(2010, 1, 2)),
            ),
        ]
    )
    answer = await submit(sandbox, document)
    assert [r.outcome for r in answer.results] == [brp_pb2.MESSAGE_OUTCOME_APPLIED] * 5
    moved = await get(sandbox, mover.bsn, history=True)
    assert moved.address.street == "Nieuwe Gracht" and moved.last_sequence == 2
    assert (moved.birth_date.year, moved.birth_date.month, moved.birth_date.day) == (2010, 1, 2)
    assert [c.event_type for c in moved.history] == [
        brp_pb2.PERSON_EVENT_TYPE_RELOCATION_WITHIN_MUNICIPALITY,
        brp_pb2.PERSON_EVENT_TYPE_CORRECTION,
    ]
    # Each history entry carries the person as they were right after that change.
    assert moved.history[0].person.birth_date == mover.birth_date
    assert moved.history[1].person.birth_date.year == 2010
    left = await get(sandbox, emigrant.bsn)
    assert left.emigration_country_code == "9089" and left.emigration_date.year == 2026 and not left.HasField("address")
    dead = await get(sandbox, deceased.bsn)
    assert (dead.death_date.year, dead.death_date.month, dead.death_date.day) == (2026, 11, 28)
    baby = await get(sandbox, baby_bsn)
    assert baby.given_names == "Noor" and baby.sex == brp_pb2.SEX_FEMALE and baby.last_sequence == 1
    residents = await stub(sandbox).ListPersons(
        brp_pb2.ListPersonsRequest(only_resident=True, page=common_pb2.PageRequest(page_size=500)),
        metadata=sandbox.metadata(),
    )
    assert {emigrant.bsn, deceased.bsn}.isdisjoint({p.bsn for p in residents.persons})


async def test_the_same_message_twice_changes_nothing(sandbox: SandboxHarness) -> None:
    person = (await seed(sandbox))[0]
    document = message_document(move_within(person, 1))
    first = await submit(sandbox, document)
    second = await submit(sandbox, document)
    assert first.results[0].outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED
    assert second.results[0].outcome == brp_pb2.MESSAGE_OUTCOME_DUPLICATE
    after = await get(sandbox, person.bsn, history=True)
    assert len(after.history) == 1 and after.last_sequence == 1
    # The same idempotency key replays the first answer instead of judging again.
    keyed = await submit(sandbox, document, key="k1")
    replay = await submit(sandbox, document, key="k1")
    assert keyed == replay


async def test_out_of_order_messages_wait_and_are_applied_in_order(sandbox: SandboxHarness) -> None:
    person = (await seed(sandbox))[0]
    one, two, three = (move_within(person, n, street=f"Straat {n}") for n in (1, 2, 3))
    held = await submit(sandbox, batch_document([three, two]))
    assert [r.outcome for r in held.results] == [brp_pb2.MESSAGE_OUTCOME_HELD] * 2
    waiting = await stub(sandbox).ListHeldMessages(brp_pb2.ListHeldMessagesRequest(), metadata=sandbox.metadata())
    assert sorted(m.sequence for m in waiting.messages) == [2, 3]
    assert {m.waiting_for_sequence for m in waiting.messages} == {1}
    assert not any(m.gap_overdue for m in waiting.messages)
    servicer = sandbox.running.component("brp_sync").extra["servicer"]
    servicer.gap_timeout = dt.timedelta(0)
    overdue = await stub(sandbox).ListHeldMessages(brp_pb2.ListHeldMessagesRequest(), metadata=sandbox.metadata())
    assert all(m.gap_overdue for m in overdue.messages)

    closing = await submit(sandbox, message_document(one))
    assert closing.results[0].outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED
    assert list(closing.results[0].released_message_ids) == [two.bericht_id, three.bericht_id]
    after = await get(sandbox, person.bsn, history=True)
    assert [c.sequence for c in after.history] == [1, 2, 3]
    assert after.address.street == "Straat 3" and after.last_sequence == 3
    empty = await stub(sandbox).ListHeldMessages(brp_pb2.ListHeldMessagesRequest(), metadata=sandbox.metadata())
    assert len(empty.messages) == 0


async def test_a_file_mixing_good_and_bad_messages_applies_every_good_one(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    good = [move_within(p, 1) for p in persons[:3]]
    bad_bsn = dataclasses.replace(move_within(persons[3], 1), bsn="123456789")
    unknown = dataclasses.replace(move_within(persons[4], 1), bsn="999990019")
    wrong_municipality = dataclasses.replace(
        move_within(persons[5], 1),
        verblijfplaats=Verblijfplaats("Coolsingel", 40, "3011AD", "Rotterdam", "0599")
        if persons[5].address.municipality_code != "0599"
        else Verblijfplaats("Damrak", 1, "1012LG", "Amsterdam", "0363"),
    )
    document = batch_document([good[0], bad_bsn, good[1], unknown, wrong_municipality, good[2]])
    # A schema error in the middle: a postcode with a space (the XSD wants 1234AB).
    broken_id = new_id()
    broken = message_document(dataclasses.replace(move_within(persons[6], 1), bericht_id=broken_id))
    broken_element = (
        broken.split(b"?>", 1)[1]
        .replace(b"<Postcode>", b"<Postcode>12 ")
        .replace(b' xmlns="urn:registry-sandbox:brp:mutatie:v2"', b"")
    )
    document = document.replace(b"</MutatieBericht>", broken_element + b"</MutatieBericht>")
    answer = await submit(sandbox, document)
    outcomes = [(r.outcome, r.reason_code) for r in answer.results]
    applied = brp_pb2.MESSAGE_OUTCOME_APPLIED
    rejected = brp_pb2.MESSAGE_OUTCOME_REJECTED
    assert outcomes == [
        (applied, ""),
        (rejected, "SBX-INVALID-BSN"),
        (applied, ""),
        (rejected, "SBX-BRP-PERSON-UNKNOWN"),
        (rejected, "SBX-BRP-MUNICIPALITY-MISMATCH"),
        (applied, ""),
        (rejected, "SBX-BRP-XSD-INVALID"),
    ]
    for message in good:
        assert (await get(sandbox, message.bsn)).last_sequence == 1
    listed = await stub(sandbox).ListRejectedMessages(
        brp_pb2.ListRejectedMessagesRequest(), metadata=sandbox.metadata()
    )
    by_id = {m.message_id: m for m in listed.messages}
    assert set(by_id) == {bad_bsn.bericht_id, unknown.bericht_id, wrong_municipality.bericht_id, broken_id}
    assert "Postcode" in by_id[broken_id].reason and b"<Postcode>12 " in by_id[broken_id].xml
    assert "11-proof" in by_id[bad_bsn.bericht_id].reason
    # A rule rejection takes its place in the person's sequence: the next message is not held behind it.
    follow_up = await submit(sandbox, message_document(move_within(persons[5], 2)))
    assert follow_up.results[0].outcome == applied


async def test_hostile_document_is_refused_whole_with_a_typed_error_and_recorded(sandbox: SandboxHarness) -> None:
    hostile = b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><m>&x;</m>'
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await submit(sandbox, hostile)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, violations = read_details(refused.value)
    assert reason == "SBX-BRP-DTD-NOT-ALLOWED" and violations[0].field == "xml_document"
    listed = await stub(sandbox).ListRejectedMessages(
        brp_pb2.ListRejectedMessagesRequest(), metadata=sandbox.metadata()
    )
    assert [m.reason_code for m in listed.messages] == ["SBX-BRP-DTD-NOT-ALLOWED"]
    assert b"root:" not in listed.messages[0].xml


async def _collect(call: grpc.aio.UnaryStreamCall, count: int) -> list[brp_pb2.PersonChange]:
    changes: list[brp_pb2.PersonChange] = []
    async for change in call:
        changes.append(change)
        if len(changes) == count:
            break
    call.cancel()
    return changes


async def test_stream_gives_backlog_then_live_and_resumes_from_a_cursor(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    await submit(sandbox, batch_document([move_within(p, 1) for p in persons[:3]]))
    call = stub(sandbox).StreamPersonChanges(brp_pb2.StreamPersonChangesRequest(), metadata=sandbox.metadata())
    collecting = asyncio.create_task(_collect(call, 4))
    await asyncio.sleep(0.3)
    died = Mutatie(new_id(), persons[3].bsn, 1, "0363", Gebeurtenis.OVERLEDEN, DAY, overlijden=Overlijden(DAY))
    await submit(sandbox, message_document(died))
    changes = await asyncio.wait_for(collecting, timeout=10)
    assert [c.bsn for c in changes] == [p.bsn for p in persons[:4]]
    assert changes[-1].event_type == brp_pb2.PERSON_EVENT_TYPE_DEATH
    assert changes[-1].person.death_date.year == 2026 and changes[-1].sandbox_id == sandbox.sandbox_id
    cursors = [c.cursor for c in changes]
    assert cursors == sorted(cursors)
    resumed_call = stub(sandbox).StreamPersonChanges(
        brp_pb2.StreamPersonChangesRequest(after_cursor=cursors[1]), metadata=sandbox.metadata()
    )
    resumed = await asyncio.wait_for(_collect(resumed_call, 2), timeout=10)
    assert [c.cursor for c in resumed] == cursors[2:]


async def test_internal_subscriber_sees_every_sandbox_but_only_followed_persons(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    followed, ignored = persons[0], persons[1]
    await stub(sandbox).SetFollowIndication(
        brp_pb2.SetFollowIndicationRequest(subscriber="rod", bsn=followed.bsn, follow=True),
        metadata=internal_metadata(sandbox.internal_token, sandbox.sandbox_id),
    )
    await submit(sandbox, batch_document([move_within(ignored, 1), move_within(followed, 1)]))
    call = stub(sandbox).StreamPersonChanges(
        brp_pb2.StreamPersonChangesRequest(subscriber="rod"), metadata=internal_metadata(sandbox.internal_token, None)
    )
    # First an empty message: the follower is registered, and ingestion now waits until it was handed to it.
    registered, *changes = await asyncio.wait_for(_collect(call, 2), timeout=10)
    assert registered == brp_pb2.PersonChange()
    assert [(c.bsn, c.sandbox_id) for c in changes] == [(followed.bsn, sandbox.sandbox_id)]
    everything = stub(sandbox).StreamPersonChanges(
        brp_pb2.StreamPersonChangesRequest(), metadata=internal_metadata(sandbox.internal_token, None)
    )
    assert [c.cursor > 0 for c in await asyncio.wait_for(_collect(everything, 3), timeout=10)] == [False, True, True]


async def test_purge_empties_the_sandbox_and_is_internal_only(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    await submit(sandbox, message_document(move_within(persons[0], 1)))
    with pytest.raises(grpc.aio.AioRpcError) as vendor:
        await stub(sandbox).PurgeSandbox(common_pb2.PurgeSandboxRequest(), metadata=sandbox.metadata())
    assert vendor.value.code() == grpc.StatusCode.PERMISSION_DENIED
    purged = await stub(sandbox).PurgeSandbox(
        common_pb2.PurgeSandboxRequest(), metadata=internal_metadata(sandbox.internal_token, sandbox.sandbox_id)
    )
    # The persons, the applied change, and the scenario persons' seed date and 5 scheduled messages.
    assert purged.deleted == len(persons) + 1 + 1 + 5
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await get(sandbox, persons[0].bsn)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_document_with_too_many_messages_is_refused_before_anything_is_applied(
    sandbox: SandboxHarness,
) -> None:
    persons = await seed(sandbox)
    good = move_within(persons[0], 1)
    # One good message and 5,000 more: over the limit, so not even the good one is applied.
    document = batch_document([good] + [move_within(persons[1], n) for n in range(1, MAX_MESSAGES_PER_DOCUMENT + 1)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await submit(sandbox, document, key="too-many")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, violations = read_details(refused.value)
    assert reason == "SBX-BRP-TOO-MANY-MESSAGES"
    assert [(v.field, v.reason) for v in violations] == [("xml_document", "SBX-BRP-TOO-MANY-MESSAGES")]
    assert (await get(sandbox, persons[0].bsn)).last_sequence == 0
    # The same key with a document that fits is a new request: a refusal stores no answer.
    accepted = await submit(sandbox, batch_document([good]), key="too-many-2")
    assert accepted.results[0].outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED


async def test_a_quarter_million_empty_messages_are_refused_quickly(sandbox: SandboxHarness) -> None:
    empty = b'<MutatieBericht xmlns="urn:registry-sandbox:brp:mutatie:v2">' + b"<Mutatie/>" * 250_000
    began = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await submit(sandbox, empty + b"</MutatieBericht>")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read_details(refused.value)[0] == "SBX-BRP-TOO-MANY-MESSAGES"
    assert time.monotonic() - began < 10


async def test_an_internal_call_naming_an_unknown_sandbox_is_refused(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    document = message_document(move_within(persons[0], 1))
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub(sandbox).SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=document),
            metadata=internal_metadata(sandbox.internal_token, "sbx_does_not_exist"),
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert [v.field for v in read_details(unknown.value)[1]] == ["x-sandbox-id"]
    applied = await stub(sandbox).SubmitChanges(
        brp_pb2.SubmitChangesRequest(xml_document=document),
        metadata=internal_metadata(sandbox.internal_token, sandbox.sandbox_id),
    )
    assert applied.results[0].outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED


async def test_a_vendor_key_is_refused_on_every_internal_method(sandbox: SandboxHarness) -> None:
    calls = {
        "SeedRegister": stub(sandbox).SeedRegister(common_pb2.SeedRegisterRequest(), metadata=sandbox.metadata()),
        "PurgeSandbox": stub(sandbox).PurgeSandbox(common_pb2.PurgeSandboxRequest(), metadata=sandbox.metadata()),
    }
    for name, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, name


async def test_a_vendor_may_not_set_or_end_the_follow_indications_of_rod(sandbox: SandboxHarness) -> None:
    person = (await seed(sandbox))[0]
    for follow in (True, False):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub(sandbox).SetFollowIndication(
                brp_pb2.SetFollowIndicationRequest(subscriber="rod", bsn=person.bsn, follow=follow),
                metadata=sandbox.metadata(),
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert read_details(refused.value)[0] == "AUT401"
    # Under its own name the vendor follows the person; ROD (internal) still follows under "rod".
    own = await stub(sandbox).SetFollowIndication(
        brp_pb2.SetFollowIndicationRequest(subscriber="my-package", bsn=person.bsn, follow=True),
        metadata=sandbox.metadata(),
    )
    assert own.indication.following and own.indication.subscriber == "my-package"
    rods = await stub(sandbox).SetFollowIndication(
        brp_pb2.SetFollowIndicationRequest(subscriber="rod", bsn=person.bsn, follow=True),
        metadata=internal_metadata(sandbox.internal_token, sandbox.sandbox_id),
    )
    assert rods.indication.following


async def test_lists_keep_to_the_page_limit_and_refuse_a_forged_token(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    first = await stub(sandbox).ListPersons(
        brp_pb2.ListPersonsRequest(page=common_pb2.PageRequest(page_size=100)), metadata=sandbox.metadata()
    )
    second = await stub(sandbox).ListPersons(
        brp_pb2.ListPersonsRequest(page=common_pb2.PageRequest(page_size=500, page_token=first.page.next_page_token)),
        metadata=sandbox.metadata(),
    )
    assert [p.bsn for p in first.persons] + [p.bsn for p in second.persons] == sorted(p.bsn for p in persons)
    assert not second.page.next_page_token
    requests = [
        brp_pb2.ListPersonsRequest(page=common_pb2.PageRequest(page_size=501)),
        brp_pb2.ListPersonsRequest(page=common_pb2.PageRequest(page_token=persons[0].bsn)),
    ]
    for request in requests:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub(sandbox).ListPersons(request, metadata=sandbox.metadata())
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert read_details(refused.value)[0] == "SBX-INVALID-PAGE"
    forged = common_pb2.PageRequest(page_token="12")
    for call in (
        stub(sandbox).ListRejectedMessages(
            brp_pb2.ListRejectedMessagesRequest(page=forged), metadata=sandbox.metadata()
        ),
        stub(sandbox).ListHeldMessages(brp_pb2.ListHeldMessagesRequest(page=forged), metadata=sandbox.metadata()),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as not_ours:
            await call
        assert not_ours.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _seed_register(sandbox: SandboxHarness, size: str, *, synthetic_bsns: bool) -> int:
    answer = await stub(sandbox).SeedRegister(
        common_pb2.SeedRegisterRequest(size=size, seed=3, synthetic_bsns=synthetic_bsns),
        metadata=internal_metadata(sandbox.internal_token, sandbox.sandbox_id),
    )
    return answer.created["persons"]


async def _all_bsns(sandbox: SandboxHarness) -> list[str]:
    bsns: list[str] = []
    token = ""
    while True:
        page = await stub(sandbox).ListPersons(
            brp_pb2.ListPersonsRequest(page=common_pb2.PageRequest(page_size=500, page_token=token)),
            metadata=sandbox.metadata(),
        )
        bsns += [p.bsn for p in page.persons]
        token = page.page.next_page_token
        if not token:
            return bsns


async def test_a_default_seed_larger_than_the_test_range_is_capped_to_it(sandbox: SandboxHarness) -> None:
    created = await _seed_register(sandbox, "full", synthetic_bsns=False)
    bsns = await _all_bsns(sandbox)
    assert created == len(bsns) - len(scenarios.reserved_bsns()) == 1_200
    assert all(TEST_BSN_FIRST <= int(b) <= TEST_BSN_LAST for b in bsns)


@pytest.mark.slow
async def test_synthetic_bsns_only_on_explicit_opt_in(sandbox: SandboxHarness) -> None:
    created = await _seed_register(sandbox, "medium", synthetic_bsns=True)
    bsns = await _all_bsns(sandbox)
    reserved = len(scenarios.reserved_bsns())
    assert created == len(bsns) - reserved == 14_940
    outside = [b for b in bsns if not TEST_BSN_FIRST <= int(b) <= TEST_BSN_LAST]
    # The test range holds the seed's first persons and the scenario persons, who keep their own numbers.
    assert len(outside) == 14_940 - (2_728 - reserved) and all(int(b) < TEST_BSN_FIRST for b in outside)


async def test_a_version_1_document_is_refused_per_message_and_changes_nothing(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    person = persons[0]
    legacy = (
        '<MutatieBericht xmlns="urn:registry-sandbox:brp:mutatie:v1"><Mutatie>'
        f"<BerichtId>{new_id()}</BerichtId><Burgerservicenummer>{person.bsn}</Burgerservicenummer>"
        f"<Volgnummer>1</Volgnummer><Gemeentecode>0363</Gemeentecode><Gebeurtenis>overleden</Gebeurtenis>"
        "<DatumIngang>2026-11-28</DatumIngang><Wijzigingen><Overlijden><Datum>2026-11-27</Datum></Overlijden>"
        "</Wijzigingen></Mutatie></MutatieBericht>"
    ).encode()
    answer = await submit(sandbox, legacy)
    assert [(r.outcome, r.reason_code) for r in answer.results] == [
        (brp_pb2.MESSAGE_OUTCOME_REJECTED, "SBX-BRP-UNSUPPORTED-VERSION")
    ]
    assert "urn:registry-sandbox:brp:mutatie:v2" in answer.results[0].reason
    after = await get(sandbox, person.bsn)
    assert after.last_sequence == 0 and not after.HasField("death_date")


async def test_a_person_shows_its_a_nummer_and_record_version_and_a_bad_a_nummer_is_refused(
    sandbox: SandboxHarness,
) -> None:
    persons = await seed(sandbox)
    person = persons[0]
    assert len(person.a_nummer) == 10 and person.versienummer == 0
    bad = batch_document([dataclasses.replace(move_within(person, 1), a_nummer="1123456789")])
    refused = await submit(sandbox, bad)
    assert refused.results[0].reason_code == "SBX-BRP-INVALID-ANUMMER"
    # A malformed A-nummer is a schema-level refusal: Volgnummer 1 is still free.
    other = batch_document([dataclasses.replace(move_within(person, 1), a_nummer=persons[1].a_nummer)])
    assert (await submit(sandbox, other)).results[0].reason_code == "SBX-BRP-ANUMMER-MISMATCH"
    good = await submit(sandbox, batch_document([move_within(person, 2)]))
    assert good.results[0].outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED
    after = await get(sandbox, person.bsn)
    assert after.a_nummer == person.a_nummer and after.versienummer == 2 and after.last_sequence == 2
