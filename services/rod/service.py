"""ROD's use cases, one per operation: ask the peers, decide with the rules, store, and write feedback to the outbox.

A mutating use case takes a `Commit`: the one mutation path bound to its
request (services.common.mutation via the servicer, or a plain transaction in
unit tests). The use case runs its checks with the peers first, then hands
the commit the work to do in the write transaction; the commit answers with
the stored answer when the idempotency key was answered before. No protobuf
here: commands, outcomes and peers' answers are ROD's domain types.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Protocol, TypeVar

import grpc
from sqlmodel import Session

from services.common.caller import INSTITUTION_CODE, Caller
from services.common.clock import real_now
from services.common.database import Database, lock_log_for_append
from services.common.errors import (
    FieldViolation,
    RegistryError,
    failed_precondition,
    invalid_argument,
    not_found,
    permission_denied,
)
from services.common.identifiers import InvalidIdentifierError, validate_institution_code
from services.common.settings import get_settings, parse_correction_deadlines
from services.common.wakeup import LogWakeup
from services.rod import codec, funding, outbox, rules, store
from services.rod.copies import PersonCopy
from services.rod.fanout import FeedbackFanout
from services.rod.peers import RodPeers, once_each
from services.rod.rules import (
    BrpFacts,
    Cause,
    CheckedPeriods,
    EnrolmentOutcome,
    EnrolmentState,
    EnrolmentStatus,
    FeedbackEntry,
    OutboxEntry,
    Outcome,
    PeriodShape,
    PupilDetails,
    Trigger,
    Violations,
)
from services.rod.tables import RodEnrolment, RodPupil

log = logging.getLogger(__name__)

# Items of one bulk registration judged at a time (each asks BRP and RIO, once per distinct question).
BULK_CONCURRENCY = 64
# A bulk item that passed the peers' checks: the command (with the BSN BRP found), the person, the periods.
_Judged = tuple[rules.RegisterEnrolment, BrpFacts | None, CheckedPeriods]

# What a school's message does to its enrolment, inside the write transaction.
Change = Callable[[Session, RodEnrolment], None]
OutcomeT_contra = TypeVar("OutcomeT_contra", contravariant=True)
AnswerT = TypeVar("AnswerT")
AnswerT_co = TypeVar("AnswerT_co", covariant=True)


class Commit(Protocol[OutcomeT_contra, AnswerT_co]):
    """The mutation path bound to one request: its caller, idempotency key and the encoding of its answer."""

    async def answered(self) -> AnswerT_co | None:
        """The stored answer when this request's idempotency key was answered before (no lock taken)."""
        ...

    async def __call__(self, work: Callable[[Session], OutcomeT_contra], *, locks: Sequence[str] = ()) -> AnswerT_co:
        """Runs work once per idempotency key in the write transaction; the new answer, or the stored one."""
        ...


@dataclasses.dataclass(frozen=True)
class Rejection:
    """Whom a refused school message concerns: its document, and its school and pupil or its enrolment."""

    sandbox_id: str
    document_id: str
    institution_code: str = ""
    enrolment_id: str = ""
    pupil_number: str = ""


# --- the count-date calendar ---


def calendar() -> funding.CountDateCalendar:
    """Count dates with the correction deadlines the settings configure (REGISTRY_ROD_CORRECTION_DEADLINES)."""
    return _calendar_for(get_settings().rod_correction_deadlines)


@functools.cache
def _calendar_for(spec: str) -> funding.CountDateCalendar:
    return funding.calendar_with_deadlines(parse_correction_deadlines(spec))


# --- re-deciding a pupil: the one way a decision changes ---


@dataclasses.dataclass(frozen=True)
class Reevaluated:
    """What re-deciding a pupil gave the enrolment its cause names: the feedback's cursor and its evaluation."""

    cursor: int = 0
    evaluation: funding.Evaluation | None = None


def reevaluate_pupil(
    session: Session, *, sandbox_id: str, pupil_number: str, today: dt.date, cause: Cause
) -> Reevaluated:
    """Re-decides every enrolment of a pupil and writes feedback for each one that changed.

    The enrolment named by the cause always gets feedback (the school's own
    message was processed); its cursor and evaluation are returned.
    """
    store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[pupil_number])
    file = store.pupil_file(session, sandbox_id=sandbox_id, pupil_number=pupil_number)
    return _reevaluate(session, file, today, cause)


def _reevaluate(session: Session, file: store.PupilFile, today: dt.date, cause: Cause) -> Reevaluated:
    evaluations = funding.evaluate_pupil(file.facts, file.person, file.previous, today, calendar())
    caused = Reevaluated()
    for enrolment in file.enrolments:
        enrolment_id = enrolment.enrolment_id
        evaluation = evaluations[enrolment_id]
        changed = list(evaluation.decisions) != file.previous[enrolment_id] or store.signals_changed(
            enrolment, evaluation
        )
        is_cause = enrolment_id == cause.enrolment_id
        # A deleted enrolment is not in the school's administration: no notice about the person.
        notices = cause.notices if enrolment.status != EnrolmentStatus.DELETED.value else ()
        if not changed and not is_cause and not notices:
            continue
        if changed:
            store.save_evaluation(session, enrolment, evaluation)
        cursor = outbox.append(
            session,
            FeedbackEntry(
                sandbox_id=enrolment.sandbox_id,
                institution_code=enrolment.institution_code,
                enrolment_id=enrolment_id,
                pupil_number=enrolment.pupil_number,
                outcome=rules.outcome_of(evaluation.signals + notices),
                trigger=cause.trigger_for(enrolment_id),
                cause_id=cause.cause_id or cause.document_id,
                document_id=cause.document_id if is_cause else "",
                decisions=evaluation.decisions,
                signals=evaluation.signals + notices,
            ),
        )
        if is_cause:
            caused = Reevaluated(cursor, evaluation)
    return caused


def reevaluate_pupils(
    session: Session,
    *,
    sandbox_id: str,
    pupils: Sequence[str],
    today: dt.date,
    cause: Cause | Callable[[str], Cause],
) -> None:
    """Re-decides several pupils in this transaction: their locks first, one read of all their files, then each.

    `cause` is the cause of them all, or a function giving each pupil's own.
    """
    store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=sorted(pupils))
    files = store.pupil_files(session, sandbox_id=sandbox_id, pupil_numbers=pupils)
    for pupil in pupils:
        _reevaluate(session, files[pupil], today, cause(pupil) if callable(cause) else cause)


# --- what the peers' changes do (the re-evaluation follower calls these inside its transactions) ---


