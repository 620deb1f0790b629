"""The use cases of BRP sync, one function per operation, over a unit of work (a session) and the peer gateways."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from lxml import etree
from sqlalchemy import event
from sqlmodel import Session

from services.brp_sync import rules, scenarios, seeding, store, xml_codec
from services.brp_sync.parsing import MAX_MESSAGES_PER_DOCUMENT, RefusedDocumentError, parse_document
from services.brp_sync.peers import SandboxGateway
from services.brp_sync.rules import (
    AppliedChange,
    HeldMessage,
    MessageResult,
    Mutatie,
    Outcome,
    PersonState,
    RejectedMessage,
    RuleViolationError,
    SequenceDecision,
)
from services.common import telemetry
from services.common.caller import Caller
from services.common.database import Database
from services.common.errors import FieldViolation, invalid_argument, not_found, permission_denied
from services.common.identifiers import is_valid_a_nummer, is_valid_bsn
from services.common.mutation import take_write_lock
from services.common.paging import Page
from services.common.seeding import national_bsns
from services.common.wakeup import Follower, LogWakeup, follow_log

# Changes one stream read takes from the log at a time.
STREAM_BATCH = 500


@dataclass(frozen=True)
class PersonQuery:
    """ListPersons' filters: birth dates (inclusive) and only persons alive and living in the Netherlands."""

    born_on_or_after: dt.date | None = None
    born_on_or_before: dt.date | None = None
    only_resident: bool = False
    # The address (verblijfplaats): a postcode without spaces, upper case ("" for any), and a house number (0 any).
    postcode: str = ""
    house_number: int = 0


@dataclass(frozen=True)
class Document:
    """A BRP document that passed the hardened parser and the message cap: its Mutatie candidates, in order."""

    elements: Sequence[etree._Element]


# ---- who may call ----


async def require_known_sandbox(sandboxes: SandboxGateway, caller: Caller) -> str:
    """The caller's sandbox id. A register calling in names a sandbox by id, so it must exist (a key always does)."""
    sandbox_id = caller.require_sandbox()
    if caller.internal and not await sandboxes.exists(sandbox_id):
        raise not_found(f"sandbox {sandbox_id}", "x-sandbox-id", "SBX-UNKNOWN-SANDBOX")
    return sandbox_id


# ---- persons ----


def get_person(
    session: Session, *, sandbox_id: str, bsn: str, with_history: bool
) -> tuple[PersonState, list[AppliedChange]]:
    """The person as now, with (on request) every applied change, oldest first; NOT_FOUND when unknown."""
    found = store.person(session, sandbox_id=sandbox_id, bsn=bsn)
    if found is None:
        raise not_found(f"person with BSN {bsn}", "bsn", "SBX-BRP-PERSON-UNKNOWN")
    changes = store.history(session, sandbox_id=sandbox_id, bsn=bsn) if with_history else []
    return found, changes


def list_persons(session: Session, *, sandbox_id: str, query: PersonQuery, page: Page) -> list[PersonState]:
    """Persons in BSN order after the page's key, one more than the page holds (so the codec knows there is more)."""
    return store.persons(
        session,
        sandbox_id=sandbox_id,
        born_on_or_after=query.born_on_or_after,
        born_on_or_before=query.born_on_or_before,
        only_resident=query.only_resident,
        postcode=query.postcode,
        house_number=query.house_number,
        after_bsn=page.after,
        limit=page.size + 1,
    )


# ---- ingestion ----


def admit_document(data: bytes) -> Document:
    """Parses a document with the hardened parser and refuses one with more messages than one answer may list.

    Runs before the write transaction: a refused document commits nothing but its record in the rejected list.
    """
    root = parse_document(data)
    elements = xml_codec.message_elements(root) or [root]
    if len(elements) > MAX_MESSAGES_PER_DOCUMENT:
        raise RefusedDocumentError(
            "SBX-BRP-TOO-MANY-MESSAGES",
            f"the document holds {len(elements)} messages; the limit is {MAX_MESSAGES_PER_DOCUMENT} a document",
        )
    return Document(elements)


