"""BRP sync's use cases without a server: a SQLite file as the unit of work, the sandbox admin faked in process."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlmodel import Session

from services.brp_sync import scenarios, service
from services.brp_sync.parsing import MAX_MESSAGES_PER_DOCUMENT, RefusedDocumentError
from services.brp_sync.peers import FakeSandboxes
from services.brp_sync.rules import Gebeurtenis, Mutatie, Outcome, Persoon, Verblijfplaats
from services.brp_sync.xml_codec import batch_document
from services.common.caller import Caller
from services.common.database import Database, make_engine
from services.common.errors import RegistryError
from services.common.migrations import upgrade
from services.common.paging import Page

SANDBOX = "sbx_unit"
DAY = dt.date(2026, 11, 28)
NOON = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
BSN = "999990019"
ADDRESS = Verblijfplaats("Damrak", 1, "1012LG", "Amsterdam", "0363")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    engine = make_engine(f"sqlite:///{tmp_path / 'brp.db'}")
    upgrade("brp_sync", engine)
    yield Database(engine)
    engine.dispose()


def message_id(name: str) -> str:
    """A UUID (the schema wants one) that is the same for the same name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def birth(sequence: int = 1) -> Mutatie:
    return Mutatie(
        message_id("birth"),
        BSN,
        sequence,
        "0363",
        Gebeurtenis.GEBOORTE,
        DAY,
        persoon=Persoon("Noor", "", "Bakker", DAY, "V"),
        verblijfplaats=ADDRESS,
    )


def move(sequence: int, street: str) -> Mutatie:
    return Mutatie(
        message_id(f"move-{sequence}"),
        BSN,
        sequence,
        "0363",
        Gebeurtenis.VERHUISD_BINNEN,
        DAY,
        verblijfplaats=dataclasses.replace(ADDRESS, straatnaam=street),
    )


def submit(database: Database, *mutaties: Mutatie) -> list[service.MessageResult]:
    document = service.admit_document(batch_document(mutaties))
    return database.transaction(
        lambda s: service.submit_changes(s, sandbox_id=SANDBOX, document=document, received_at=NOON)
    )


def test_a_document_over_the_message_cap_is_refused_whole() -> None:
    many = [move(n, "Straat") for n in range(1, MAX_MESSAGES_PER_DOCUMENT + 2)]
    with pytest.raises(RefusedDocumentError) as refused:
        service.admit_document(batch_document(many))
    assert refused.value.code == "SBX-BRP-TOO-MANY-MESSAGES"
    assert len(service.admit_document(batch_document(many[:MAX_MESSAGES_PER_DOCUMENT])).elements) == 5_000


def test_messages_are_applied_held_released_and_deduplicated(database: Database) -> None:
    held = submit(database, move(3, "Derde"), move(2, "Tweede"))
    assert [r.outcome for r in held] == [Outcome.HELD, Outcome.HELD]
    [born] = submit(database, birth())
    assert born.outcome is Outcome.APPLIED and born.released == [message_id("move-2"), message_id("move-3")]
    [again] = submit(database, birth())
    assert again.outcome is Outcome.DUPLICATE
    person, history = database.transaction(
        lambda s: service.get_person(s, sandbox_id=SANDBOX, bsn=BSN, with_history=True)
    )
    assert person.address is not None and person.address.street == "Derde" and person.last_sequence == 3
    assert [c.sequence for c in history] == [1, 2, 3]


def test_a_rule_rejection_is_listed_and_takes_its_place_in_the_sequence(database: Database) -> None:
    submit(database, birth())
    [elsewhere] = submit(
        database, dataclasses.replace(move(2, "X"), verblijfplaats=Verblijfplaats("A", 1, "3011AD", "R", "0599"))
    )
    assert (elsewhere.outcome, elsewhere.reason_code) == (Outcome.REJECTED, "SBX-BRP-MUNICIPALITY-MISMATCH")
    [next_one] = submit(database, move(3, "Volgende"))
    assert next_one.outcome is Outcome.APPLIED
    rejected = database.transaction(lambda s: service.list_rejected(s, sandbox_id=SANDBOX, page=Page(100, "")))
    assert [(r.message_id, r.reason_code) for r in rejected] == [
        (message_id("move-2"), "SBX-BRP-MUNICIPALITY-MISMATCH")
    ]