def offering_changed(session: Session, change: rules.OfferingChanged, today: dt.date) -> int:
    """Records an offering's end on every period taught in it and re-decides their pupils; returns how many."""
    sandbox_id = change.sandbox_id
    periods = store.periods_in_offering(session, sandbox_id=sandbox_id, offering_id=change.offering_id)
    owners = store.pupils_of_enrolments(session, [p.enrolment_id for p in periods])
    store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=list(owners.values()))
    pupils: set[str] = set()
    for period in periods:
        new_end = rules.offering_end_for(period.end_date, change.end)
        if new_end == period.offering_end_date:
            continue
        period.offering_end_date = new_end
        session.add(period)
        if period.enrolment_id in owners:
            pupils.add(owners[period.enrolment_id])
    session.flush()
    reevaluate_pupils(
        session, sandbox_id=sandbox_id, pupils=sorted(pupils), today=today, cause=rules.rio_cause(change.cursor)
    )
    return len(pupils)


def rio_end_changed(session: Session, change: rules.RioEndChanged, today: dt.date) -> None:
    """Remembers a location's or school's end and re-decides every pupil taught there."""
    sandbox_id = change.sandbox_id
    store.store_rio_end(session, sandbox_id=sandbox_id, kind=change.kind, code=change.code, end=change.end)
    pupils = store.pupils_at(session, sandbox_id=sandbox_id, kind=change.kind, code=change.code)
    store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=pupils)
    reevaluate_pupils(session, sandbox_id=sandbox_id, pupils=pupils, today=today, cause=rules.rio_cause(change.cursor))


def location_use_changed(
    session: Session, change: rules.LocationUseChanged, schools: Sequence[str], today: dt.date
) -> None:
    """Remembers the end of a board's use of a location for each of its schools and re-decides their pupils there.

    A period there after the use's end is treated like one at an ended location
    (RIO: the board no longer uses the location, so its schools no longer teach
    there); the next board's schools at the location are not among `schools`.
    """
    sandbox_id = change.sandbox_id
    for school in schools:
        key = rules.use_key(change.location_code, school)
        store.store_rio_end(session, sandbox_id=sandbox_id, kind=rules.LOCATION_USE, code=key, end=change.end)
    pupils = store.pupils_at_schools(
        session, sandbox_id=sandbox_id, location_code=change.location_code, institution_codes=schools
    )
    store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=pupils)
    reevaluate_pupils(session, sandbox_id=sandbox_id, pupils=pupils, today=today, cause=rules.rio_cause(change.cursor))


def person_changed(session: Session, change: rules.PersonChanged, today: dt.date) -> None:
    """Records the person's new BRP facts; when a date that matters for funding changed, re-decides the pupil."""
    persons_changed(session, [change], {change.sandbox_id: today})


def persons_changed(session: Session, changes: Sequence[rules.PersonChanged], todays: dict[str, dt.date]) -> None:
    """Applies a batch of BRP changes in order, re-deciding the pupils whose dates moved with one read per round.

    A round holds each pupil at most once: a pupil changed twice in the batch
    is re-decided after each change, as if they had come one at a time, so
    every change that alters a decision brings feedback naming it.
    """
    for sandbox_id in sorted({c.sandbox_id for c in changes}):
        numbers = sorted({c.facts.bsn for c in changes if c.sandbox_id == sandbox_id})
        store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=numbers)
    round_: list[rules.PersonChanged] = []
    in_round: set[tuple[str, str]] = set()
    for change in changes:
        key = (change.sandbox_id, change.facts.bsn)
        if key in in_round:
            _persons_round(session, round_, todays)
            round_, in_round = [], set()
        round_.append(change)
        in_round.add(key)
    _persons_round(session, round_, todays)


def _persons_round(session: Session, changes: Sequence[rules.PersonChanged], todays: dict[str, dt.date]) -> None:
    moved: dict[str, dict[str, Cause]] = {}
    for change in changes:
        stored = store.store_brp_facts(session, sandbox_id=change.sandbox_id, facts=change.facts, create=False)
        if stored.dates_moved or stored.details_notice:
            notices = (stored.details_notice,) if stored.details_notice else ()
            moved.setdefault(change.sandbox_id, {})[change.facts.bsn] = Cause(
                Trigger.BRP_CHANGE, cause_id=change.message_id, notices=notices
            )
    for sandbox_id, causes in sorted(moved.items()):
        reevaluate_pupils(
            session, sandbox_id=sandbox_id, pupils=sorted(causes), today=todays[sandbox_id], cause=causes.__getitem__
        )


# --- what ROD states ---


def enrolment_state(session: Session, enrolment: RodEnrolment, today: dt.date) -> EnrolmentState:
    """The enrolment as ROD states it today: a decision whose correction window closed shows as final (D)."""
    return EnrolmentState(
        enrolment_id=enrolment.enrolment_id,
        pupil_number=enrolment.pupil_number,
        institution_code=enrolment.institution_code,
        periods=tuple(
            rules.PeriodState(p.begin_date, p.end_date, p.location_code, p.course_code, p.year)
            for p in store.periods_of(session, enrolment.enrolment_id)
        ),
        sequence=enrolment.sequence,
        status=EnrolmentStatus(enrolment.status),
        decisions=_as_stated(
            store.decisions_of(session, enrolment.enrolment_id), funding.Sector(enrolment.sector), today
        ),
        updated_at=enrolment.updated_at,
        first_enrolment=enrolment.first_enrolment,
        fields=store.sector_fields_of(enrolment),
        end_reason=enrolment.end_reason,
    )


def _as_stated(
    decisions: Sequence[funding.Decision], sector: funding.Sector, today: dt.date
) -> tuple[funding.Decision, ...]:
    # A decision already final, or not final today, is stated as it is (no copy: a bulk batch states thousands).
    return tuple(
        d if d.final or not _final_today(d, sector, today) else dataclasses.replace(d, final=True) for d in decisions
    )


def _final_today(decision: funding.Decision, sector: funding.Sector, today: dt.date) -> bool:
    """A stored decision shows as final once its correction deadline passed, except an unresolved JK (DUO)."""
    if decision.status_code == funding.STATUS_JK:
        return False
    return calendar().is_final(sector, decision.count_date, today)


def _outcome(session: Session, enrolment: RodEnrolment, today: dt.date, caused: Reevaluated) -> EnrolmentOutcome:
    """The answer to a school's message about an existing enrolment, re-read after its re-evaluation."""
    # The re-evaluation wrote the signals with Core: the ORM copy of the enrolment may predate them.
    session.expire(enrolment, ["signals_json"])
    return EnrolmentOutcome(enrolment_state(session, enrolment, today), store.signals_of(enrolment), caused.cursor)


def _own_enrolment(session: Session, caller: Caller, sandbox_id: str, enrolment_id: str) -> RodEnrolment:
    enrolment = store.get_enrolment(session, sandbox_id=sandbox_id, enrolment_id=enrolment_id)
    if enrolment is None:
        raise not_found(f"enrolment {enrolment_id}", "enrolment_id", rules.ENROLMENT_NOT_FOUND)
    caller.require_institution(enrolment.institution_code)
    return enrolment