async def receive_document(database: Database, *, sandbox_id: str, data: bytes, received_at: dt.datetime) -> Document:
    """The admitted document; a refused one is kept in the rejected list and refused whole (INVALID_ARGUMENT)."""
    try:
        return await asyncio.to_thread(admit_document, data)
    except RefusedDocumentError as refused:
        code, reason = refused.code, refused.reason
        await database.run(
            lambda s: store.add_rejected(
                s, sandbox_id=sandbox_id, message_id="", code=code, reason=reason, xml=data, received_at=received_at
            )
        )
        raise invalid_argument([FieldViolation("xml_document", reason, code)], reason=code) from None


def submit_changes(
    session: Session, *, sandbox_id: str, document: Document, received_at: dt.datetime
) -> list[MessageResult]:
    """Validates and applies every message of the document in this transaction, one result per message.

    Each message is judged on its own, so a bad one never stops a good one next to it.
    """
    ingestion = _Ingestion(store.DocumentStore(session, sandbox_id=sandbox_id, received_at=received_at))
    results = ingestion.run(document.elements)
    outcomes = collections.Counter(result.outcome.name.lower() for result in results)

    def count(_session: Session) -> None:
        # Counted once the transaction commits: a rolled-back or replayed document applied nothing.
        for outcome, number in outcomes.items():
            telemetry.BRP_MESSAGES.labels(outcome).inc(number)

    event.listen(session, "after_commit", count, once=True)
    return results


# A message as received: its element in the document, or the XML kept for it (a held message released).
Raw = bytes | etree._Element


def _bytes(raw: Raw) -> bytes:
    return raw if isinstance(raw, bytes) else xml_codec.raw_xml(raw)