async def test_a_refused_document_is_kept_and_refused_with_a_field_violation(database: Database) -> None:
    with pytest.raises(RegistryError) as refused:
        await service.receive_document(database, sandbox_id=SANDBOX, data=b"<not-closed", received_at=NOON)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.code) for v in refused.value.violations] == [("xml_document", "SBX-BRP-NOT-WELL-FORMED")]
    kept = await database.run(lambda s: service.list_rejected(s, sandbox_id=SANDBOX, page=Page(100, "")))
    assert [(r.message_id, r.reason_code, r.xml) for r in kept] == [("", "SBX-BRP-NOT-WELL-FORMED", b"<not-closed")]


def test_held_messages_are_flagged_after_the_gap_timeout(database: Database) -> None:
    submit(database, move(2, "Later"))

    def held(now: dt.datetime) -> list[bool]:
        rows = database.transaction(
            lambda s: service.list_held(
                s, sandbox_id=SANDBOX, page=Page(100, ""), now=now, gap_timeout=dt.timedelta(hours=1)
            )
        )
        return [h.gap_overdue for h in rows]

    assert held(NOON + dt.timedelta(minutes=59)) == [False]
    assert held(NOON + dt.timedelta(hours=1)) == [True]


async def test_a_register_must_name_a_sandbox_that_exists() -> None:
    sandboxes = FakeSandboxes({"sk_test_a": SANDBOX})
    assert await service.require_known_sandbox(sandboxes, Caller(SANDBOX, internal=True)) == SANDBOX
    with pytest.raises(RegistryError) as unknown:
        await service.require_known_sandbox(sandboxes, Caller("sbx_gone", internal=True))
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND
    # A vendor's sandbox id came from its key, which names an existing sandbox: no second question.
    assert await service.require_known_sandbox(FakeSandboxes(), Caller(SANDBOX)) == SANDBOX


async def test_seeding_adds_persons_aged_on_the_sandbox_clock_once(database: Database) -> None:
    today = await service.seed_date(FakeSandboxes({"k": SANDBOX}, today=dt.date(2030, 3, 1)), SANDBOX)
    first = database.transaction(
        lambda s: service.seed_register(s, sandbox_id=SANDBOX, size="small", seed=1, today=today)
    )
    again = database.transaction(
        lambda s: service.seed_register(s, sandbox_id=SANDBOX, size="small", seed=2, today=today)
    )
    assert (first, again) == ({"persons": 18 * 20, "scenario_persons": 6}, {"persons": 0, "scenario_persons": 0})
    youngest = database.transaction(
        lambda s: service.list_persons(
            s,
            sandbox_id=SANDBOX,
            query=service.PersonQuery(born_on_or_after=dt.date(2026, 3, 2)),
            page=Page(500, ""),
        )
    )
    # Only the scenario persons born less than 4 years ago (turning 4 after the next 1 February) are younger.
    assert {p.bsn for p in youngest} == {
        scenarios.by_key(key).bsn for key in ("jonger-dan-4", "geboortedatum-gecorrigeerd")
    }
    # The persons, the scenario persons, their seed date and their 5 scheduled messages.
    assert database.transaction(lambda s: service.purge_sandbox(s, sandbox_id=SANDBOX)) == 18 * 20 + 6 + 1 + 5


def test_follow_indications_are_set_and_removed(database: Database) -> None:
    def follow(session: Session, on: bool) -> None:
        service.set_follow_indication(session, sandbox_id=SANDBOX, subscriber="rod", bsn=BSN, follow=on)

    submit(database, birth())
    for on in (True, True, False, False, True):
        database.transaction(lambda s: follow(s, on))  # noqa: B023
    changes = database.transaction(
        lambda s: service.store.changes_after(s, sandbox_id=SANDBOX, subscriber="rod", cursor=0, limit=10)
    )
    assert [c.bsn for c in changes] == [BSN]