def identify_without_bsn(session: Session, *, sandbox_id: str, details: PupilDetails) -> tuple[str, bool]:
    """(onderwijsnummer, newly assigned): the existing number of the same pupil, else a new one."""
    # One identification at a time per sandbox, so the same pupil identified twice at once gets one number.
    store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=["onderwijsnummer-allocator"])
    known = store.find_same_pupil(session, sandbox_id=sandbox_id, details=details)
    if known is not None:
        return known.pupil_number, False
    number = store.allocate_onderwijsnummer(session, sandbox_id=sandbox_id)
    store.add_pupil_without_bsn(session, sandbox_id=sandbox_id, number=number, details=details)
    return number, True


def record_rejection(session: Session, rejection: Rejection, violations: Sequence[FieldViolation]) -> int:
    """Writes the REJECTED feedback of a school's refused message; returns its cursor, or 0 when none is due.

    One per document id: a document already received (processed or rejected)
    gets none. For a message about an enrolment, the enrolment names the school
    and the pupil; without one (registration) the message does.
    """
    sandbox_id, document_id = rejection.sandbox_id, rejection.document_id
    # Serialises two refusals of the same document, so only one writes its feedback.
    store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[f"document:{document_id}"])
    if store.document_known(session, sandbox_id=sandbox_id, document_id=document_id):
        return 0
    institution_code, pupil_number = rejection.institution_code, rejection.pupil_number
    if rejection.enrolment_id:
        enrolment = store.get_enrolment(session, sandbox_id=sandbox_id, enrolment_id=rejection.enrolment_id)
        if enrolment is None:
            return 0
        institution_code, pupil_number = enrolment.institution_code, enrolment.pupil_number
    store.record_document(session, sandbox_id=sandbox_id, document_id=document_id, enrolment_id=store.REJECTED_DOCUMENT)
    return outbox.append(
        session,
        FeedbackEntry(
            sandbox_id=sandbox_id,
            institution_code=institution_code,
            enrolment_id=rejection.enrolment_id,
            pupil_number=pupil_number,
            outcome=Outcome.REJECTED,
            trigger=Trigger.SCHOOL_MESSAGE,
            cause_id=document_id,
            document_id=document_id,
            signals=rules.rejection_signals(violations),
        ),
    )


