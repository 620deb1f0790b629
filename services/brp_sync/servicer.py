"""BrpService over gRPC: decode the request, call ingestion and the rules, encode the answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence

import grpc
from sqlalchemy import delete, func, insert
from sqlmodel import Session, col, select

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2
from services.brp_sync import ingestion, seeding
from services.brp_sync.ingestion import Outcome
from services.brp_sync.messages import Gebeurtenis
from services.brp_sync.parsing import RefusedDocumentError, parse_document
from services.brp_sync.rules import MaritalStatus, PersonState
from services.brp_sync.tables import (
    BrpAppliedChange,
    BrpFollowIndication,
    BrpHeldMessage,
    BrpIdempotentResponse,
    BrpPerson,
    BrpRejectedMessage,
)
from services.common import idempotency
from services.common.caller import CallerResolver
from services.common.clock import real_now
from services.common.database import Database
from services.common.dates import from_proto_date, to_proto_date, to_timestamp
from services.common.errors import FieldViolation, invalid_argument, not_found, permission_denied
from services.common.identifiers import InvalidIdentifierError, validate_bsn
from services.common.peers import Peers
from services.common.sandbox_client import SandboxClient
from services.common.seeding import PROFILES
from services.common.wakeup import LogWakeup, follow_log

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Changes one stream read takes from the log at a time.
STREAM_BATCH = 500
# A held message older than this is reported as an overdue gap (REGISTRY_BRP_GAP_TIMEOUT_SECONDS overrides it).
DEFAULT_GAP_TIMEOUT = dt.timedelta(hours=1)

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
    return person


def change_message(row: BrpAppliedChange) -> brp_pb2.PersonChange:
    return brp_pb2.PersonChange(
        cursor=row.cursor or 0,
        sandbox_id=row.sandbox_id,
        bsn=row.bsn,
        message_id=row.message_id,
        sequence=row.sequence,
        event_type=EVENT_TYPES[Gebeurtenis(row.event_type)],
        effective_date=to_proto_date(row.effective_date),
        applied_at=to_timestamp(row.applied_at),
        person=person_message(ingestion.person_from_json(row.person_after)),
    )


def _bsn(value: str, field_name: str = "bsn") -> str:
    try:
        return validate_bsn(value)
    except InvalidIdentifierError as error:
        raise invalid_argument([FieldViolation(field_name, str(error), "INVALID_BSN")]) from None


def _page(page: common_pb2.PageRequest) -> tuple[int, str]:
    if page.page_size < 0:
        raise invalid_argument([FieldViolation("page.page_size", "must not be negative", "INVALID_PAGE")])
    size = min(page.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return size, page.page_token


def _int_token(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit():
        raise invalid_argument([FieldViolation("page.page_token", "not a token this method gave out", "INVALID_PAGE")])
    return int(token)


class BrpServiceServicer(brp_pb2_grpc.BrpServiceServicer):
    def __init__(
        self,
        database: Database,
        peers: Peers,
        internal_token: str,
        *,
        wakeup: LogWakeup | None = None,
        gap_timeout: dt.timedelta = DEFAULT_GAP_TIMEOUT,
    ) -> None:
        self._db = database
        self._peers = peers
        self.sandboxes = SandboxClient(lambda: peers.channel("sandbox"), internal_token)
        self.callers = CallerResolver(self.sandboxes.sandbox_id_for_key, internal_token)
        self.wakeup = wakeup or LogWakeup()
        self.gap_timeout = gap_timeout

    # ---- persons ----

    async def GetPerson(self, request: brp_pb2.GetPersonRequest, context: grpc.aio.ServicerContext) -> brp_pb2.Person:
        sandbox_id = (await self.callers.resolve(context)).require_sandbox()
        bsn = _bsn(request.bsn)

        def read(session: Session) -> brp_pb2.Person | None:
            row = session.get(BrpPerson, (sandbox_id, bsn))
            if row is None:
                return None
            person = person_message(ingestion.state_of(row))
            if request.include_history:
                changes = session.exec(
                    select(BrpAppliedChange)
                    .where(BrpAppliedChange.sandbox_id == sandbox_id, BrpAppliedChange.bsn == bsn)
                    .order_by(col(BrpAppliedChange.cursor))
                ).all()
                person.history.extend(change_message(c) for c in changes)
            return person

        person = await self._db.run(read)
        if person is None:
            raise not_found(f"person with BSN {bsn}", "bsn", "UNKNOWN_PERSON")
        return person

    async def ListPersons(
        self, request: brp_pb2.ListPersonsRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.ListPersonsResponse:
        sandbox_id = (await self.callers.resolve(context)).require_sandbox()
        size, token = _page(request.page)
        if token and not (len(token) == 9 and token.isdigit()):
            raise invalid_argument(
                [FieldViolation("page.page_token", "not a token this method gave out", "INVALID_PAGE")]
            )
        try:
            after = from_proto_date(request.born_on_or_after) if request.HasField("born_on_or_after") else None
            before = from_proto_date(request.born_on_or_before) if request.HasField("born_on_or_before") else None
        except ValueError as error:
            raise invalid_argument([FieldViolation("born_on_or_after", str(error), "INVALID_DATE")]) from None

        def read(session: Session) -> brp_pb2.ListPersonsResponse:
            query = select(BrpPerson).where(BrpPerson.sandbox_id == sandbox_id, col(BrpPerson.bsn) > token)
            if after is not None:
                query = query.where(col(BrpPerson.birth_date) >= after)
            if before is not None:
                query = query.where(col(BrpPerson.birth_date) <= before)
            if request.only_resident:
                query = query.where(col(BrpPerson.death_date).is_(None), col(BrpPerson.emigration_date).is_(None))
            rows = session.exec(query.order_by(col(BrpPerson.bsn)).limit(size + 1)).all()
            response = brp_pb2.ListPersonsResponse(persons=[person_message(ingestion.state_of(r)) for r in rows[:size]])
            if len(rows) > size:
                response.page.next_page_token = rows[size - 1].bsn
            return response

        return await self._db.run(read)

    # ---- ingestion ----

    async def SubmitChanges(
        self, request: brp_pb2.SubmitChangesRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.SubmitChangesResponse:
        sandbox_id = (await self.callers.resolve(context)).require_sandbox()
        data = request.xml_document
        received_at = real_now()

        def submit(session: Session) -> tuple[brp_pb2.SubmitChangesResponse, int]:
            stored = idempotency.replay(
                session,
                BrpIdempotentResponse,
                sandbox_id=sandbox_id,
                method="SubmitChanges",
                request=request,
                key=request.idempotency_key,
            )
            if stored is not None:
                return brp_pb2.SubmitChangesResponse.FromString(stored), 0
            root = parse_document(data)
            results, appended = ingestion.ingest_document(
                session, sandbox_id=sandbox_id, root=root, received_at=received_at
            )
            response = brp_pb2.SubmitChangesResponse(
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
            idempotency.remember(
                session,
                BrpIdempotentResponse,
                sandbox_id=sandbox_id,
                method="SubmitChanges",
                request=request,
                key=request.idempotency_key,
                response=response,
            )
            return response, appended

        try:
            response, appended = await self._db.run(submit)
        except RefusedDocumentError as refused:
            code, reason = refused.code, refused.reason
            await self._db.run(
                lambda s: ingestion.record_refused_document(
                    s,
                    sandbox_id=sandbox_id,
                    data=data,
                    code=code,
                    reason=reason,
                    received_at=received_at,
                )
            )
            raise invalid_argument([FieldViolation("xml_document", reason, code)], reason=code) from None
        if appended:
            self.wakeup.notify()
        return response

    async def ListRejectedMessages(
        self, request: brp_pb2.ListRejectedMessagesRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.ListRejectedMessagesResponse:
        sandbox_id = (await self.callers.resolve(context)).require_sandbox()
        size, token = _page(request.page)
        after_id = _int_token(token)

        def read(session: Session) -> brp_pb2.ListRejectedMessagesResponse:
            rows = session.exec(
                select(BrpRejectedMessage)
                .where(BrpRejectedMessage.sandbox_id == sandbox_id, col(BrpRejectedMessage.id) > after_id)
                .order_by(col(BrpRejectedMessage.id))
                .limit(size + 1)
            ).all()
            response = brp_pb2.ListRejectedMessagesResponse(
                messages=[
                    brp_pb2.RejectedMessage(
                        message_id=r.message_id,
                        reason_code=r.reason_code,
                        reason=r.reason,
                        received_at=to_timestamp(r.received_at),
                        xml=r.xml,
                    )
                    for r in rows[:size]
                ]
            )
            if len(rows) > size:
                response.page.next_page_token = str(rows[size - 1].id)
            return response

        return await self._db.run(read)

    async def ListHeldMessages(
        self, request: brp_pb2.ListHeldMessagesRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.ListHeldMessagesResponse:
        sandbox_id = (await self.callers.resolve(context)).require_sandbox()
        size, token = _page(request.page)
        after_id = _int_token(token)
        overdue_before = real_now() - self.gap_timeout

        def read(session: Session) -> brp_pb2.ListHeldMessagesResponse:
            rows = session.exec(
                select(BrpHeldMessage, BrpPerson.last_sequence)
                .join(
                    BrpPerson,
                    (col(BrpPerson.sandbox_id) == col(BrpHeldMessage.sandbox_id))
                    & (col(BrpPerson.bsn) == col(BrpHeldMessage.bsn)),
                    isouter=True,
                )
                .where(BrpHeldMessage.sandbox_id == sandbox_id, col(BrpHeldMessage.id) > after_id)
                .order_by(col(BrpHeldMessage.id))
                .limit(size + 1)
            ).all()
            response = brp_pb2.ListHeldMessagesResponse()
            for held, last in rows[:size]:
                received = held.received_at if held.received_at.tzinfo else held.received_at.replace(tzinfo=dt.UTC)
                response.messages.append(
                    brp_pb2.HeldMessage(
                        message_id=held.message_id,
                        bsn=held.bsn,
                        sequence=held.sequence,
                        waiting_for_sequence=(last or 0) + 1,
                        received_at=to_timestamp(received),
                        gap_overdue=received <= overdue_before,
                    )
                )
            if len(rows) > size:
                response.page.next_page_token = str(rows[size - 1][0].id)
            return response

        return await self._db.run(read)

    # ---- following ----

    async def SetFollowIndication(
        self, request: brp_pb2.SetFollowIndicationRequest, context: grpc.aio.ServicerContext
    ) -> brp_pb2.SetFollowIndicationResponse:
        sandbox_id = (await self.callers.resolve(context)).require_sandbox()
        bsn = _bsn(request.bsn)
        subscriber = request.subscriber.strip()
        if not subscriber or len(subscriber) > 100:
            raise invalid_argument([FieldViolation("subscriber", "a name of 1 to 100 characters", "REQUIRED")])

        def store(session: Session) -> brp_pb2.SetFollowIndicationResponse:
            def respond() -> brp_pb2.SetFollowIndicationResponse:
                existing = session.get(BrpFollowIndication, (sandbox_id, subscriber, bsn))
                if request.follow and existing is None:
                    session.add(BrpFollowIndication(sandbox_id=sandbox_id, subscriber=subscriber, bsn=bsn))
                elif not request.follow and existing is not None:
                    session.delete(existing)
                return brp_pb2.SetFollowIndicationResponse()

            return idempotency.once(
                session,
                BrpIdempotentResponse,
                sandbox_id=sandbox_id,
                method="SetFollowIndication",
                request=request,
                response_type=brp_pb2.SetFollowIndicationResponse,
                respond=respond,
            )

        return await self._db.run(store)

    async def StreamPersonChanges(
        self, request: brp_pb2.StreamPersonChangesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[brp_pb2.PersonChange]:
        # The internal token without a sandbox id follows every sandbox (ROD does); a vendor sees only its own.
        sandbox_id = (await self.callers.resolve(context, all_sandboxes_ok=True)).sandbox_id
        if request.after_cursor < 0:
            raise invalid_argument([FieldViolation("after_cursor", "must not be negative", "INVALID_CURSOR")])
        subscriber = request.subscriber.strip()

        def read(session: Session, cursor: int) -> list[brp_pb2.PersonChange]:
            query = select(BrpAppliedChange).where(col(BrpAppliedChange.cursor) > cursor)
            if sandbox_id is not None:
                query = query.where(BrpAppliedChange.sandbox_id == sandbox_id)
            if subscriber:
                query = query.join(
                    BrpFollowIndication,
                    (col(BrpFollowIndication.sandbox_id) == col(BrpAppliedChange.sandbox_id))
                    & (col(BrpFollowIndication.bsn) == col(BrpAppliedChange.bsn))
                    & (col(BrpFollowIndication.subscriber) == subscriber),
                )
            rows = session.exec(query.order_by(col(BrpAppliedChange.cursor)).limit(STREAM_BATCH)).all()
            return [change_message(r) for r in rows]

        async def read_after(cursor: int) -> Sequence[brp_pb2.PersonChange]:
            return await self._db.run(lambda session: read(session, cursor))

        async for change in follow_log(read_after, lambda c: c.cursor, request.after_cursor, self.wakeup):
            yield change

    # ---- internal: seed and purge ----

    async def SeedRegister(
        self, request: common_pb2.SeedRegisterRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.SeedRegisterResponse:
        caller = await self.callers.resolve(context)
        if not caller.internal:
            raise permission_denied("SeedRegister is called by SandboxAdmin.SeedSandbox")
        sandbox_id = caller.require_sandbox()
        size = request.size or "small"
        if size not in PROFILES:
            raise invalid_argument([FieldViolation("size", f"one of {', '.join(PROFILES)}", "INVALID_ENUM")])
        today = await self.sandboxes.today(sandbox_id)

        def seed(session: Session) -> common_pb2.SeedRegisterResponse:
            def respond() -> common_pb2.SeedRegisterResponse:
                already = session.exec(
                    select(func.count())
                    .select_from(BrpPerson)
                    .where(BrpPerson.sandbox_id == sandbox_id, col(BrpPerson.seeded).is_(True))
                ).one()
                created = 0
                if not already:
                    rows = [
                        ingestion.new_row(sandbox_id, state, seeded=True).model_dump()
                        for state in seeding.seed_persons(size, request.seed, today)
                    ]
                    existing = set(session.exec(select(BrpPerson.bsn).where(BrpPerson.sandbox_id == sandbox_id)).all())
                    rows = [r for r in rows if r["bsn"] not in existing]
                    for start in range(0, len(rows), 2000):
                        session.execute(insert(BrpPerson), rows[start : start + 2000])
                    created = len(rows)
                return common_pb2.SeedRegisterResponse(created={"persons": created})

            return idempotency.once(
                session,
                BrpIdempotentResponse,
                sandbox_id=sandbox_id,
                method="SeedRegister",
                request=request,
                response_type=common_pb2.SeedRegisterResponse,
                respond=respond,
            )

        return await self._db.run(seed)

    async def PurgeSandbox(
        self, request: common_pb2.PurgeSandboxRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeSandboxResponse:
        caller = await self.callers.resolve(context)
        if not caller.internal:
            raise permission_denied("PurgeSandbox is called by SandboxAdmin.ResetSandbox")
        sandbox_id = caller.require_sandbox()

        def purge(session: Session) -> common_pb2.PurgeSandboxResponse:
            def respond() -> common_pb2.PurgeSandboxResponse:
                deleted = 0
                for table in (BrpFollowIndication, BrpHeldMessage, BrpRejectedMessage, BrpAppliedChange, BrpPerson):
                    result = session.execute(delete(table).where(col(table.sandbox_id) == sandbox_id))
                    deleted += result.rowcount or 0  # type: ignore[attr-defined]
                session.execute(
                    delete(BrpIdempotentResponse).where(col(BrpIdempotentResponse.sandbox_id) == sandbox_id)
                )
                return common_pb2.PurgeSandboxResponse(deleted=deleted)

            return idempotency.once(
                session,
                BrpIdempotentResponse,
                sandbox_id=sandbox_id,
                method="PurgeSandbox",
                request=request,
                response_type=common_pb2.PurgeSandboxResponse,
                respond=respond,
            )

        return await self._db.run(purge)