class _Ingestion:
    """One document's ingestion: validate, deduplicate, order per person (hold, release), apply, log."""

    def __init__(self, documents: store.DocumentStore) -> None:
        self.store = documents
        self.seen_ids: set[str] = set()

    def run(self, elements: Sequence[etree._Element]) -> list[MessageResult]:
        self.store.lock_log()
        peeked = [xml_codec.peek(element) for element in elements]
        self.seen_ids = self.store.prefetch((message_id for message_id, _ in peeked), (bsn for _, bsn in peeked))
        results = [
            self.ingest(index, element, message_id)
            for index, (element, (message_id, _)) in enumerate(zip(elements, peeked, strict=True))
        ]
        self.store.flush()
        return results

    def reject(self, index: int, message_id: str, code: str, reason: str, xml: Raw) -> MessageResult:
        self.store.reject(message_id, code, reason, _bytes(xml))
        return MessageResult(index, message_id, Outcome.REJECTED, code, reason)

    def ingest(self, index: int, element: etree._Element, message_id: str) -> MessageResult:
        """The outcome of one message; `message_id` is its BerichtId as xml_codec.peek reads it."""
        # Serialized only when kept (rejected or held): most messages are applied, and their XML is not stored.
        raw: Raw = element
        if xml_codec.is_legacy(element):
            return self.reject(
                index,
                message_id,
                "SBX-BRP-UNSUPPORTED-VERSION",
                f"namespace {xml_codec.LEGACY_NAMESPACE} (version 1, event names like 'overleden' and ISO countries) "
                f"is no longer accepted; write {xml_codec.NAMESPACE} with the BRP API's event names (nl.brp.*), "
                "Anummer and Versienummer (see services/brp_sync/README.md)",
                raw,
            )
        if element.tag != xml_codec.MESSAGE:
            return self.reject(index, message_id, "SBX-BRP-XSD-INVALID", f"element {element.tag} is not a Mutatie", raw)
        errors = xml_codec.schema_errors(element)
        if errors:
            return self.reject(index, message_id, "SBX-BRP-XSD-INVALID", "; ".join(errors[:5]), raw)
        try:
            mutatie = xml_codec.decode(element)
        except RuleViolationError as violation:
            return self.reject(index, message_id, violation.code, violation.reason, raw)
        if not is_valid_a_nummer(mutatie.a_nummer):
            return self.reject(
                index,
                message_id,
                "SBX-BRP-INVALID-ANUMMER",
                f"Anummer {mutatie.a_nummer} repeats a digit in a row",
                raw,
            )
        if not is_valid_bsn(mutatie.bsn):
            return self.reject(
                index, message_id, "SBX-INVALID-BSN", f"Burgerservicenummer {mutatie.bsn} fails the 11-proof", raw
            )
        partner = mutatie.huwelijk.partner_bsn if mutatie.huwelijk else None
        if partner is not None and not is_valid_bsn(partner):
            return self.reject(
                index, message_id, "SBX-INVALID-BSN", f"PartnerBurgerservicenummer {partner} fails the 11-proof", raw
            )
        if message_id in self.seen_ids:
            return MessageResult(index, message_id, Outcome.DUPLICATE)
        self.seen_ids.add(message_id)
        last = self.store.last_sequence(mutatie.bsn)
        decision = rules.sequence_decision(last, mutatie.volgnummer)
        if decision is SequenceDecision.STALE:
            return self.reject(
                index,
                message_id,
                "SBX-BRP-STALE-SEQUENCE",
                f"Volgnummer {mutatie.volgnummer} of BSN {mutatie.bsn} was already processed (last is {last})",
                raw,
            )
        if decision is SequenceDecision.HOLD:
            return self.hold(index, mutatie, raw)
        result = self.process(index, mutatie, raw)
        if self.store.last_sequence(mutatie.bsn) == mutatie.volgnummer:
            # The number was consumed (applied, or rejected on a rule): successors waiting for it may follow.
            result.released = self.release(mutatie.bsn, mutatie.volgnummer)
        return result

    def hold(self, index: int, mutatie: Mutatie, raw: Raw) -> MessageResult:
        taken = self.store.held_with_sequence(mutatie.bsn, mutatie.volgnummer)
        if taken is not None:
            return self.reject(
                index,
                mutatie.bericht_id,
                "SBX-BRP-DUPLICATE-SEQUENCE",
                f"message {taken} already waits with Volgnummer {mutatie.volgnummer} for BSN {mutatie.bsn}",
                raw,
            )
        self.store.hold(mutatie, _bytes(raw))
        return MessageResult(index, mutatie.bericht_id, Outcome.HELD)

    def process(self, index: int, mutatie: Mutatie, raw: Raw) -> MessageResult:
        try:
            after = rules.apply(self.store.person(mutatie.bsn), mutatie)
        except RuleViolationError as violation:
            # The register processed this number (with an error): later messages must not wait for it.
            self.store.consume_sequence(mutatie.bsn, mutatie.volgnummer)
            return self.reject(index, mutatie.bericht_id, violation.code, violation.reason, raw)
        self.store.apply(mutatie, after)
        return MessageResult(index, mutatie.bericht_id, Outcome.APPLIED)

    def release(self, bsn: str, sequence: int) -> list[str]:
        """Applies held messages of the person that now follow on, in order, while the chain is unbroken."""
        released: list[str] = []
        while (waiting := self.store.take_held(bsn, sequence + 1)) is not None:
            message_id, xml = waiting
            mutatie = xml_codec.decode(parse_document(xml))
            if self.process(-1, mutatie, xml).outcome is Outcome.APPLIED:
                released.append(message_id)
            sequence += 1
        return released


def list_rejected(session: Session, *, sandbox_id: str, page: Page) -> list[RejectedMessage]:
    return store.rejected(session, sandbox_id=sandbox_id, after_id=page.after_int, limit=page.size + 1)