class RodService:
    """The operations of RodService, over ROD's database and its peers (RIO, BRP, the sandbox clock)."""

    def __init__(
        self, database: Database, peers: RodPeers, wakeup: LogWakeup, person_copy: PersonCopy | None = None
    ) -> None:
        self._db = database
        self.peers = peers
        self.wakeup = wakeup
        # BRP's persons as ROD follows them (peers.brp answers from it); a purged sandbox's are dropped.
        self._person_copy = person_copy
        # A configured correction deadline that can never apply stops the start, not a later call.
        calendar()
        # The process's one outbox reader; streams read the database only to catch up.
        self.fanout = FeedbackFanout(database, wakeup)

    # --- checks with the peers ---

    async def _check_person(
        self, sandbox_id: str, bsn: str, start: dt.date, peers: RodPeers | None = None
    ) -> tuple[BrpFacts | None, Violations]:
        """BRP: does the person exist, and were they alive and living here on the start date?

        One call: BRP registers ROD's follow indication (volgindicatie) for the
        person, so every later change reaches its re-evaluation, and reads the
        person in the same transaction, so no change can fall between the two.
        BRP writes nothing when the indication is in place (a pupil ROD holds).
        No call at all for a person ROD follows without an end while it follows
        BRP's stream: the facts come from ROD's copy (services.rod.copies).
        """
        facts = await (peers or self.peers).brp.follow(sandbox_id, bsn)
        if facts is None:
            unknown = Violations()
            unknown.add("pupil.bsn", f"BRP knows no person with BSN {bsn}", rules.PERSON_UNKNOWN, (("bsn", bsn),))
            return None, unknown
        return facts, rules.person_violations(facts, start)

    async def _check_periods(
        self, sandbox_id: str, institution_code: str, shapes: Sequence[PeriodShape], peers: RodPeers | None = None
    ) -> CheckedPeriods:
        """RIO: did the school offer each period's course at its location on the period's begin date?

        A period without a location first gets the school's one vestiging from RIO, or a refusal
        (`rules.located_periods`); only a school that leaves a location out pays for that question.
        """
        rio = (peers or self.peers).rio
        unlocated = [index for index, shape in enumerate(shapes) if not shape.location_code]
        answers = await _all([rio.school_locations(sandbox_id, institution_code, shapes[i].begin) for i in unlocated])
        located = rules.located_periods(shapes, dict(zip(unlocated, answers, strict=True)))
        checks = await _all(
            [
                rio.check_offering(
                    sandbox_id,
                    institution_code=institution_code,
                    location_code=shape.location_code,
                    course_code=shape.course_code,
                    on=shape.begin,
                )
                if shape.location_code
                else _not_asked()
                for shape in located.shapes
            ]
        )
        checked = rules.checked_periods(located.shapes, checks, located.sector)
        return CheckedPeriods(checked.periods, checked.sector, Violations([*located.violations, *checked.violations]))

    @contextlib.asynccontextmanager
    async def _rejecting(self, rejection: Rejection) -> AsyncIterator[None]:
        """A functional refusal (FAILED_PRECONDITION) of the school's message is also pushed as REJECTED feedback.

        The feedback is written in its own transaction (the refused one rolled
        back); the caller still gets the same typed error.
        """
        try:
            yield
        except RegistryError as error:
            if error.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            violations = error.violations
            if await self._db.run(lambda s: record_rejection(s, rejection, violations)):
                self.wakeup.notify()
            raise

    # --- pupils ---

    async def _bsn_from_brp(self, sandbox_id: str, details: PupilDetails, peers: RodPeers | None = None) -> str | None:
        """The BSN BRP has for the pupil these details describe, when exactly one person matches (see rules)."""
        return rules.bsn_from_brp(details, await (peers or self.peers).brp.candidates(sandbox_id, details))

    async def identify_pupil(
        self, caller: Caller, command: rules.IdentifyPupil, commit: Commit[rules.IdentifiedPupil, AnswerT]
    ) -> AnswerT:
        sandbox_id = caller.require_sandbox()
        answered = await commit.answered()
        if answered is not None:
            return answered
        details = command.details
        if details is not None:
            found = await self._bsn_from_brp(sandbox_id, details)
            if found is not None:
                return await commit(lambda _: rules.IdentifiedPupil(found))
            return await commit(
                lambda s: rules.IdentifiedPupil(*identify_without_bsn(s, sandbox_id=sandbox_id, details=details))
            )
        facts, violations = await self._check_person(sandbox_id, command.bsn, dt.date.min)
        if violations:
            raise failed_precondition([FieldViolation("bsn", v.description, v.code, v.keys) for v in violations])
        stated = command.stated_birth_date
        if facts is not None and stated is not None and facts.birth_date != stated:
            raise failed_precondition(
                [
                    FieldViolation(
                        "details.birth_date",
                        "does not match BRP's birth date",
                        rules.BIRTH_DATE_MISMATCH,
                        (("bsn", command.bsn), ("geboortedatum", stated.isoformat())),
                    )
                ]
            )
        return await commit(lambda _: rules.IdentifiedPupil(command.bsn))

    # --- enrolments ---

    async def register_enrolment(
        self, caller: Caller, command: rules.RegisterEnrolment, commit: Commit[EnrolmentOutcome, AnswerT]
    ) -> AnswerT:
        sandbox_id = caller.require_sandbox()
        caller.require_institution(command.institution_code)
        answered = await commit.answered()
        if answered is not None:
            return answered
        if command.details is not None:
            # Details instead of a number: DUO looks for the pupil's BSN in BRP first; only without one does the
            # pupil get an onderwijsnummer. A BSN found makes this an ordinary registration under that BSN.
            found = await self._bsn_from_brp(sandbox_id, command.details)
            if found is not None:
                command = dataclasses.replace(command, pupil_number=found, pupil_has_bsn=True, details=None)
        rejection = Rejection(
            sandbox_id,
            command.document_id,
            institution_code=command.institution_code,
            pupil_number=command.pupil_number,
        )
        async with self._rejecting(rejection):
            # The clock, BRP and RIO are independent questions: ask them at once. Violations keep a fixed order.
            today, (facts, violations), checked = await asyncio.gather(
                self.peers.clock.today(sandbox_id),
                self._check_person(sandbox_id, command.pupil_number, command.periods[0].begin)
                if command.pupil_has_bsn
                else _no_person(),
                self._check_periods(sandbox_id, command.institution_code, command.periods),
            )
            violations.extend(checked.violations)
            violations.extend(
                rules.sector_field_violations(
                    checked.sector, first_enrolment=command.first_enrolment, fields=command.fields
                )
            )
            birth_date = facts.birth_date if facts is not None else _stated_birth_date(command.details)
            violations.extend(
                rules.period_violations(command.periods, sector=checked.sector, birth_date=birth_date, today=today)
            )
            if violations:
                raise failed_precondition(violations)
            # The follow indication was (re)opened without an end above; an enrolment registered as ended
            # may leave the pupil with none open, and then the indication ends after all (rules.follow_end).
            ends: list[dt.date | None] = []
            answer = await commit(lambda s: self._register(s, sandbox_id, command, today, facts, checked, ends))
            if facts is not None and ends and ends[0] is not None:
                await self._tell_follow_end(sandbox_id, facts.bsn, ends[0])
            return answer

    async def register_enrolments(
        self,
        caller: Caller,
        items: Sequence[tuple[str, rules.RegisterEnrolment | RegistryError]],
        commit: Commit[list[rules.BulkItem], AnswerT],
    ) -> AnswerT:
        """The bulk path: each item judged as register_enrolment judges it, the peers asked once per distinct
        question of the batch (peers.once_each), every accepted item written in one transaction.

        `items` are (document id, command) pairs, or (document id, error) for an item refused while decoding.
        A refused item never stops the others; its functional refusal is pushed as REJECTED feedback in the
        batch's transaction. An item whose document id ROD already holds (a batch resent under a new key) is
        refused as a duplicate, so a batch resent after a lost answer registers nothing twice.
        """
        sandbox_id = caller.require_sandbox()
        answered = await commit.answered()
        if answered is not None:
            return answered
        peers = once_each(self.peers)
        # The clock, and BRP for every person named by BSN in one call (each item's follow then answered from it).
        today, _ = await asyncio.gather(
            peers.clock.today(sandbox_id),
            peers.brp.follow_many(
                sandbox_id,
                [
                    item.pupil_number
                    for _, item in items
                    if isinstance(item, rules.RegisterEnrolment) and item.pupil_has_bsn and item.details is None
                ],
            ),
        )
        # RIO's answer to every offering the batch names, each distinct question asked once and all at once.
        # An item that names its locations and its pupil by number then needs no peer call of its own: it is
        # judged in place, without a task (1,000 tasks a batch cost more than the judging, py-spy, issue 11).
        # A failed question fails the items that ask it, as it did when each item asked.
        named = {
            (item.institution_code, shape.location_code, shape.course_code, shape.begin)
            for _, item in items
            if isinstance(item, rules.RegisterEnrolment)
            for shape in item.periods
            if shape.location_code
        }
        await asyncio.gather(
            *(
                peers.rio.check_offering(
                    sandbox_id, institution_code=school, location_code=location, course_code=course, on=begin
                )
                for school, location, course, begin in named
            ),
            return_exceptions=True,
        )
        # The others (pupil details, a period without a location) ask on their own, bounded, so a batch of
        # 1,000 distinct pupils never opens 2,000 peer calls at once.
        gate = asyncio.Semaphore(BULK_CONCURRENCY)

        async def judged(item: rules.RegisterEnrolment) -> _Judged | RegistryError:
            try:
                return await self._judge_registration(sandbox_id, item, today, peers)
            except RegistryError as error:
                return error

        async def judged_apart(item: rules.RegisterEnrolment) -> _Judged | RegistryError:
            async with gate:
                return await judged(item)

        judged_at: dict[int, _Judged | RegistryError] = {}
        apart: dict[int, Awaitable[_Judged | RegistryError]] = {}
        for index, (_, item) in enumerate(items):
            if isinstance(item, RegistryError):
                judged_at[index] = item
            elif item.details is None and all(shape.location_code for shape in item.periods):
                judged_at[index] = await judged(item)
            else:
                apart[index] = judged_apart(item)
        judged_at.update(zip(apart, await asyncio.gather(*apart.values()), strict=True))
        verdicts = [judged_at[index] for index in range(len(items))]
        follow_ends: dict[str, dt.date | None] = {}

        def work(session: Session) -> list[rules.BulkItem]:
            done: list[rules.BulkItem] = []
            named = {v[1].bsn for v in verdicts if not isinstance(v, RegistryError) and v[1] is not None}
            # Every BSN pupil's lock first, in one sorted go, before anything is read or the outbox's append
            # lock taken: what is read below cannot change before it is written (on PostgreSQL another
            # writer could add a pupil between the read and a later lock), and no other writer that takes
            # pupil locks and then the append lock (re-evaluation) can wait in a circle with this batch.
            store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=sorted(named))
            # One read of what the batch's documents and BSN pupils already are; the batch's own writes are
            # tracked beside it, so each item meets the register as the items before it left it.
            documents = store.documents_received(
                session, sandbox_id=sandbox_id, document_ids=[document_id for document_id, _ in items]
            )
            held = store.held_pupils(session, sandbox_id=sandbox_id, pupil_numbers=named)
            run: list[tuple[int, str, rules.RegisterEnrolment, BrpFacts, CheckedPeriods]] = []

            def flush() -> None:
                # Written before anything after it in the batch, so the outbox keeps the items' order.
                for outcome_index, document_id, outcome, end in self._register_new_pupils(
                    session, sandbox_id, run, today
                ):
                    if end is not None:
                        follow_ends[outcome.enrolment.pupil_number] = end
                    done.append(rules.BulkItem(outcome_index, document_id, outcome=outcome))
                run.clear()

            for index, ((document_id, item), verdict) in enumerate(zip(items, verdicts, strict=True)):
                if not isinstance(verdict, RegistryError):
                    command, facts, checked = verdict
                    if (
                        facts is not None
                        and document_id not in documents
                        and facts.bsn not in held
                        and command.document_id == document_id
                    ):
                        # The migration's case: a pupil new to ROD, decided in memory and written with the run.
                        run.append((index, document_id, command, facts, checked))
                        documents[document_id] = "accepted"
                        held.add(facts.bsn)
                        continue
                    flush()
                    refusal = _write_refusal(session, sandbox_id, command, facts)
                    if refusal is None:
                        ends: list[dt.date | None] = []
                        outcome = self._register(session, sandbox_id, command, today, facts, checked, ends)
                        if facts is not None and ends:
                            follow_ends[facts.bsn] = ends[0]
                        done.append(rules.BulkItem(index, document_id, outcome=outcome))
                        documents[document_id] = outcome.enrolment.enrolment_id
                        if facts is not None:
                            held.add(facts.bsn)
                        continue
                    verdict = refusal
                flush()
                if verdict.code == grpc.StatusCode.FAILED_PRECONDITION and isinstance(item, rules.RegisterEnrolment):
                    rejection = Rejection(
                        sandbox_id, document_id, institution_code=item.institution_code, pupil_number=item.pupil_number
                    )
                    record_rejection(session, rejection, verdict.violations)
                    documents.setdefault(document_id, store.REJECTED_DOCUMENT)
                done.append(rules.BulkItem(index, document_id, refusal=verdict))
            flush()
            return done

        answer = await commit(work)
        for bsn, end in follow_ends.items():
            if end is not None:
                await self._tell_follow_end(sandbox_id, bsn, end)
        return answer

    def _register_new_pupils(
        self,
        session: Session,
        sandbox_id: str,
        run: Sequence[tuple[int, str, rules.RegisterEnrolment, BrpFacts, CheckedPeriods]],
        today: dt.date,
    ) -> list[tuple[int, str, EnrolmentOutcome, dt.date | None]]:
        """_register for a run of a batch's items whose pupils ROD does not hold: the same rows, decisions and
        feedback, decided in memory (funding.evaluate_pupil on each pupil's one enrolment, as _register decides
        a new pupil) and written per table in one statement. The caller holds the pupils' locks (taken with
        the batch's, before it read that ROD holds none of them). Returns (index, document id, outcome, follow
        end)."""
        if not run:
            return []
        order = store.next_registered_order(session, sandbox_id=sandbox_id)
        rio_ends = store.rio_ends_for(
            session,
            sandbox_id,
            taught={
                (p.location_code, command.institution_code)
                for _, _, command, _, checked in run
                for p in checked.periods
            },
        )
        now = real_now()
        news: list[store.NewPupilEnrolment] = []
        evaluations: list[funding.Evaluation] = []
        feedbacks: list[dict[str, object]] = []
        for offset, (_, document_id, command, facts, checked) in enumerate(run):
            assert checked.sector is not None
            row = store.EnrolmentRow(
                enrolment_id=str(uuid.uuid4()),
                sandbox_id=sandbox_id,
                pupil_number=facts.bsn,
                institution_code=command.institution_code,
                sector=checked.sector.value,
                sequence=command.sequence,
                status=rules.status_after(command.periods[-1].end).value,
                registered_order=order + offset,
                signals_json="[]",
                first_enrolment=command.first_enrolment,
                updated_at=now,
            )
            file = store.file_of_new_pupil(row, checked.periods, facts, rio_ends)
            evaluation = funding.evaluate_pupil(file.facts, file.person, file.previous, today, calendar())[
                row.enrolment_id
            ]
            cause = Cause(Trigger.SCHOOL_MESSAGE, enrolment_id=row.enrolment_id, document_id=document_id)
            entry = FeedbackEntry(
                sandbox_id=sandbox_id,
                institution_code=row.institution_code,
                enrolment_id=row.enrolment_id,
                pupil_number=row.pupil_number,
                outcome=rules.outcome_of(evaluation.signals),
                trigger=cause.trigger_for(row.enrolment_id),
                cause_id=cause.cause_id or cause.document_id,
                document_id=cause.document_id,
                decisions=evaluation.decisions,
                signals=evaluation.signals,
            )
            feedbacks.append(
                {
                    "sandbox_id": entry.sandbox_id,
                    "institution_code": entry.institution_code,
                    "enrolment_id": entry.enrolment_id,
                    "cause_id": entry.cause_id,
                    "trigger": int(entry.trigger),
                    "message": codec.feedback_payload(entry),
                }
            )
            news.append(store.NewPupilEnrolment(row, facts, checked.periods, command.fields, document_id))
            evaluations.append(evaluation)
        store.write_new_pupils(session, news, evaluations)
        lock_log_for_append(session, outbox.FEEDBACK_LOG)
        cursors = store.append_feedbacks(session, feedbacks)
        answers: list[tuple[int, str, EnrolmentOutcome, dt.date | None]] = []
        for (index, document_id, command, _, checked), new, evaluation, cursor in zip(
            run, news, evaluations, cursors, strict=True
        ):
            row = new.enrolment
            assert checked.sector is not None
            last_end = command.periods[-1].end
            # The pupil's one enrolment is all it holds: open unless every period ended (store.enrolment_ends).
            ends = [p.end for p in checked.periods]
            held_end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
            follow = rules.follow_end([(False, held_end)], today) if last_end is not None else None
            state = EnrolmentState(
                enrolment_id=row.enrolment_id,
                pupil_number=row.pupil_number,
                institution_code=row.institution_code,
                periods=tuple(
                    rules.PeriodState(p.begin, p.end, p.location_code, p.course_code, p.year) for p in checked.periods
                ),
                sequence=row.sequence,
                status=EnrolmentStatus(row.status),
                decisions=_as_stated(evaluation.decisions, checked.sector, today),
                updated_at=row.updated_at,
                first_enrolment=row.first_enrolment,
                fields=command.fields,
            )
            answers.append((index, document_id, EnrolmentOutcome(state, evaluation.signals, cursor, ""), follow))
        return answers

    async def _judge_registration(
        self, sandbox_id: str, command: rules.RegisterEnrolment, today: dt.date, peers: RodPeers
    ) -> _Judged:
        """The checks of register_enrolment with the batch's peers and clock: the command (with the BSN BRP
        found for pupil details), the person's facts and the checked periods; FAILED_PRECONDITION listing
        every violation otherwise."""
        if command.details is not None:
            found = await self._bsn_from_brp(sandbox_id, command.details, peers)
            if found is not None:
                command = dataclasses.replace(command, pupil_number=found, pupil_has_bsn=True, details=None)
        # One after the other, not gathered: the batch's follow_many already holds the person's answer, so a
        # task each for the two checks only cost scheduling (10 to 16 % of the bulk path with the item's own
        # task, py-spy, issue 11).
        facts, violations = (
            await self._check_person(sandbox_id, command.pupil_number, command.periods[0].begin, peers)
            if command.pupil_has_bsn
            else await _no_person()
        )
        checked = await self._check_periods(sandbox_id, command.institution_code, command.periods, peers)
        violations.extend(checked.violations)
        violations.extend(
            rules.sector_field_violations(
                checked.sector, first_enrolment=command.first_enrolment, fields=command.fields
            )
        )
        birth_date = facts.birth_date if facts is not None else _stated_birth_date(command.details)
        violations.extend(
            rules.period_violations(command.periods, sector=checked.sector, birth_date=birth_date, today=today)
        )
        if violations:
            raise failed_precondition(violations)
        return command, facts, checked

    def _register(
        self,
        session: Session,
        sandbox_id: str,
        command: rules.RegisterEnrolment,
        today: dt.date,
        facts: BrpFacts | None,
        checked: CheckedPeriods,
        follow_ends: list[dt.date | None],
    ) -> EnrolmentOutcome:
        number = command.pupil_number
        store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[number] if number else [])
        if store.document_seen(session, sandbox_id=sandbox_id, document_id=command.document_id):
            raise rules.duplicate_document(command.document_id)
        assigned = ""
        new_pupil = False
        if facts is not None:
            new_pupil = store.add_or_update_person(session, sandbox_id=sandbox_id, facts=facts)
        elif command.details is not None:
            number, new = identify_without_bsn(session, sandbox_id=sandbox_id, details=command.details)
            assigned = number if new else ""
        elif store.find_pupil(session, sandbox_id=sandbox_id, pupil_number=number) is None:
            raise failed_precondition(
                [
                    FieldViolation(
                        "pupil.onderwijsnummer",
                        "ROD never assigned this number",
                        rules.ONDERWIJSNUMMER_UNKNOWN,
                        (("onderwijsnummer", number),),
                    )
                ]
            )
        assert checked.sector is not None
        enrolment = store.add_enrolment(
            session,
            enrolment_id=str(uuid.uuid4()),
            sandbox_id=sandbox_id,
            pupil_number=number,
            institution_code=command.institution_code,
            sector=checked.sector,
            sequence=command.sequence,
            status=rules.status_after(command.periods[-1].end),
            first_enrolment=command.first_enrolment,
        )
        store.replace_periods(session, enrolment=enrolment, periods=checked.periods)
        store.store_sector_fields(session, enrolment, command.fields)
        store.record_document(
            session, sandbox_id=sandbox_id, document_id=command.document_id, enrolment_id=enrolment.enrolment_id
        )
        cause = Cause(Trigger.SCHOOL_MESSAGE, enrolment_id=enrolment.enrolment_id, document_id=command.document_id)
        if new_pupil:
            # A pupil new to ROD has only this enrolment: decided from what was just written, not read back.
            file = store.new_pupil_file(session, enrolment=enrolment, periods=checked.periods, facts=facts)
            caused = _reevaluate(session, file, today, cause)
        else:
            caused = reevaluate_pupil(session, sandbox_id=sandbox_id, pupil_number=number, today=today, cause=cause)
        if command.periods[-1].end is not None:
            # Only an enrolment registered as ended can leave the pupil without an open one (saves the read).
            held = store.enrolment_ends(session, sandbox_id=sandbox_id, pupil_number=number)
            follow_ends[:] = [rules.follow_end(held, today)]
        assert caused.evaluation is not None
        # Stated from what this transaction wrote: nothing is read back.
        state = EnrolmentState(
            enrolment_id=enrolment.enrolment_id,
            pupil_number=number,
            institution_code=enrolment.institution_code,
            periods=tuple(
                rules.PeriodState(p.begin, p.end, p.location_code, p.course_code, p.year) for p in checked.periods
            ),
            sequence=enrolment.sequence,
            status=EnrolmentStatus(enrolment.status),
            decisions=_as_stated(caused.evaluation.decisions, checked.sector, today),
            updated_at=enrolment.updated_at,
            first_enrolment=enrolment.first_enrolment,
            fields=command.fields,
        )
        return EnrolmentOutcome(state, caused.evaluation.signals, caused.cursor, assigned)

    async def change_enrolment(
        self, caller: Caller, command: rules.ChangeEnrolment, commit: Commit[EnrolmentOutcome, AnswerT]
    ) -> AnswerT:
        async def check_with_rio(sandbox_id: str) -> Change:
            current, pupil = await self._db.run(lambda s: _own_enrolment_and_pupil(s, caller, sandbox_id, command))
            checked, today = await asyncio.gather(
                self._check_periods(sandbox_id, current.institution_code, command.periods),
                self.peers.clock.today(sandbox_id),
            )
            violations = Violations(checked.violations)
            violations.extend(
                rules.sector_field_violations(
                    checked.sector, first_enrolment=command.first_enrolment, fields=command.fields
                )
            )
            birth_date = pupil.birth_date if pupil is not None else None
            violations.extend(
                rules.period_violations(command.periods, sector=checked.sector, birth_date=birth_date, today=today)
            )
            if violations:
                raise failed_precondition(violations)

            def change(session: Session, enrolment: RodEnrolment) -> None:
                rules.require_higher_sequence(enrolment.sequence, command.sequence)
                store.replace_periods(session, enrolment=enrolment, periods=checked.periods)
                status = rules.status_after(command.periods[-1].end)
                store.save_enrolment(
                    session,
                    enrolment,
                    sequence=command.sequence,
                    status=status,
                    first_enrolment=command.first_enrolment,
                )
                store.store_sector_fields(session, enrolment, command.fields)
                # A new state that is open again drops the reason it once ended for.
                if status is EnrolmentStatus.ACTIVE:
                    store.store_end_reason(session, enrolment, "")

            return change

        return await self._update(caller, command, commit, check_with_rio)

    async def end_enrolment(
        self, caller: Caller, command: rules.EndEnrolment, commit: Commit[EnrolmentOutcome, AnswerT]
    ) -> AnswerT:
        def finish(session: Session, enrolment: RodEnrolment) -> None:
            reason_violations = rules.end_reason_violations(funding.Sector(enrolment.sector), command.end_reason)
            if reason_violations:
                raise failed_precondition(reason_violations)
            rules.require_higher_sequence(enrolment.sequence, command.sequence)
            last = store.periods_of(session, enrolment.enrolment_id)[-1]
            rules.require_end_after_begin(command.end, last.begin_date)
            store.end_last_period(session, last, end=command.end)
            store.save_enrolment(session, enrolment, sequence=command.sequence, status=EnrolmentStatus.ENDED)
            store.store_end_reason(session, enrolment, command.end_reason)

        return await self._update(caller, command, commit, _at_once(finish))

    async def delete_enrolment(
        self, caller: Caller, command: rules.DeleteEnrolment, commit: Commit[EnrolmentOutcome, AnswerT]
    ) -> AnswerT:
        def remove(session: Session, enrolment: RodEnrolment) -> None:
            store.save_enrolment(session, enrolment, sequence=enrolment.sequence, status=EnrolmentStatus.DELETED)

        return await self._update(caller, command, commit, _at_once(remove))

    async def _update(
        self,
        caller: Caller,
        message: rules.EnrolmentMessage,
        commit: Commit[EnrolmentOutcome, AnswerT],
        prepare: Callable[[str], Awaitable[Change]],
    ) -> AnswerT:
        """Change, End and Delete: prepare the change (asking peers), then refuse duplicates, apply, re-evaluate."""
        sandbox_id = caller.require_sandbox()
        answered = await commit.answered()
        if answered is not None:
            return answered
        document_id, enrolment_id = message.document_id, message.enrolment_id
        async with self._rejecting(Rejection(sandbox_id, document_id, enrolment_id=enrolment_id)):
            change = await prepare(sandbox_id)
            today = await self.peers.clock.today(sandbox_id)
            # (BSN, new end) of the follow indication when this message moved it: the last enrolment ended or
            # was deleted, or an ended one was opened again.
            follow: list[tuple[str, dt.date | None]] = []

            def update(session: Session) -> EnrolmentOutcome:
                enrolment = _own_enrolment(session, caller, sandbox_id, enrolment_id)
                # Re-read under the pupil's lock: a concurrent change of the enrolment must see this one's sequence.
                store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[enrolment.pupil_number])
                session.refresh(enrolment)
                rules.require_not_deleted(EnrolmentStatus(enrolment.status))
                if store.document_seen(session, sandbox_id=sandbox_id, document_id=document_id):
                    raise rules.duplicate_document(document_id)
                number = enrolment.pupil_number
                ends_before = rules.follow_end(
                    store.enrolment_ends(session, sandbox_id=sandbox_id, pupil_number=number), today
                )
                change(session, enrolment)
                session.flush()
                ends_after = rules.follow_end(
                    store.enrolment_ends(session, sandbox_id=sandbox_id, pupil_number=number), today
                )
                pupil = store.find_pupil(session, sandbox_id=sandbox_id, pupil_number=number)
                if ends_after != ends_before and pupil is not None and pupil.has_bsn:
                    follow[:] = [(number, ends_after)]
                store.record_document(
                    session, sandbox_id=sandbox_id, document_id=document_id, enrolment_id=enrolment_id
                )
                cause = Cause(Trigger.SCHOOL_MESSAGE, enrolment_id=enrolment_id, document_id=document_id)
                caused = reevaluate_pupil(
                    session, sandbox_id=sandbox_id, pupil_number=enrolment.pupil_number, today=today, cause=cause
                )
                return _outcome(session, enrolment, today, caused)

            answer = await commit(update)
            for bsn, end in follow:
                await self._tell_follow_end(sandbox_id, bsn, end)
            return answer

    async def _tell_follow_end(self, sandbox_id: str, bsn: str, end: dt.date | None) -> None:
        """Tells BRP the new end of ROD's follow indication on a pupil, after the enrolment change committed.

        After the commit, so a refused or rolled-back message never ends an indication. Should BRP not answer,
        the indication stays as it was: ROD keeps following the pupil as before, which only brings changes
        about a pupil it no longer needs (logged, so the gap is visible).
        """
        try:
            await self.peers.brp.follow(sandbox_id, bsn, end)
        except grpc.aio.AioRpcError as error:
            log.warning("could not set the end of the follow indication on a pupil: %s", error.code())

    async def get_enrolment(self, caller: Caller, enrolment_id: str) -> EnrolmentState:
        sandbox_id = caller.require_sandbox()
        today = await self.peers.clock.today(sandbox_id)
        return await self._db.run(
            lambda s: enrolment_state(s, _own_enrolment(s, caller, sandbox_id, enrolment_id), today)
        )

    async def list_enrolments(self, caller: Caller, query: rules.ListEnrolments) -> list[EnrolmentState]:
        """A page of enrolments of a school or a pupil, plus one more when there is a next page."""
        sandbox_id = caller.require_sandbox()
        institution = query.institution_code or (caller.institution_code or "")
        if not institution and not query.pupil_number:
            raise invalid_argument(
                [FieldViolation("institution_code", "give institution_code or pupil", rules.REQUIRED)]
            )
        if institution:
            caller.require_institution(institution)
        today = await self.peers.clock.today(sandbox_id)

        def page(session: Session) -> list[EnrolmentState]:
            rows = store.list_enrolments(
                session,
                sandbox_id=sandbox_id,
                institution_code=institution,
                pupil_number=query.pupil_number,
                active_on=query.active_on,
                after_id=query.after_id,
                limit=query.page_size + 1,
            )
            return [enrolment_state(session, row, today) for row in rows]

        return await self._db.run(page)

    # --- feedback ---

    @staticmethod
    def _subscriber_key(caller: Caller, subscriber: str) -> str:
        if caller.institution_code is not None:
            try:
                validate_institution_code(caller.institution_code)
            except InvalidIdentifierError as error:
                raise invalid_argument([FieldViolation(INSTITUTION_CODE, str(error), rules.INVALID)]) from error
        return rules.subscriber_key(caller.institution_code, subscriber)

    async def follow_feedback(self, caller: Caller, command: rules.FollowFeedback) -> AsyncIterator[OutboxEntry]:
        """Feedback after a cursor (or the subscriber's acknowledged one), then each new one as it commits."""
        schools = list(command.institution_codes)
        for code in schools:
            caller.require_institution(code)
        if not schools and caller.institution_code is not None:
            schools = [caller.institution_code]
        sandbox_id = caller.sandbox_id
        if sandbox_id is not None:
            for index, code in enumerate(command.institution_codes):
                await self._school_sector(sandbox_id, code, f"institution_codes[{index}]")
            if caller.institution_code is not None:
                await self._school_sector(sandbox_id, caller.institution_code, INSTITUTION_CODE)
        after = command.after_cursor
        if command.resume_from_acknowledged:
            key = self._subscriber_key(caller, command.subscriber)
            scope = caller.require_sandbox()
            after = await self._db.run(lambda s: store.acknowledged(s, sandbox_id=scope, subscriber=key))

        async def read_after(cursor: int) -> list[OutboxEntry]:
            return await self._db.run(
                lambda s: store.feedback_after(s, sandbox_id=sandbox_id, institution_codes=schools, after=cursor)
            )

        async for entry in self.fanout.follow(sandbox_id, schools, after, read_after):
            yield entry

    async def acknowledge_feedback(
        self, caller: Caller, command: rules.AcknowledgeFeedback, commit: Commit[int, AnswerT]
    ) -> AnswerT:
        sandbox_id = caller.require_sandbox()
        key = self._subscriber_key(caller, command.subscriber)

        def acknowledge(session: Session) -> int:
            rules.require_acknowledgeable(command.cursor, store.newest_cursor(session, sandbox_id=sandbox_id))
            return store.acknowledge(session, sandbox_id=sandbox_id, subscriber=key, cursor=command.cursor)

        # Without a key of its own, the subscriber's lock lets only one writer create its row.
        return await commit(acknowledge, locks=[f"rod_subscriber:{sandbox_id}:{key}"])

    async def list_feedback(self, caller: Caller, query: rules.ListFeedback) -> list[OutboxEntry]:
        """A page of feedback found by cause, trigger, school or enrolment, plus one more when there is a next page."""
        sandbox_id = caller.require_sandbox()
        institution = query.institution_code
        if institution:
            caller.require_institution(institution)
        elif caller.institution_code is not None:
            institution = caller.institution_code
        return await self._db.run(
            lambda s: store.list_feedback(
                s,
                sandbox_id=sandbox_id,
                cause_id=query.cause_id,
                trigger=query.trigger,
                institution_code=institution,
                enrolment_id=query.enrolment_id,
                after=query.after_cursor,
                limit=query.page_size + 1,
            )
        )

    async def funding_count(self, caller: Caller, institution_code: str, count_date: dt.date) -> rules.FundingCount:
        """The school's count on a count date of its sector; any other date is refused (SBX-NOT-A-COUNT-DATE)."""
        sandbox_id = caller.require_sandbox()
        caller.require_institution(institution_code)
        sector = await self._school_sector(sandbox_id, institution_code, "institution_code")
        dates = calendar()
        rules.require_count_date(sector, count_date, dates.is_count_date(sector, count_date))
        today = await self.peers.clock.today(sandbox_id)
        ids = await self._db.run(
            lambda s: store.funded_enrolment_ids(
                s, sandbox_id=sandbox_id, institution_code=institution_code, count_date=count_date
            )
        )
        final = dates.is_final(sector, count_date, today)
        return rules.FundingCount(institution_code, count_date, final, tuple(ids))

    async def _school_sector(self, sandbox_id: str, institution_code: str, field: str) -> funding.Sector:
        """The school's sector: from its enrolments in ROD, else from RIO; a school neither knows is refused."""
        sector = await self._db.run(
            lambda s: store.school_sector(s, sandbox_id=sandbox_id, institution_code=institution_code)
        )
        if sector is None:
            sector = await self.peers.rio.school_sector(sandbox_id, institution_code)
        if sector is None:
            raise rules.unknown_institution(institution_code, field)
        return sector

    # --- the sandbox ---

    async def purge(self, caller: Caller, commit: Commit[int, AnswerT]) -> AnswerT:
        """Internal (SandboxAdmin.ResetSandbox): deletes every ROD record of the sandbox."""
        caller.require_internal()
        if not caller.is_sandbox_admin:
            raise permission_denied("only the sandbox admin may purge")
        sandbox_id = caller.require_sandbox()
        copy = self._person_copy
        if copy is None:
            return await commit(lambda s: store.purge(s, sandbox_id=sandbox_id))
        # BRP's persons and ROD's follow indications go too: a person kept would be answered without registering
        # the indication again. BRP is purged after ROD, so the sandbox's clock, told last, drops them once more.
        copy.forget(sandbox_id)
        try:
            return await commit(lambda s: store.purge(s, sandbox_id=sandbox_id))
        finally:
            copy.forget(sandbox_id)


