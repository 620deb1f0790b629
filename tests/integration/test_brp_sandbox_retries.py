"""Twenty identical calls at once (one idempotency key) of every mutating BRP and SandboxAdmin method: one effect,
identical answers, never INTERNAL; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services._gen.registry.v1 import brp_pb2, common_pb2, sandbox_pb2, sandbox_pb2_grpc
from services.brp_sync import scenarios
from services.brp_sync.xml_codec import batch_document
from services.common.caller import SANDBOX_KEY, internal_metadata
from tests.conftest import SandboxHarness
from tests.helpers.brp import get, move_within, seed, stub, submit
from tests.helpers.concurrency import at_once

SMALL_REGISTER_PERSONS = 18 * 20


def admin(sandbox: SandboxHarness) -> sandbox_pb2_grpc.SandboxAdminStub:
    return sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)


def internal(sandbox: SandboxHarness) -> tuple[tuple[str, str], ...]:
    return internal_metadata(sandbox.internal_token, sandbox.sandbox_id)


async def test_submit_changes(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    for round_ in range(1, 4):
        document = batch_document([move_within(p, round_, street=f"Straat {round_}") for p in persons[:5]])
        answers = await at_once(lambda: submit(sandbox, document, key=f"submit-{round_}"))  # noqa: B023
        assert all(answer == answers[0] for answer in answers)
        assert [r.outcome for r in answers[0].results] == [brp_pb2.MESSAGE_OUTCOME_APPLIED] * 5
    for person in persons[:5]:
        after = await get(sandbox, person.bsn, history=True)
        assert [c.sequence for c in after.history] == [1, 2, 3]


async def test_set_follow_indication(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    followed = persons[0]
    request = brp_pb2.SetFollowIndicationRequest(idempotency_key="f1", subscriber="rod", bsn=followed.bsn, follow=True)
    answers = await at_once(lambda: stub(sandbox).SetFollowIndication(request, metadata=internal(sandbox)))
    assert all(answer == answers[0] for answer in answers)
    # Without a key too: the first follow of a person by a subscriber is made once, whoever wins.
    other = brp_pb2.SetFollowIndicationRequest(subscriber="rod", bsn=persons[1].bsn, follow=True)
    await at_once(lambda: stub(sandbox).SetFollowIndication(other, metadata=internal(sandbox)))
    await submit(sandbox, batch_document([move_within(p, 1) for p in persons[:3]]))
    call = stub(sandbox).StreamPersonChanges(
        brp_pb2.StreamPersonChangesRequest(subscriber="rod"), metadata=sandbox.metadata(), timeout=5
    )
    seen = []
    async for change in call:
        seen.append(change.bsn)
        if len(seen) == 2:
            call.cancel()
            break
    assert seen == [followed.bsn, persons[1].bsn]


async def test_seed_register(sandbox: SandboxHarness) -> None:
    request = common_pb2.SeedRegisterRequest(idempotency_key="seed-1", size="small", seed=7)
    answers = await at_once(lambda: stub(sandbox).SeedRegister(request, metadata=internal(sandbox)))
    assert all(answer == answers[0] for answer in answers)
    scenario_persons = len(scenarios.reserved_bsns())
    assert dict(answers[0].created) == {"persons": SMALL_REGISTER_PERSONS, "scenario_persons": scenario_persons}
    listed = await stub(sandbox).ListPersons(
        brp_pb2.ListPersonsRequest(page=common_pb2.PageRequest(page_size=500)), metadata=sandbox.metadata()
    )
    assert len(listed.persons) == SMALL_REGISTER_PERSONS + scenario_persons


async def test_purge_sandbox(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    await submit(sandbox, batch_document([move_within(persons[0], 1)]))
    request = common_pb2.PurgeSandboxRequest(idempotency_key="purge-1")
    answers = await at_once(lambda: stub(sandbox).PurgeSandbox(request, metadata=internal(sandbox)))
    assert all(answer == answers[0] for answer in answers)
    # The persons, the applied change, and the scenario persons' seed date and 5 scheduled messages.
    assert answers[0].deleted == len(persons) + 1 + 1 + 5


async def test_create_sandbox_anonymously_on_one_connection(sandbox: SandboxHarness) -> None:
    for round_ in range(3):
        request = sandbox_pb2.CreateSandboxRequest(idempotency_key=f"create-{round_}", name="acme")
        answers = await at_once(lambda: admin(sandbox).CreateSandbox(request))  # noqa: B023
        assert_one_secret(answers)


async def test_create_sandbox_by_a_vendor(sandbox: SandboxHarness) -> None:
    request = sandbox_pb2.CreateSandboxRequest(idempotency_key="create-mine", name="second")
    answers = await at_once(lambda: admin(sandbox).CreateSandbox(request, metadata=sandbox.metadata()))
    assert_one_secret(answers)
    assert answers[0].sandbox.sandbox_id != sandbox.sandbox_id


async def test_rotate_sandbox_key(sandbox: SandboxHarness) -> None:
    request = sandbox_pb2.RotateSandboxKeyRequest(idempotency_key="rotate-1")
    answers = await at_once(lambda: admin(sandbox).RotateSandboxKey(request, metadata=sandbox.metadata()))
    assert_one_secret(answers)
    keys = await admin(sandbox).ListSandboxKeys(sandbox_pb2.ListSandboxKeysRequest(), metadata=sandbox.metadata())
    assert len(keys.keys) == 2


async def test_revoke_sandbox_key(sandbox: SandboxHarness) -> None:
    rotated = await admin(sandbox).RotateSandboxKey(
        sandbox_pb2.RotateSandboxKeyRequest(idempotency_key="rotate-1"), metadata=sandbox.metadata()
    )
    new = ((SANDBOX_KEY, rotated.sandbox_key),)
    first_key = (await admin(sandbox).ListSandboxKeys(sandbox_pb2.ListSandboxKeysRequest(), metadata=new)).keys[0]
    request = sandbox_pb2.RevokeSandboxKeyRequest(idempotency_key="revoke-1", key_id=first_key.key_id)
    answers = await at_once(lambda: admin(sandbox).RevokeSandboxKey(request, metadata=new))
    assert all(answer == answers[0] for answer in answers)
    assert answers[0].HasField("revoked_at")


def assert_one_secret(answers: list[Any]) -> None:
    """Identical answers, but the secret key in the first one only: replays never carry it (it is stored hashed)."""
    with_secret = [a for a in answers if a.sandbox_key]
    assert len(with_secret) == 1 and with_secret[0].sandbox_key.startswith("sk_test_")
    bare = []
    for answer in answers:
        copy = type(answer)()
        copy.CopyFrom(answer)
        copy.ClearField("sandbox_key")
        bare.append(copy)
    assert all(b == bare[0] for b in bare)


async def test_set_clock(sandbox: SandboxHarness) -> None:
    target = Timestamp()
    target.FromDatetime(dt.datetime(2027, 10, 1, 9, tzinfo=dt.UTC))
    # Travelling makes `now` differ by the microsecond between calls: identical answers are replays.
    request = sandbox_pb2.SetClockRequest(idempotency_key="clock-1", travel_to=target)
    answers = await at_once(lambda: admin(sandbox).SetClock(request, metadata=sandbox.metadata()))
    assert all(answer == answers[0] for answer in answers)
    assert answers[0].today.year == 2027 and not answers[0].frozen


async def test_seed_sandbox(sandbox: SandboxHarness) -> None:
    request = sandbox_pb2.SeedSandboxRequest(idempotency_key="seed-1", size=sandbox_pb2.SEED_SIZE_SMALL, seed=5)
    answers = await at_once(lambda: admin(sandbox).SeedSandbox(request, metadata=sandbox.metadata()))
    assert all(answer == answers[0] for answer in answers)
    assert answers[0].created["persons"] == SMALL_REGISTER_PERSONS and answers[0].created["providers"] > 0


async def test_reset_sandbox(sandbox: SandboxHarness) -> None:
    await admin(sandbox).SeedSandbox(
        sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_SMALL, seed=5), metadata=sandbox.metadata()
    )
    request = sandbox_pb2.ResetSandboxRequest(idempotency_key="reset-1")
    answers = await at_once(lambda: admin(sandbox).ResetSandbox(request, metadata=sandbox.metadata()))
    assert all(answer == answers[0] for answer in answers)
    listed = await stub(sandbox).ListPersons(brp_pb2.ListPersonsRequest(), metadata=sandbox.metadata())
    assert not listed.persons


async def test_a_stranger_never_replays_a_creators_key(sandbox: SandboxHarness) -> None:
    request = sandbox_pb2.CreateSandboxRequest(idempotency_key="create-1", name="acme")
    mine = await admin(sandbox).CreateSandbox(request)
    # Another vendor: its own connection (not shared with ours), the same guessable key and name.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(sandbox.address, options=options) as elsewhere:
        stranger = sandbox_pb2_grpc.SandboxAdminStub(elsewhere)
        theirs = await stranger.CreateSandbox(request)
        assert theirs.sandbox_key and theirs.sandbox_key != mine.sandbox_key
        assert theirs.sandbox.sandbox_id != mine.sandbox.sandbox_id
        # Nor with a sandbox key of its own.
        keyed = await stranger.CreateSandbox(request, metadata=((SANDBOX_KEY, theirs.sandbox_key),))
        assert keyed.sandbox_key not in (mine.sandbox_key, theirs.sandbox_key)
        # A vendor sending its sandbox key replays its own answer on any connection (without the secret).
        again = await stranger.CreateSandbox(request, metadata=((SANDBOX_KEY, theirs.sandbox_key),))
        assert again.sandbox == keyed.sandbox and again.sandbox_key == ""
    replay = await admin(sandbox).CreateSandbox(request)
    assert replay.sandbox == mine.sandbox and replay.sandbox_key == ""
