"""RodService over gRPC: resolve the caller, check the message, validate with RIO and BRP, store, push feedback."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message
from sqlmodel import Session

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, rio_pb2, rio_pb2_grpc, rod_pb2, rod_pb2_grpc
from services.common import idempotency
from services.common.caller import Caller, CallerResolver, internal_metadata
from services.common.clock import real_now
from services.common.database import Database
from services.common.dates import from_proto_date, to_proto_date
from services.common.errors import FieldViolation, RegistryError, failed_precondition, invalid_argument, not_found
from services.common.peers import Peers
from services.common.sandbox_client import SandboxClient
from services.common.wakeup import LogWakeup, follow_log
from services.rod import decode, store
from services.rod.decode import PeriodShape, Violations
from services.rod.funding import Sector
from services.rod.store import ACTIVE, DELETED, ENDED, FOLLOWER, BrpFacts, Cause, PeriodIn
from services.rod.tables import RodEnrolment, RodIdempotentResponse

SECTORS = {
    common_pb2.SECTOR_PO: Sector.PO,
    common_pb2.SECTOR_VO: Sector.VO,
    common_pb2.SECTOR_MBO: Sector.MBO,
    common_pb2.SECTOR_HO: Sector.HO,
}
# RIO's error code for a refused offering check, and the field of the period it concerns.
_RIO_FIELDS = {"A01060": "location_code", "A01070": "course_code", "A01080": "course_code"}
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_FEEDBACK_PAGE_SIZE = 500


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class CheckedPeriods:
    periods: list[PeriodIn]
    sector: Sector | None


class RodServiceServicer(rod_pb2_grpc.RodServiceServicer):
    def __init__(self, database: Database, peers: Peers, internal_token: str, wakeup: LogWakeup) -> None:
        self._db = database
        self._peers = peers
        self._token = internal_token
        self.wakeup = wakeup
        self.sandboxes = SandboxClient(lambda: peers.channel("sandbox"), internal_token)
        self.callers = CallerResolver(self.sandboxes.sandbox_id_for_key, internal_token)

    # --- peers ---

    def _rio(self) -> rio_pb2_grpc.RioServiceStub:
        return rio_pb2_grpc.RioServiceStub(self._peers.channel("rio"))

    def _brp(self) -> brp_pb2_grpc.BrpServiceStub:
        return brp_pb2_grpc.BrpServiceStub(self._peers.channel("brp"))

    async def _check_periods(
        self, sandbox_id: str, institution_code: str, shapes: list[PeriodShape], violations: Violations
    ) -> CheckedPeriods:
        """RIO: did the school offer each period's course at its location on the period's begin date?"""
        metadata = internal_metadata(self._token, sandbox_id)
        checked: list[PeriodIn] = []
        sector: Sector | None = None
        answers = await asyncio.gather(
            *(
                self._rio().CheckOffering(
                    rio_pb2.CheckOfferingRequest(
                        institution_code=institution_code,
                        course_code=shape.course_code,
                        location_code=shape.location_code,
                        reference_date=to_proto_date(shape.begin),
                    ),
                    metadata=metadata,
                )
                for shape in shapes
            )
        )
        for index, (shape, answer) in enumerate(zip(shapes, answers, strict=True)):
            if not answer.offered:
                field = _RIO_FIELDS.get(answer.reason_code, "")
                violations.add(
                    f"periods[{index}].{field}" if field else f"periods[{index}]",
                    answer.reason or "the course is not offered at this location on the begin date",
                    answer.reason_code or "NOT_OFFERED",
                )
                continue
            period_sector = SECTORS.get(answer.provider.sector) or SECTORS.get(answer.course.sector)
            sector = sector or period_sector
            offering_end = from_proto_date(answer.offering.validity.end_date)
            checked.append(
                PeriodIn(
                    shape.begin,
                    shape.end,
                    shape.location_code,
                    shape.course_code,
                    shape.year,
                    answer.offering.offering_id,
                    offering_end
                    if offering_end is not None and (shape.end is None or offering_end < shape.end)
                    else None,
                )
            )
        if not violations and sector is None:
            violations.add("institution_code", "RIO knows no sector for this school", "NO_SECTOR")
        return CheckedPeriods(checked, sector)

    async def _check_person(self, sandbox_id: str, bsn: str, start: dt.date, violations: Violations) -> BrpFacts | None:
        """BRP: does the person exist, and were they alive and living here on the start date?

        First ROD registers its follow indication (volgindicatie) for the person, so
        every later change reaches its re-evaluation; then it reads the person, so
        no change can fall between the two.
        """
        await self._follow(sandbox_id, bsn)
        try:
            person = await self._brp().GetPerson(
                brp_pb2.GetPersonRequest(bsn=bsn), metadata=internal_metadata(self._token, sandbox_id)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                violations.add("pupil.bsn", f"BRP knows no person with BSN {bsn}", "PERSON_UNKNOWN")
                return None
            raise
        facts = store.brp_facts(person)
        if facts.death_date is not None and facts.death_date <= start:
            violations.add("pupil.bsn", f"the person died on {facts.death_date}", "PERSON_DECEASED")
        if facts.emigration_date is not None and facts.emigration_date <= start:
            violations.add("pupil.bsn", f"the person emigrated on {facts.emigration_date}", "PERSON_EMIGRATED")
        return facts

    async def _follow(self, sandbox_id: str, bsn: str) -> None:
        request = brp_pb2.SetFollowIndicationRequest(subscriber=FOLLOWER, bsn=bsn, follow=True)
        metadata = internal_metadata(self._token, sandbox_id)
        for attempt in range(3):
            try:
                await self._brp().SetFollowIndication(request, metadata=metadata)
                return
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    return  # GetPerson, next, reports the unknown person with the field it concerns
                # Two schools registering the same new pupil at once can race to create the
                # indication; a retry finds it in place.
                if attempt == 2:
                    raise

    # --- helpers ---

    async def _replayed(self, sandbox_id: str, method: str, request: Message, key: str) -> bytes | None:
        return await self._db.run(
            lambda s: idempotency.replay(
                s, RodIdempotentResponse, sandbox_id=sandbox_id, method=method, request=request, key=key
            )
        )

    async def _commit(self, work: Callable[[Session], rod_pb2.EnrolmentResponse]) -> rod_pb2.EnrolmentResponse:
        response = await self._db.run(work)
        self.wakeup.notify()
        return response

    @contextlib.asynccontextmanager
    async def _rejecting(
        self,
        sandbox_id: str,
        document_id: str,
        *,
        institution_code: str = "",
        enrolment_id: str = "",
        pupil: rod_pb2.PupilId | None = None,
    ) -> AsyncIterator[None]:
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
            cursor = await self._db.run(
                lambda s: store.append_rejection(
                    s,
                    sandbox_id=sandbox_id,
                    document_id=document_id,
                    institution_code=institution_code,
                    enrolment_id=enrolment_id,
                    pupil=pupil,
                    violations=violations,
                )
            )
            if cursor:
                self.wakeup.notify()
            raise

    @staticmethod
    def _refuse_duplicate(session: Session, sandbox_id: str, document_id: str) -> None:
        if store.document_seen(session, sandbox_id=sandbox_id, document_id=document_id):
            raise RegistryError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"document {document_id} was already received",
                "DUPLICATE_DOCUMENT",
                (
                    FieldViolation(
                        "document_id", "already received: a repeated document is refused", "DUPLICATE_DOCUMENT"
                    ),
                ),
            )

    @staticmethod
    def _own_enrolment(session: Session, caller: Caller, sandbox_id: str, enrolment_id: str) -> RodEnrolment:
        enrolment = store.get_enrolment(session, sandbox_id=sandbox_id, enrolment_id=enrolment_id)
        if enrolment is None:
            raise not_found(f"enrolment {enrolment_id}", "enrolment_id")
        caller.require_institution(enrolment.institution_code)
        return enrolment

    def _response(
        self,
        session: Session,
        enrolment: RodEnrolment,
        today: dt.date,
        cursor: int,
        *,
        assigned: str = "",
    ) -> rod_pb2.EnrolmentResponse:
        signals = store.signal_messages(enrolment.signals_json)
        return rod_pb2.EnrolmentResponse(
            enrolment=store.enrolment_message(session, enrolment, today),
            outcome=rod_pb2.FEEDBACK_OUTCOME_APPROVED_WITH_SIGNAL if signals else rod_pb2.FEEDBACK_OUTCOME_APPROVED,
            signals=signals,
            assigned_onderwijsnummer=assigned,
            feedback_cursor=cursor,
        )

    # --- pupils ---

    async def IdentifyPupil(
        self, request: rod_pb2.IdentifyPupilRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.IdentifyPupilResponse:
        sandbox_id = (await self.callers.resolve(context)).require_sandbox()
        violations = Violations()
        if request.bsn:
            bsn = decode.pupil_number(rod_pb2.PupilId(bsn=request.bsn), violations, field="")
            if violations:
                raise invalid_argument([FieldViolation("bsn", v.description, v.code) for v in violations])
            stated = decode.date_field(request.details.birth_date, "details.birth_date", violations, required=False)
            facts = await self._check_person(sandbox_id, bsn, dt.date.min, violations)
            if violations:
                raise failed_precondition([FieldViolation("bsn", v.description, v.code) for v in violations])
            if facts is not None and stated is not None and facts.birth_date != stated:
                raise failed_precondition(
                    [FieldViolation("details.birth_date", "does not match BRP's birth date", "BIRTH_DATE_MISMATCH")]
                )
            return rod_pb2.IdentifyPupilResponse(pupil=rod_pb2.PupilId(bsn=bsn))
        details = decode.pupil_details(request.details, violations, "details")
        if details is None:
            raise invalid_argument(violations)
        stored = await self._replayed(sandbox_id, "IdentifyPupil", request, request.idempotency_key)
        if stored is not None:
            return rod_pb2.IdentifyPupilResponse.FromString(stored)

        def identify(session: Session) -> rod_pb2.IdentifyPupilResponse:
            number, new = store.identify_without_bsn(session, sandbox_id=sandbox_id, details=details)
            response = rod_pb2.IdentifyPupilResponse(pupil=rod_pb2.PupilId(onderwijsnummer=number), newly_assigned=new)
            idempotency.remember(
                session,
                RodIdempotentResponse,
                sandbox_id=sandbox_id,
                method="IdentifyPupil",
                request=request,
                key=request.idempotency_key,
                response=response,
            )
            return response

        return await self._db.run(identify)

    # --- enrolments ---

    async def RegisterEnrolment(
        self, request: rod_pb2.RegisterEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.EnrolmentResponse:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        violations = Violations()
        decode.institution_code(request.institution_code, violations)
        if not violations:
            caller.require_institution(request.institution_code)
        decode.document_id(request.document_id, violations)
        number = ""
        details = None
        if request.HasField("pupil"):
            number = decode.pupil_number(request.pupil, violations)
        elif request.HasField("pupil_details"):
            details = decode.pupil_details(request.pupil_details, violations, "pupil_details")
        else:
            violations.add("pupil", "set pupil (bsn or onderwijsnummer) or pupil_details", decode.REQUIRED)
        shapes = decode.periods(request.periods, violations)
        decode.sequence(request.sequence, violations)
        if violations:
            raise invalid_argument(violations)
        stored = await self._replayed(sandbox_id, "RegisterEnrolment", request, request.idempotency_key)
        if stored is not None:
            return rod_pb2.EnrolmentResponse.FromString(stored)

        async with self._rejecting(
            sandbox_id,
            request.document_id,
            institution_code=request.institution_code,
            pupil=request.pupil if request.HasField("pupil") else None,
        ):
            # The clock, BRP and RIO are independent questions: ask them at once. Violations keep a fixed order.
            person_violations, period_violations = Violations(), Violations()
            today, facts, checked = await asyncio.gather(
                self.sandboxes.today(sandbox_id),
                self._check_person(sandbox_id, number, shapes[0].begin, person_violations)
                if request.pupil.WhichOneof("id") == "bsn"
                else _nothing(),
                self._check_periods(sandbox_id, request.institution_code, shapes, period_violations),
            )
            violations.extend(person_violations)
            violations.extend(period_violations)
            if violations:
                raise failed_precondition(violations)
            assert checked.sector is not None

            def register(session: Session) -> rod_pb2.EnrolmentResponse:
                store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[number] if number else [])
                replayed = idempotency.replay(
                    session,
                    RodIdempotentResponse,
                    sandbox_id=sandbox_id,
                    method="RegisterEnrolment",
                    request=request,
                    key=request.idempotency_key,
                )
                if replayed is not None:
                    return rod_pb2.EnrolmentResponse.FromString(replayed)
                self._refuse_duplicate(session, sandbox_id, request.document_id)
                pupil_number, assigned = number, ""
                if facts is not None:
                    store.store_brp_facts(session, sandbox_id=sandbox_id, facts=facts, create=True)
                elif details is not None:
                    pupil_number, new = store.identify_without_bsn(session, sandbox_id=sandbox_id, details=details)
                    assigned = pupil_number if new else ""
                elif store.find_pupil(session, sandbox_id=sandbox_id, pupil_number=number) is None:
                    raise failed_precondition(
                        [FieldViolation("pupil.onderwijsnummer", "ROD never assigned this number", "PUPIL_UNKNOWN")]
                    )
                now = real_now()
                enrolment = RodEnrolment(
                    enrolment_id=str(uuid.uuid4()),
                    sandbox_id=sandbox_id,
                    pupil_number=pupil_number,
                    institution_code=request.institution_code,
                    sector=checked.sector.value if checked.sector else "",
                    sequence=request.sequence,
                    status=ENDED if shapes[-1].end is not None else ACTIVE,
                    registered_order=store.next_registered_order(session, sandbox_id=sandbox_id),
                    registered_at=now,
                    updated_at=now,
                )
                session.add(enrolment)
                session.flush()
                store.replace_periods(session, enrolment=enrolment, periods=checked.periods)
                store.record_document(
                    session, sandbox_id=sandbox_id, document_id=request.document_id, enrolment_id=enrolment.enrolment_id
                )
                cause = Cause(
                    rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE,
                    enrolment_id=enrolment.enrolment_id,
                    document_id=request.document_id,
                )
                cursor = store.reevaluate_pupil(
                    session, sandbox_id=sandbox_id, pupil_number=pupil_number, today=today, cause=cause
                )
                response = self._response(session, enrolment, today, cursor, assigned=assigned)
                idempotency.remember(
                    session,
                    RodIdempotentResponse,
                    sandbox_id=sandbox_id,
                    method="RegisterEnrolment",
                    request=request,
                    key=request.idempotency_key,
                    response=response,
                )
                return response

            return await self._commit(register)

    async def _update(
        self,
        caller: Caller,
        method: str,
        request: Message,
        key: str,
        document_id: str,
        enrolment_id: str,
        change: Callable[[Session, RodEnrolment], None],
    ) -> rod_pb2.EnrolmentResponse:
        """Shared tail of Change, End and Delete: replay, refuse duplicates, apply, re-evaluate, remember."""
        sandbox_id = caller.require_sandbox()
        today = await self.sandboxes.today(sandbox_id)

        def update(session: Session) -> rod_pb2.EnrolmentResponse:
            store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[])
            replayed = idempotency.replay(
                session, RodIdempotentResponse, sandbox_id=sandbox_id, method=method, request=request, key=key
            )
            if replayed is not None:
                return rod_pb2.EnrolmentResponse.FromString(replayed)
            enrolment = self._own_enrolment(session, caller, sandbox_id, enrolment_id)
            # Re-read under the pupil's lock: a concurrent change of the same enrolment must see this one's sequence.
            store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[enrolment.pupil_number])
            session.refresh(enrolment)
            if enrolment.status == DELETED:
                raise failed_precondition(
                    [FieldViolation("enrolment_id", "the enrolment was deleted", "ENROLMENT_DELETED")]
                )
            self._refuse_duplicate(session, sandbox_id, document_id)
            change(session, enrolment)
            enrolment.updated_at = real_now()
            session.add(enrolment)
            store.record_document(session, sandbox_id=sandbox_id, document_id=document_id, enrolment_id=enrolment_id)
            cause = Cause(rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE, enrolment_id=enrolment_id, document_id=document_id)
            cursor = store.reevaluate_pupil(
                session, sandbox_id=sandbox_id, pupil_number=enrolment.pupil_number, today=today, cause=cause
            )
            response = self._response(session, enrolment, today, cursor)
            idempotency.remember(
                session,
                RodIdempotentResponse,
                sandbox_id=sandbox_id,
                method=method,
                request=request,
                key=key,
                response=response,
            )
            return response

        return await self._commit(update)

    @staticmethod
    def _require_higher_sequence(enrolment: RodEnrolment, sequence: int) -> None:
        if sequence <= enrolment.sequence:
            raise failed_precondition(
                [
                    FieldViolation(
                        "sequence",
                        f"must be higher than the enrolment's current sequence {enrolment.sequence}",
                        "SEQUENCE_NOT_HIGHER",
                    )
                ]
            )

    async def ChangeEnrolment(
        self, request: rod_pb2.ChangeEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.EnrolmentResponse:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        violations = Violations()
        decode.document_id(request.document_id, violations)
        if not request.enrolment_id:
            violations.add("enrolment_id", "is required", decode.REQUIRED)
        shapes = decode.periods(request.periods, violations)
        decode.sequence(request.sequence, violations)
        if violations:
            raise invalid_argument(violations)
        stored = await self._replayed(sandbox_id, "ChangeEnrolment", request, request.idempotency_key)
        if stored is not None:
            return rod_pb2.EnrolmentResponse.FromString(stored)
        async with self._rejecting(sandbox_id, request.document_id, enrolment_id=request.enrolment_id):
            current = await self._db.run(lambda s: self._own_enrolment(s, caller, sandbox_id, request.enrolment_id))
            checked = await self._check_periods(sandbox_id, current.institution_code, shapes, violations)
            if violations:
                raise failed_precondition(violations)

            def change(session: Session, enrolment: RodEnrolment) -> None:
                self._require_higher_sequence(enrolment, request.sequence)
                store.replace_periods(session, enrolment=enrolment, periods=checked.periods)
                enrolment.sequence = request.sequence
                enrolment.status = ENDED if shapes[-1].end is not None else ACTIVE

            return await self._update(
                caller,
                "ChangeEnrolment",
                request,
                request.idempotency_key,
                request.document_id,
                request.enrolment_id,
                change,
            )

    async def EndEnrolment(
        self, request: rod_pb2.EndEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.EnrolmentResponse:
        caller = await self.callers.resolve(context)
        violations = Violations()
        decode.document_id(request.document_id, violations)
        if not request.enrolment_id:
            violations.add("enrolment_id", "is required", decode.REQUIRED)
        end = decode.date_field(request.end_date, "end_date", violations, required=True)
        decode.sequence(request.sequence, violations)
        if violations or end is None:
            raise invalid_argument(violations)

        def finish(session: Session, enrolment: RodEnrolment) -> None:
            self._require_higher_sequence(enrolment, request.sequence)
            periods = store.periods_of(session, enrolment.enrolment_id)
            last = periods[-1]
            if end < last.begin_date:
                raise failed_precondition(
                    [
                        FieldViolation(
                            "end_date", f"is before the last period's begin {last.begin_date}", "END_BEFORE_BEGIN"
                        )
                    ]
                )
            last.end_date = end
            if last.offering_end_date is not None and last.offering_end_date >= end:
                last.offering_end_date = None
            session.add(last)
            enrolment.sequence = request.sequence
            enrolment.status = ENDED

        sandbox_id = caller.require_sandbox()
        async with self._rejecting(sandbox_id, request.document_id, enrolment_id=request.enrolment_id):
            return await self._update(
                caller,
                "EndEnrolment",
                request,
                request.idempotency_key,
                request.document_id,
                request.enrolment_id,
                finish,
            )

    async def DeleteEnrolment(
        self, request: rod_pb2.DeleteEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.EnrolmentResponse:
        caller = await self.callers.resolve(context)
        violations = Violations()
        decode.document_id(request.document_id, violations)
        if not request.enrolment_id:
            violations.add("enrolment_id", "is required", decode.REQUIRED)
        if violations:
            raise invalid_argument(violations)

        def remove(session: Session, enrolment: RodEnrolment) -> None:
            enrolment.status = DELETED

        sandbox_id = caller.require_sandbox()
        async with self._rejecting(sandbox_id, request.document_id, enrolment_id=request.enrolment_id):
            return await self._update(
                caller,
                "DeleteEnrolment",
                request,
                request.idempotency_key,
                request.document_id,
                request.enrolment_id,
                remove,
            )

    async def GetEnrolment(
        self, request: rod_pb2.GetEnrolmentRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.Enrolment:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        today = await self.sandboxes.today(sandbox_id)

        def get(session: Session) -> rod_pb2.Enrolment:
            enrolment = self._own_enrolment(session, caller, sandbox_id, request.enrolment_id)
            return store.enrolment_message(session, enrolment, today)

        return await self._db.run(get)

    async def ListEnrolments(
        self, request: rod_pb2.ListEnrolmentsRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.ListEnrolmentsResponse:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        violations = Violations()
        institution = request.institution_code or (caller.institution_code or "")
        number = ""
        if request.HasField("pupil"):
            number = decode.pupil_number(request.pupil, violations)
        if institution:
            decode.institution_code(institution, violations)
        elif not number and not violations:
            violations.add("institution_code", "give institution_code or pupil", decode.REQUIRED)
        active_on = decode.date_field(request.active_on, "active_on", violations, required=False)
        size = request.page.page_size or DEFAULT_PAGE_SIZE
        if not 0 < size <= MAX_PAGE_SIZE:
            violations.add("page.page_size", f"must be 1 to {MAX_PAGE_SIZE}")
        if violations:
            raise invalid_argument(violations)
        if institution:
            caller.require_institution(institution)
        elif caller.institution_code is not None:
            institution = caller.institution_code
        today = await self.sandboxes.today(sandbox_id)

        def page(session: Session) -> rod_pb2.ListEnrolmentsResponse:
            rows = store.list_enrolments(
                session,
                sandbox_id=sandbox_id,
                institution_code=institution,
                pupil_number=number,
                active_on=active_on,
                after_id=request.page.page_token,
                limit=size + 1,
            )
            more = len(rows) > size
            rows = rows[:size]
            return rod_pb2.ListEnrolmentsResponse(
                enrolments=[store.enrolment_message(session, e, today) for e in rows],
                page=common_pb2.PageResponse(next_page_token=rows[-1].enrolment_id if more else ""),
            )

        return await self._db.run(page)

    # --- feedback ---

    @staticmethod
    def _subscriber_key(caller: Caller, subscriber: str) -> str:
        # A school's subscriber names live in that school's own namespace.
        return f"{caller.institution_code or '*'}/{subscriber}"

    async def StreamFeedback(
        self, request: rod_pb2.StreamFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rod_pb2.Feedback]:
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        violations = Violations()
        for index, code in enumerate(request.institution_codes):
            decode.institution_code(code, violations, f"institution_codes[{index}]")
        if request.after_cursor < 0:
            violations.add("after_cursor", "must not be negative")
        if request.resume_from_acknowledged and not request.subscriber:
            violations.add("subscriber", "is needed to resume from the acknowledged cursor", decode.REQUIRED)
        if violations:
            raise invalid_argument(violations)
        schools = list(request.institution_codes)
        for code in schools:
            caller.require_institution(code)
        if not schools and caller.institution_code is not None:
            schools = [caller.institution_code]
        sandbox_id = caller.sandbox_id
        after = request.after_cursor
        if request.resume_from_acknowledged:
            key = self._subscriber_key(caller, request.subscriber)
            scope = caller.require_sandbox()
            after = await self._db.run(lambda s: store.acknowledged(s, sandbox_id=scope, subscriber=key))

        async def read_after(cursor: int) -> list[rod_pb2.Feedback]:
            return await self._db.run(
                lambda s: store.read_feedback(s, sandbox_id=sandbox_id, institution_codes=schools, after=cursor)
            )

        async for feedback in follow_log(read_after, lambda f: f.cursor, after, self.wakeup):
            yield feedback

    async def AcknowledgeFeedback(
        self, request: rod_pb2.AcknowledgeFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.AcknowledgeFeedbackResponse:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        violations = Violations()
        if not request.subscriber or len(request.subscriber) > 200:
            violations.add("subscriber", "is required (at most 200 characters)", decode.REQUIRED)
        if request.cursor < 0:
            violations.add("cursor", "must not be negative")
        if violations:
            raise invalid_argument(violations)
        key = self._subscriber_key(caller, request.subscriber)
        cursor = await self._db.run(
            lambda s: store.acknowledge(s, sandbox_id=sandbox_id, subscriber=key, cursor=request.cursor)
        )
        return rod_pb2.AcknowledgeFeedbackResponse(acknowledged_cursor=cursor)

    async def ListFeedback(
        self, request: rod_pb2.ListFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.ListFeedbackResponse:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        violations = Violations()
        if len(request.cause_id) > 120:
            violations.add("cause_id", "at most 120 characters")
        if request.institution_code:
            decode.institution_code(request.institution_code, violations)
        if len(request.enrolment_id) > 36:
            violations.add("enrolment_id", "at most 36 characters")
        if request.trigger not in rod_pb2.FeedbackTrigger.values():
            violations.add("trigger", "unknown trigger")
        size = request.page.page_size or DEFAULT_PAGE_SIZE
        if not 0 < size <= MAX_FEEDBACK_PAGE_SIZE:
            violations.add("page.page_size", f"must be 1 to {MAX_FEEDBACK_PAGE_SIZE}")
        after = 0
        if request.page.page_token:
            if not request.page.page_token.isdigit() or len(request.page.page_token) > 18:
                violations.add("page.page_token", "not a token this method gave")
            else:
                after = int(request.page.page_token)
        if violations:
            raise invalid_argument(violations)
        institution = request.institution_code
        if institution:
            caller.require_institution(institution)
        elif caller.institution_code is not None:
            institution = caller.institution_code

        def page(session: Session) -> rod_pb2.ListFeedbackResponse:
            rows = store.list_feedback(
                session,
                sandbox_id=sandbox_id,
                cause_id=request.cause_id,
                trigger=request.trigger,
                institution_code=institution,
                enrolment_id=request.enrolment_id,
                after=after,
                limit=size + 1,
            )
            more = len(rows) > size
            rows = rows[:size]
            return rod_pb2.ListFeedbackResponse(
                feedback=rows, page=common_pb2.PageResponse(next_page_token=str(rows[-1].cursor) if more else "")
            )

        return await self._db.run(page)

    async def GetFundingCount(
        self, request: rod_pb2.GetFundingCountRequest, context: grpc.aio.ServicerContext
    ) -> rod_pb2.FundingCount:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        violations = Violations()
        decode.institution_code(request.institution_code, violations)
        count_date = decode.date_field(request.count_date, "count_date", violations, required=True)
        if violations or count_date is None:
            raise invalid_argument(violations)
        caller.require_institution(request.institution_code)
        today = await self.sandboxes.today(sandbox_id)
        ids = await self._db.run(
            lambda s: store.funded_enrolment_ids(
                s, sandbox_id=sandbox_id, institution_code=request.institution_code, count_date=count_date
            )
        )
        final = store.funding.is_final(count_date, today)
        return rod_pb2.FundingCount(
            institution_code=request.institution_code,
            count_date=request.count_date,
            status=rod_pb2.FUNDING_STATUS_FINAL if final else rod_pb2.FUNDING_STATUS_PROVISIONAL,
            funded_pupils=len(ids),
            funded_enrolment_ids=ids,
        )

    async def PurgeSandbox(
        self, request: common_pb2.PurgeSandboxRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeSandboxResponse:
        caller = await self.callers.resolve(context)
        sandbox_id = caller.require_sandbox()
        if not caller.is_sandbox_admin:
            raise RegistryError(grpc.StatusCode.PERMISSION_DENIED, "only the sandbox admin may purge", "AUT401")
        deleted = await self._db.run(lambda s: store.purge(s, sandbox_id=sandbox_id))
        return common_pb2.PurgeSandboxResponse(deleted=deleted)