def _write_refusal(
    session: Session, sandbox_id: str, command: rules.RegisterEnrolment, facts: BrpFacts | None
) -> RegistryError | None:
    """What _register would refuse an item for in the write transaction (a document id already received, an
    onderwijsnummer ROD never assigned), asked first so a refused item of a batch writes nothing."""
    if store.document_seen(session, sandbox_id=sandbox_id, document_id=command.document_id):
        return rules.duplicate_document(command.document_id)
    number = command.pupil_number
    if (
        facts is None
        and command.details is None
        and store.find_pupil(session, sandbox_id=sandbox_id, pupil_number=number) is None
    ):
        return failed_precondition(
            [
                FieldViolation(
                    "pupil.onderwijsnummer",
                    "ROD never assigned this number",
                    rules.ONDERWIJSNUMMER_UNKNOWN,
                    (("onderwijsnummer", number),),
                )
            ]
        )
    return None


def _stated_birth_date(details: PupilDetails | None) -> dt.date | None:
    return details.birth_date if details is not None else None


def _own_enrolment_and_pupil(
    session: Session, caller: Caller, sandbox_id: str, message: rules.EnrolmentMessage
) -> tuple[RodEnrolment, RodPupil | None]:
    enrolment = _own_enrolment(session, caller, sandbox_id, message.enrolment_id)
    return enrolment, store.find_pupil(session, sandbox_id=sandbox_id, pupil_number=enrolment.pupil_number)


async def _not_asked() -> rules.OfferingCheck | None:
    return None


_Answer = TypeVar("_Answer")


async def _all(calls: list[Coroutine[object, object, _Answer]]) -> list[_Answer]:
    """The answers in order; a lone call (a period, or none) is awaited in place, since gather wraps every
    call in a task of its own even when one or none runs."""
    if len(calls) <= 1:
        return [await call for call in calls]
    return list(await asyncio.gather(*calls))


async def _no_person() -> tuple[BrpFacts | None, Violations]:
    return None, Violations()


def _at_once(change: Change) -> Callable[[str], Awaitable[Change]]:
    """A change that needs nothing from the peers."""

    async def prepared(_sandbox_id: str) -> Change:
        return change

    return prepared