def list_held(
    session: Session, *, sandbox_id: str, page: Page, now: dt.datetime, gap_timeout: dt.timedelta
) -> list[HeldMessage]:
    """Held messages in arrival order, each flagged when it has waited longer than the gap timeout."""
    held = store.held(session, sandbox_id=sandbox_id, after_id=page.after_int, limit=page.size + 1)
    return [dataclasses.replace(h, gap_overdue=rules.gap_overdue(h.received_at, now, gap_timeout)) for h in held]


# ---- following ----


def set_follow_indication(
    session: Session, *, sandbox_id: str, subscriber: str, bsn: str, follow: bool, end_date: dt.date | None = None
) -> rules.FollowIndication:
    """Registers, reopens or ends (end_date) a volgindicatie, or removes it (follow False); doing what is already
    so changes nothing. Returns the indication as it now stands."""
    return store.set_follow_indication(
        session,
        sandbox_id=sandbox_id,
        subscriber=subscriber,
        bsn=bsn,
        follow=follow,
        end_date=end_date if follow else None,
    )


def require_own_subscriber(caller: Caller, subscriber: str) -> None:
    """Refuses (PERMISSION_DENIED, AUT401) a vendor naming a register's own subscriber (rules.REGISTER_SUBSCRIBERS)."""
    if subscriber in rules.REGISTER_SUBSCRIBERS and not caller.internal:
        raise permission_denied(f"the subscriber name {subscriber!r} is a register's own; follow under your own name")


def followed_person(
    session: Session, *, sandbox_id: str, subscriber: str, bsn: str, end_date: dt.date | None
) -> tuple[rules.FollowIndication | None, PersonState | None]:
    """(the indication, the person or None when unknown) when it is in place with this end; (None, None) when not.

    A read: a registration of a pupil ROD already follows writes nothing in BRP (issue 11).
    """
    indication = store.follow_indication(session, sandbox_id=sandbox_id, subscriber=subscriber, bsn=bsn)
    if indication is None or indication.end_date != end_date:
        return None, None
    return indication, store.person(session, sandbox_id=sandbox_id, bsn=bsn)


def follow_changes(
    database: Database,
    wakeup: LogWakeup,
    *,
    sandbox_id: str | None,
    subscriber: str,
    after_cursor: int,
    follower: Follower | None = None,
) -> AsyncIterator[AppliedChange]:
    """The applied-change log from a cursor on: the backlog, then each change as it commits.

    sandbox_id None follows every sandbox (only a register may ask that); a
    subscriber sees only the persons it follows.
    """

    async def read_after(cursor: int) -> Sequence[AppliedChange]:
        return await database.run(
            lambda s: store.changes_after(
                s, sandbox_id=sandbox_id, subscriber=subscriber, cursor=cursor, limit=STREAM_BATCH
            )
        )

    return follow_log(read_after, lambda change: change.cursor, after_cursor, wakeup, follower)


# ---- seed and purge (internal: SandboxAdmin calls them) ----


async def seed_date(sandboxes: SandboxGateway, sandbox_id: str) -> dt.date:
    """The sandbox clock's today: seeded persons are aged 4 to 25 on it."""
    return await sandboxes.today(sandbox_id)


def seed_register(
    session: Session,
    *,
    sandbox_id: str,
    size: str,
    seed: int,
    today: dt.date,
    synthetic_bsns: bool = False,
    national_pupils: int = 0,
) -> dict[str, int]:
    """Adds the seeded persons and the scenario persons once per sandbox (a later call adds none).

    Every BSN lies in the official test range unless the caller opted in to synthetic numbers. The
    scenario persons (scenarios.toml) are seeded on `today`, with their BRP messages scheduled from it.
    `national_pupils` adds that many primary pupils (national_seed_persons), also on a later call, so a
    national seed that failed half way is finished by repeating it.
    """
    created: dict[str, int] = {"persons": 0, "scenario_persons": 0}
    if not store.has_seeded_persons(session, sandbox_id=sandbox_id):
        states = seeding.seed_persons(size, seed, today, synthetic_bsns=synthetic_bsns)
        created["persons"] = store.add_seeded_persons(session, sandbox_id=sandbox_id, states=states)
        created["scenario_persons"] = seed_scenarios(session, sandbox_id=sandbox_id, today=today)
    if national_pupils:
        created["national_persons"] = national_seed_persons(
            session, sandbox_id=sandbox_id, count=national_pupils, seed=seed, today=today
        )
    return created


