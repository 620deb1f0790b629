"""BRP sync's protobuf codec: requests decoded and checked (typed field violations), domain answers encoded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from services._gen.registry.v1 import brp_pb2, common_pb2
from services.brp_sync import scenarios
from services.brp_sync.rules import (
    AppliedChange,
    FollowIndication,
    Gebeurtenis,
    HeldMessage,
    MaritalStatus,
    MessageResult,
    Outcome,
    PersonState,
    RejectedMessage,
)
from services.brp_sync.service import PersonQuery, ScenarioView
from services.common import paging
from services.common.dates import from_proto_date, to_proto_date, to_timestamp
from services.common.errors import FieldViolation, invalid_argument
from services.common.identifiers import InvalidIdentifierError, validate_bsn
from services.common.paging import Page, cut, page_of
from services.common.seeding import PROFILES, check_national_pupils

EVENT_TYPES = {
    Gebeurtenis.GEBOORTE: brp_pb2.PERSON_EVENT_TYPE_BIRTH,
    Gebeurtenis.IMMIGRATIE: brp_pb2.PERSON_EVENT_TYPE_IMMIGRATION,
    Gebeurtenis.VERHUISD_BINNEN: brp_pb2.PERSON_EVENT_TYPE_RELOCATION_WITHIN_MUNICIPALITY,
    Gebeurtenis.VERHUISD_BUITEN: brp_pb2.PERSON_EVENT_TYPE_RELOCATION_TO_OTHER_MUNICIPALITY,
    Gebeurtenis.EMIGRATIE: brp_pb2.PERSON_EVENT_TYPE_EMIGRATION,
    Gebeurtenis.OVERLEDEN: brp_pb2.PERSON_EVENT_TYPE_DEATH,
    Gebeurtenis.VERBINTENIS_AANGEGAAN: brp_pb2.PERSON_EVENT_TYPE_MARRIAGE,
    Gebeurtenis.VERBINTENIS_ONTBONDEN: brp_pb2.PERSON_EVENT_TYPE_DIVORCE,
    Gebeurtenis.NAAM_GEWIJZIGD: brp_pb2.PERSON_EVENT_TYPE_NAME_CHANGE,
    Gebeurtenis.GECORRIGEERD: brp_pb2.PERSON_EVENT_TYPE_CORRECTION,
    Gebeurtenis.OVERLIJDEN_GECORRIGEERD: brp_pb2.PERSON_EVENT_TYPE_DEATH_CORRECTED,
}
SEXES = {"M": brp_pb2.SEX_MALE, "V": brp_pb2.SEX_FEMALE, "O": brp_pb2.SEX_UNKNOWN}
MARITAL_STATUSES = {
    MaritalStatus.ONGEHUWD: brp_pb2.MARITAL_STATUS_UNMARRIED,
    MaritalStatus.GEHUWD: brp_pb2.MARITAL_STATUS_MARRIED,
    MaritalStatus.PARTNERSCHAP: brp_pb2.MARITAL_STATUS_REGISTERED_PARTNERSHIP,
    MaritalStatus.GESCHEIDEN: brp_pb2.MARITAL_STATUS_DIVORCED,
    MaritalStatus.WEDUWE: brp_pb2.MARITAL_STATUS_WIDOWED,
}
OUTCOMES = {
    Outcome.APPLIED: brp_pb2.MESSAGE_OUTCOME_APPLIED,
    Outcome.DUPLICATE: brp_pb2.MESSAGE_OUTCOME_DUPLICATE,
    Outcome.HELD: brp_pb2.MESSAGE_OUTCOME_HELD,
    Outcome.REJECTED: brp_pb2.MESSAGE_OUTCOME_REJECTED,
}
MAX_SUBSCRIBER_LENGTH = 100


# ---- requests ----


def bsn(value: str, field_name: str = "bsn") -> str:
    try:
        return validate_bsn(value)
    except InvalidIdentifierError as error:
        raise invalid_argument([FieldViolation(field_name, str(error), "SBX-INVALID-BSN")]) from None


def person_query(request: brp_pb2.ListPersonsRequest) -> tuple[PersonQuery, Page]:
    page = page_of(request.page)
    dates = {}
    for name in ("born_on_or_after", "born_on_or_before"):
        if request.HasField(name):
            try:
                dates[name] = from_proto_date(getattr(request, name))
            except ValueError as error:
                raise invalid_argument([FieldViolation(name, str(error), "SBX-INVALID-DATE")]) from None
    # The address filter of ROD's search for a pupil's BSN; stored postcodes have no spaces and are upper case.
    postcode = request.postcode.replace(" ", "").upper()
    return (
        PersonQuery(only_resident=request.only_resident, postcode=postcode, house_number=request.house_number, **dates),
        page,
    )


def numbered_page(request: brp_pb2.ListRejectedMessagesRequest | brp_pb2.ListHeldMessagesRequest) -> Page:
    """The page of a list kept in arrival order (rejected and held messages): tokens carry a row number."""
    return page_of(request.page, numeric=True)


def follow_indication(request: brp_pb2.SetFollowIndicationRequest) -> tuple[str, str, dt.date | None]:
    """(subscriber, bsn, end date) of a SetFollowIndication request."""
    checked_bsn = bsn(request.bsn)
    subscriber = request.subscriber.strip()
    if not subscriber or len(subscriber) > MAX_SUBSCRIBER_LENGTH:
        raise invalid_argument(
            [FieldViolation("subscriber", f"a name of 1 to {MAX_SUBSCRIBER_LENGTH} characters", "SBX-REQUIRED")]
        )
    end_date = None
    if request.HasField("end_date"):
        try:
            end_date = from_proto_date(request.end_date)
        except ValueError as error:
            raise invalid_argument([FieldViolation("end_date", str(error), "SBX-INVALID-DATE")]) from None
    return subscriber, checked_bsn, end_date


# SetFollowIndications: as many persons as one bulk registration of ROD holds (RodService.RegisterEnrolments).
MAX_FOLLOWS = 1_000


def follow_indications(request: brp_pb2.SetFollowIndicationsRequest) -> tuple[str, list[str]]:
    """(subscriber, BSNs in request order) of a SetFollowIndications request; any bad BSN refuses it whole."""
    subscriber = request.subscriber.strip()
    if not subscriber or len(subscriber) > MAX_SUBSCRIBER_LENGTH:
        raise invalid_argument(
            [FieldViolation("subscriber", f"a name of 1 to {MAX_SUBSCRIBER_LENGTH} characters", "SBX-REQUIRED")]
        )
    if len(request.bsns) > MAX_FOLLOWS:
        raise invalid_argument(
            [FieldViolation("bsns", f"{len(request.bsns)} BSNs; at most {MAX_FOLLOWS} a call", "SBX-BATCH-TOO-LARGE")]
        )
    return subscriber, [bsn(value, f"bsns[{index}]") for index, value in enumerate(request.bsns)]


def follows_response(
    subscriber: str, bsns: Sequence[str], persons: dict[str, PersonState | None]
) -> brp_pb2.SetFollowIndicationsResponse:
    return brp_pb2.SetFollowIndicationsResponse(
        results=[follow_response(FollowIndication(subscriber, b, following=True), persons[b]) for b in bsns]
    )


def follow_response(
    indication: FollowIndication, person: PersonState | None = None
) -> brp_pb2.SetFollowIndicationResponse:
    message = brp_pb2.FollowIndication(
        subscriber=indication.subscriber, bsn=indication.bsn, following=indication.following
    )
    if indication.end_date is not None:
        message.end_date.CopyFrom(to_proto_date(indication.end_date))
    answer = brp_pb2.SetFollowIndicationResponse(indication=message)
    if person is not None:
        answer.person.CopyFrom(person_message(person))
    return answer


def stream_request(request: brp_pb2.StreamPersonChangesRequest) -> tuple[int, str]:
    """(after_cursor, subscriber) of a StreamPersonChanges request."""
    if (bad_cursor := paging.cursor_violation(request.after_cursor, "after_cursor")) is not None:
        raise invalid_argument([bad_cursor])
    return request.after_cursor, request.subscriber.strip()


def seed_size(request: common_pb2.SeedRegisterRequest) -> str:
    size = request.size or "small"
    if size not in PROFILES:
        raise invalid_argument([FieldViolation("size", f"one of {', '.join(PROFILES)}", "SBX-INVALID-ENUM")])
    return size


def national_pupils(request: common_pb2.SeedRegisterRequest) -> int:
    """How many national pupils to seed; refused without synthetic_bsns (the test range cannot hold them)."""
    return check_national_pupils(request.national_pupils, synthetic_bsns=request.synthetic_bsns)


# ---- answers ----


def person_message(state: PersonState) -> brp_pb2.Person:
    person = brp_pb2.Person(
        bsn=state.bsn,
        given_names=state.given_names,
        surname_prefix=state.surname_prefix,
        surname=state.surname,
        birth_date=to_proto_date(state.birth_date),
        sex=SEXES.get(state.sex, brp_pb2.SEX_UNSPECIFIED),
        marital_status=MARITAL_STATUSES[state.marital_status],
        emigration_country_code=state.emigration_country_code,
        last_sequence=state.last_sequence,
        a_nummer=state.a_nummer,
        versienummer=state.versienummer,
    )
    if (a := state.address) is not None:
        person.address.CopyFrom(
            common_pb2.Address(
                street=a.street,
                house_number=a.house_number,
                house_number_addition=a.house_number_addition,
                postcode=a.postcode,
                city=a.city,
                municipality_code=a.municipality_code,
                country_code="NL",
            )
        )
    if state.death_date is not None:
        person.death_date.CopyFrom(to_proto_date(state.death_date))
    if state.emigration_date is not None:
        person.emigration_date.CopyFrom(to_proto_date(state.emigration_date))
    for stay in state.abroad:
        period = person.residence_abroad.add(country_code=stay.country_code, start_date=to_proto_date(stay.begin))
        if stay.end is not None:
            period.end_date.CopyFrom(to_proto_date(stay.end))
    person.corrections.extend(
        brp_pb2.CorrectedValue(
            element=c.element,
            previous_value=c.previous,
            corrected_value=c.corrected,
            correction_date=to_proto_date(c.corrected_on),
            message_id=c.message_id,
        )
        for c in state.corrections
    )
    return person


def person_with_history(found: tuple[PersonState, Sequence[AppliedChange]]) -> brp_pb2.Person:
    state, changes = found
    person = person_message(state)
    person.history.extend(change_message(c) for c in changes)
    return person


def change_message(change: AppliedChange) -> brp_pb2.PersonChange:
    return brp_pb2.PersonChange(
        cursor=change.cursor,
        sandbox_id=change.sandbox_id,
        bsn=change.bsn,
        message_id=change.message_id,
        sequence=change.sequence,
        event_type=EVENT_TYPES[change.gebeurtenis],
        effective_date=to_proto_date(change.effective_date),
        applied_at=to_timestamp(change.applied_at),
        person=person_message(change.person),
    )


def persons_page(rows: Sequence[PersonState], page: Page) -> brp_pb2.ListPersonsResponse:
    persons, next_page = cut(rows, page, lambda p: p.bsn)
    return brp_pb2.ListPersonsResponse(persons=[person_message(p) for p in persons], page=next_page)


def submit_response(results: Sequence[MessageResult]) -> brp_pb2.SubmitChangesResponse:
    return brp_pb2.SubmitChangesResponse(
        results=[
            brp_pb2.MessageResult(
                message_id=r.message_id,
                index=r.index,
                outcome=OUTCOMES[r.outcome],
                reason_code=r.reason_code,
                reason=r.reason,
                released_message_ids=r.released,
            )
            for r in results
        ]
    )


def rejected_page(rows: Sequence[RejectedMessage], page: Page) -> brp_pb2.ListRejectedMessagesResponse:
    messages, next_page = cut(rows, page, lambda m: m.id)
    return brp_pb2.ListRejectedMessagesResponse(
        messages=[
            brp_pb2.RejectedMessage(
                message_id=m.message_id,
                reason_code=m.reason_code,
                reason=m.reason,
                received_at=to_timestamp(m.received_at),
                xml=m.xml,
            )
            for m in messages
        ],
        page=next_page,
    )


def held_page(rows: Sequence[HeldMessage], page: Page) -> brp_pb2.ListHeldMessagesResponse:
    messages, next_page = cut(rows, page, lambda m: m.id)
    return brp_pb2.ListHeldMessagesResponse(
        messages=[
            brp_pb2.HeldMessage(
                message_id=m.message_id,
                bsn=m.bsn,
                sequence=m.sequence,
                waiting_for_sequence=m.waiting_for_sequence,
                received_at=to_timestamp(m.received_at),
                gap_overdue=m.gap_overdue,
            )
            for m in messages
        ],
        page=next_page,
    )


def scenarios_message(view: ScenarioView) -> brp_pb2.ListScenarioPersonsResponse:
    """The scenario table with this sandbox's dates (none before its seed) and what became of each message."""
    answer = brp_pb2.ListScenarioPersonsResponse()
    if view.seed_date is not None:
        answer.seed_date.CopyFrom(to_proto_date(view.seed_date))
    stored = {(s.message.person_key, s.message.step): s for s in view.scheduled}
    for person in view.persons:
        # Before a seed there is no birth date: the person is built on any day and the date left out.
        details = person_message(scenarios.person_state(person, view.seed_date or dt.date(2000, 1, 1)))
        if view.seed_date is None:
            details.ClearField("birth_date")
        details.ClearField("a_nummer")
        item = answer.persons.add(
            key=person.key,
            title=person.title,
            bsn=person.bsn,
            details=details,
            expected_feedback=person.feedback,
            enrolled_elsewhere=person.enrolled_elsewhere,
        )
        for step, event in enumerate(person.events, start=1):
            message = item.scheduled_messages.add(event_type=EVENT_TYPES[event.event], days_after_seed=event.days)
            if view.seed_date is not None:
                message.effective_date.CopyFrom(to_proto_date(view.seed_date + dt.timedelta(days=event.days)))
            sent = stored.get((person.key, step))
            if sent is None:
                continue
            message.message_id = sent.message_id
            if sent.sent_at is not None:
                message.sent_at.CopyFrom(to_timestamp(sent.sent_at))
                message.outcome = OUTCOMES[Outcome(sent.outcome)]
                message.reason_code = sent.reason_code
    return answer


def seed_response(created: dict[str, int]) -> common_pb2.SeedRegisterResponse:
    return common_pb2.SeedRegisterResponse(created=created)


def purge_response(deleted: int) -> common_pb2.PurgeSandboxResponse:
    return common_pb2.PurgeSandboxResponse(deleted=deleted)