# One BRP write per this many national pupils: 1,300,000 rows at once would hold gigabytes of row dicts.
NATIONAL_WRITE_BATCH = 50_000


def national_seed_persons(session: Session, *, sandbox_id: str, count: int, seed: int, today: dt.date) -> int:
    """The national seed's `count` primary pupils (BSNs from common.seeding.national_bsns); how many were new.

    Written in batches of NATIONAL_WRITE_BATCH, one insert each; BSNs the sandbox already holds are
    skipped, so a repeated national seed adds only the missing pupils.
    """
    if count <= 0:
        return 0
    persons = seeding.national_persons(national_bsns(count), seed, today)
    created = 0
    while batch := list(itertools.islice(persons, NATIONAL_WRITE_BATCH)):
        created += store.add_seeded_persons(session, sandbox_id=sandbox_id, states=batch)
    return created


def seed_scenarios(session: Session, *, sandbox_id: str, today: dt.date) -> int:
    """The scenario persons on seed date `today`, and their scheduled messages; how many persons."""
    if store.scenario_seed_date(session, sandbox_id=sandbox_id) is not None:
        return 0
    created = store.add_seeded_persons(session, sandbox_id=sandbox_id, states=scenarios.seeded_persons(today))
    messages = [(message, str(uuid.uuid4())) for message in scenarios.schedule(today)]
    store.add_scenarios(session, sandbox_id=sandbox_id, seed_date=today, messages=messages)
    return created


@dataclass(frozen=True)
class ScenarioView:
    """A sandbox's scenario persons: the seed date, each person, and each scheduled message as it stands."""

    seed_date: dt.date | None
    persons: tuple[scenarios.ScenarioPerson, ...]
    scheduled: tuple[store.StoredSchedule, ...]


def list_scenario_persons(session: Session, *, sandbox_id: str) -> ScenarioView:
    """The scenario table as seeded in this sandbox (no seed date and no messages when it was not seeded)."""
    return ScenarioView(
        store.scenario_seed_date(session, sandbox_id=sandbox_id),
        scenarios.table().persons,
        tuple(store.scheduled_messages(session, sandbox_id=sandbox_id)),
    )


def send_due_messages(session: Session, *, sandbox_id: str, today: dt.date, received_at: dt.datetime) -> int:
    """Sends the sandbox's scheduled messages whose date has come through ingestion, oldest first; how many.

    Each message is built against the person as BRP holds them now (next Volgnummer and Versienummer) and
    goes through the hardened parser, the XSD and the rules like any municipality's message, so what
    follows (the change log, follow indications, ROD's re-evaluation) is the same. A message the rules
    refuse (say, the person died meanwhile) is recorded with its reason and not tried again.
    """
    take_write_lock(session, sqlite_table="brp_sync_person", names=(store.LOG_NAME,))
    due = store.due_messages(session, sandbox_id=sandbox_id, today=today)
    for scheduled in due:
        current = store.person(session, sandbox_id=sandbox_id, bsn=scheduled.message.bsn)
        mutatie = scenarios.mutatie(scheduled.message, current, message_id=scheduled.message_id)
        document = admit_document(xml_codec.message_document(mutatie))
        result = submit_changes(session, sandbox_id=sandbox_id, document=document, received_at=received_at)[0]
        store.mark_sent(
            session,
            schedule_id=scheduled.id,
            sent_at=received_at,
            outcome=result.outcome.value,
            reason_code=result.reason_code,
        )
    return len(due)


def purge_sandbox(session: Session, *, sandbox_id: str) -> int:
    """Deletes every record of the sandbox in this register; returns how many."""
    return store.purge(session, sandbox_id=sandbox_id)
