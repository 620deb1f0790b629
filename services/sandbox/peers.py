"""The sandbox admin's gateways to the registers (seed, purge, scenario enrolments), over gRPC or faked."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import grpc
from google.protobuf.message import Message
from google.type import date_pb2

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, rio_pb2, rio_pb2_grpc, rod_pb2, rod_pb2_grpc
from services.common.caller import internal_metadata
from services.common.seeding import national_batches, national_bsns

ResponseT = TypeVar("ResponseT", bound=Message)
T = TypeVar("T")


@dataclass
class RegisterCallError(Exception):
    """A register refused or could not answer a seed or purge call."""

    register: str
    code: grpc.StatusCode
    detail: str

    def __str__(self) -> str:
        return f"{self.register}: {self.code.name}: {self.detail}"


class RegisterGateway(Protocol):
    """One register, as the sandbox admin seeds and purges it (both idempotent under the key)."""

    @property
    def name(self) -> str: ...

    async def seed(
        self,
        sandbox_id: str,
        *,
        size: str,
        seed: int,
        idempotency_key: str,
        synthetic_bsns: bool = False,
        national_pupils: int = 0,
    ) -> dict[str, int]:
        """Seeds the register; the counts of records created by kind. RegisterCallError on failure."""
        ...

    async def purge(self, sandbox_id: str, *, idempotency_key: str) -> int:
        """Deletes every record of the sandbox in the register; how many. RegisterCallError on failure."""
        ...


class NationalGateway(Protocol):
    """The national seed's enrolments: one primary enrolment per national pupil, made in ROD."""

    async def enrol(self, sandbox_id: str, *, pupils: int, idempotency_key: str) -> int:
        """Enrols each of the `pupils` national pupils once; how many enrolments the sandbox now holds of them
        (held from an earlier seed included). RegisterCallError on failure."""
        ...


class ScenarioGateway(Protocol):
    """What the scenario persons need beyond BRP's seed: their enrolments at other schools, made in ROD."""

    async def enrol_elsewhere(self, sandbox_id: str, *, idempotency_key: str) -> int:
        """Enrols each scenario person marked enrolled_elsewhere; how many. RegisterCallError on failure."""
        ...


@dataclass(frozen=True)
class Registers:
    """The registers in the order each job needs them."""

    # RIO before BRP: BRP sizes its persons by the schools RIO created.
    seeding: Sequence[RegisterGateway]
    # ROD first, so no re-evaluation runs against half-purged registers.
    purging: Sequence[RegisterGateway]
    # After seeding: the scenario persons' enrolments elsewhere (None: a sandbox without them, in unit tests).
    scenarios: ScenarioGateway | None = None
    # After seeding with national_pupils: their enrolments in ROD (None: no national seed, in unit tests).
    national: NationalGateway | None = None


# Scenario document ids are derived from the sandbox and person, so a repeated seed sends the same document.
_SCENARIO_NAMESPACE = uuid.UUID("5c3f1f3e-2b1a-4f39-9a52-6b0f0c1d7e21")
# The national seed's RegisterEnrolments calls in flight at once (see GrpcNational.enrol).
NATIONAL_IN_FLIGHT = 2


class GrpcScenarios:
    """Seeds the scenario persons' existing enrolments through the public contract, as a school would.

    BRP's ListScenarioPersons names who; the school is the last primary school on the first page RIO lists
    (100 schools) with an offering that does not end, so a vendor (and a test) that takes the first schools
    finds them as the seed made them; RodService.RegisterEnrolment (as the sandbox admin, for that school)
    enrols the person from the seed date, so every later registration elsewhere meets a real enrolment.
    """

    def __init__(self, channel: Callable[[str], grpc.aio.Channel], internal_token: str) -> None:
        self._channel = channel
        self._token = internal_token

    async def enrol_elsewhere(self, sandbox_id: str, *, idempotency_key: str) -> int:
        metadata = internal_metadata(self._token, sandbox_id)
        table = await _named(
            "brp",
            brp_pb2_grpc.BrpServiceStub(self._channel("brp")).ListScenarioPersons(
                brp_pb2.ListScenarioPersonsRequest(), metadata=metadata
            ),
        )
        persons = [p for p in table.persons if p.enrolled_elsewhere]
        if not persons or not table.HasField("seed_date"):
            return 0
        school = await _named("rio", self._school(metadata))
        if school is None:
            raise RegisterCallError("rio", grpc.StatusCode.FAILED_PRECONDITION, "no primary school to enrol at")
        institution_code, offering = school
        rod = rod_pb2_grpc.RodServiceStub(self._channel("rod"))
        # A key of its own per person, derived from the caller's (which may already be 200 characters long).
        digest = _key_digest(idempotency_key)
        for person in persons:
            request = _seed_enrolment(
                f"{sandbox_id}:{person.key}", person.bsn, institution_code, offering, table.seed_date
            )
            request.idempotency_key = f"scenario:{person.key}:{digest}" if digest else ""
            await _named("rod", _unless_sent_before(rod.RegisterEnrolment(request, metadata=metadata)))
        return len(persons)

    async def _school(self, metadata: tuple[tuple[str, str], ...]) -> tuple[str, rio_pb2.CourseOffering] | None:
        """The last primary school of RIO's first page with an offering that does not end."""
        rio = rio_pb2_grpc.RioServiceStub(self._channel("rio"))
        providers = await rio.ListProviders(
            rio_pb2.ListProvidersRequest(sector=common_pb2.SECTOR_PO, page=common_pb2.PageRequest(page_size=100)),
            metadata=metadata,
        )
        for provider in reversed(providers.providers):
            if provider.validity.HasField("end_date"):
                continue
            offerings = await rio.ListCourseOfferings(
                rio_pb2.ListCourseOfferingsRequest(
                    provider_code=provider.provider_code, page=common_pb2.PageRequest(page_size=20)
                ),
                metadata=metadata,
            )
            for offering in offerings.offerings:
                if offering.location_code and not offering.validity.HasField("end_date"):
                    return provider.institution_code, offering
        return None


class GrpcNational:
    """The national primary register's enrolments through ROD's public bulk RPC, as a school's software would.

    The schools are RIO's primary schools (ListProviders, sector po) with an offering that does not end;
    the pupils are BRP's national persons, whose BSNs common.seeding.national_bsns names, so nothing is
    read from another service's tables. Each batch of 1,000 goes to RodService.RegisterEnrolments (as the
    sandbox admin), with ROD's decisions and feedback. Document ids derive from the sandbox and the
    pupil, so a repeated seed registers nobody twice: ROD answers a held document as before, or
    ALREADY_EXISTS.
    """

    def __init__(self, channel: Callable[[str], grpc.aio.Channel], internal_token: str) -> None:
        self._channel = channel
        self._token = internal_token

    async def enrol(self, sandbox_id: str, *, pupils: int, idempotency_key: str) -> int:
        metadata = internal_metadata(self._token, sandbox_id)
        table = await _named(
            "brp",
            brp_pb2_grpc.BrpServiceStub(self._channel("brp")).ListScenarioPersons(
                brp_pb2.ListScenarioPersonsRequest(), metadata=metadata
            ),
        )
        schools = await _named("rio", self._schools(metadata))
        if not schools:
            raise RegisterCallError("rio", grpc.StatusCode.FAILED_PRECONDITION, "no primary school to enrol at")
        bsns = national_bsns(pupils)
        rod = rod_pb2_grpc.RodServiceStub(self._channel("rod"))
        digest = _key_digest(idempotency_key)
        held = 0
        # NATIONAL_IN_FLIGHT batches at once: ROD judges the next batch while it writes the one before (on
        # PostgreSQL its write runs in a worker thread), instead of idling through each round trip.
        pending: collections.deque[asyncio.Task[int]] = collections.deque()
        try:
            for number, batch in enumerate(national_batches(pupils, len(schools))):
                items = []
                for pupil, school in batch:
                    institution_code, offering = schools[school]
                    document = f"{sandbox_id}:national:{bsns[pupil]}"
                    items.append(_seed_enrolment(document, bsns[pupil], institution_code, offering, table.seed_date))
                request = rod_pb2.RegisterEnrolmentsRequest(
                    idempotency_key=f"national:{number}:{digest}" if digest else "", enrolments=items
                )
                if len(pending) >= NATIONAL_IN_FLIGHT:
                    held += await pending.popleft()
                pending.append(asyncio.ensure_future(self._register(rod, request, batch, metadata)))
            while pending:
                held += await pending.popleft()
        finally:
            for task in pending:
                task.cancel()
        return held

    @staticmethod
    async def _register(
        rod: rod_pb2_grpc.RodServiceStub,
        request: rod_pb2.RegisterEnrolmentsRequest,
        batch: Sequence[tuple[int, int]],
        metadata: tuple[tuple[str, str], ...],
    ) -> int:
        """One batch through RegisterEnrolments: how many of its pupils ROD holds now (accepted, or before)."""
        answer = await _named("rod", rod.RegisterEnrolments(request, metadata=metadata))
        held = answer.accepted
        for result in answer.results:
            if result.HasField("refused"):
                refusal = result.refused
                if refusal.status_code == grpc.StatusCode.ALREADY_EXISTS.value[0]:
                    held += 1
                    continue
                raise RegisterCallError(
                    "rod",
                    _status(refusal.status_code),
                    f"national pupil {batch[result.index][0]} refused: {refusal.reason}: {refusal.message}",
                )
        return held

    async def _schools(self, metadata: tuple[tuple[str, str], ...]) -> list[tuple[str, rio_pb2.CourseOffering]]:
        """Every primary school RIO lists with an offering that does not end, in RIO's order."""
        rio = rio_pb2_grpc.RioServiceStub(self._channel("rio"))
        providers: list[rio_pb2.Provider] = []
        token = ""
        while True:
            page = await rio.ListProviders(
                rio_pb2.ListProvidersRequest(
                    sector=common_pb2.SECTOR_PO, page=common_pb2.PageRequest(page_size=500, page_token=token)
                ),
                metadata=metadata,
            )
            providers.extend(p for p in page.providers if not p.validity.HasField("end_date"))
            token = page.page.next_page_token
            if not token:
                break

        async def school(provider: rio_pb2.Provider) -> tuple[str, rio_pb2.CourseOffering] | None:
            offerings = await rio.ListCourseOfferings(
                rio_pb2.ListCourseOfferingsRequest(
                    provider_code=provider.provider_code, page=common_pb2.PageRequest(page_size=20)
                ),
                metadata=metadata,
            )
            for offering in offerings.offerings:
                if offering.location_code and not offering.validity.HasField("end_date"):
                    return provider.institution_code, offering
            return None

        found: list[tuple[str, rio_pb2.CourseOffering]] = []
        # A few calls in flight at once: 6,700 schools one after the other would cost seconds of round trips.
        for start in range(0, len(providers), 32):
            answers = await asyncio.gather(*(school(p) for p in providers[start : start + 32]))
            found.extend(a for a in answers if a is not None)
        return found


def _status(number: int) -> grpc.StatusCode:
    return next((code for code in grpc.StatusCode if code.value[0] == number), grpc.StatusCode.UNKNOWN)


class GrpcRegister:
    """A register's internal methods over gRPC, called with the internal token for one sandbox."""

    def __init__(self, name: str, service: str, channel: Callable[[], grpc.aio.Channel], internal_token: str) -> None:
        self._name = name
        self._service = service
        self._channel = channel
        self._token = internal_token

    @property
    def name(self) -> str:
        return self._name

    async def seed(
        self,
        sandbox_id: str,
        *,
        size: str,
        seed: int,
        idempotency_key: str,
        synthetic_bsns: bool = False,
        national_pupils: int = 0,
    ) -> dict[str, int]:
        request = common_pb2.SeedRegisterRequest(
            idempotency_key=idempotency_key,
            size=size,
            seed=seed,
            synthetic_bsns=synthetic_bsns,
            national_pupils=national_pupils,
        )
        answer = await self._call("SeedRegister", request, common_pb2.SeedRegisterResponse, sandbox_id)
        return dict(answer.created)

    async def purge(self, sandbox_id: str, *, idempotency_key: str) -> int:
        request = common_pb2.PurgeSandboxRequest(idempotency_key=idempotency_key)
        answer = await self._call("PurgeSandbox", request, common_pb2.PurgeSandboxResponse, sandbox_id)
        return answer.deleted

    async def _call(self, method: str, request: Message, response: type[ResponseT], sandbox_id: str) -> ResponseT:
        call = self._channel().unary_unary(
            f"/registry.v1.{self._service}/{method}",
            # The request's own class: the base Message.SerializeToString raises NotImplementedError, which
            # gRPC logged and then sent an empty request, so the registers seeded with the defaults (small,
            # seed 0) whatever size, seed or idempotency key SeedSandbox was given.
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        try:
            answer: ResponseT = await call(request, metadata=internal_metadata(self._token, sandbox_id))
        except grpc.aio.AioRpcError as error:
            raise RegisterCallError(self._name, error.code(), error.details() or "") from None
        return answer


async def _named(register: str, call: Awaitable[T]) -> T:
    """The call's answer; a failure as a RegisterCallError naming the register, as SeedSandbox reports it."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise RegisterCallError(register, error.code(), error.details() or "") from None


async def _unless_sent_before(call: Awaitable[object]) -> None:
    """A document ROD already holds (a second SeedSandbox of a seeded sandbox) is the enrolment wanted."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


def grpc_registers(channel: Callable[[str], grpc.aio.Channel], internal_token: str) -> Registers:
    """RIO, BRP and ROD over gRPC; `channel(name)` opens the channel to the named peer (see Peers)."""

    def register(name: str, service: str) -> GrpcRegister:
        return GrpcRegister(name, service, lambda: channel(name), internal_token)

    rio, brp, rod = register("rio", "RioService"), register("brp", "BrpService"), register("rod", "RodService")
    return Registers(
        seeding=(rio, brp),
        purging=(rod, rio, brp),
        scenarios=GrpcScenarios(channel, internal_token),
        national=GrpcNational(channel, internal_token),
    )


@dataclass
class FakeRegister:
    """An in-process register for unit tests: it records the sandboxes it holds and can be told to fail."""

    name: str
    created: dict[str, int] = field(default_factory=lambda: {"records": 1})
    fail_seed: grpc.StatusCode | None = None
    fail_purge: grpc.StatusCode | None = None
    seeded: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    async def seed(
        self,
        sandbox_id: str,
        *,
        size: str,
        seed: int,
        idempotency_key: str,
        synthetic_bsns: bool = False,
        national_pupils: int = 0,
    ) -> dict[str, int]:
        self.calls.append(f"seed {sandbox_id}")
        self._maybe_fail(self.fail_seed)
        self.seeded.add(sandbox_id)
        return dict(self.created)

    async def purge(self, sandbox_id: str, *, idempotency_key: str) -> int:
        self.calls.append(f"purge {sandbox_id}")
        self._maybe_fail(self.fail_purge)
        held = sandbox_id in self.seeded
        self.seeded.discard(sandbox_id)
        return sum(self.created.values()) if held else 0

    def _maybe_fail(self, code: grpc.StatusCode | None) -> None:
        if code is not None:
            raise RegisterCallError(self.name, code, "told to fail")


@dataclass
class FakeScenarios:
    """The scenario enrolments for unit tests: counts the sandboxes enrolled in, or fails when told to."""

    fail: grpc.StatusCode | None = None
    enrolled: list[str] = field(default_factory=list)

    async def enrol_elsewhere(self, sandbox_id: str, *, idempotency_key: str) -> int:
        if self.fail is not None:
            raise RegisterCallError("rod", self.fail, "told to fail")
        self.enrolled.append(sandbox_id)
        return 1


@dataclass
class FakeNational:
    """The national enrolments for unit tests: records each call, or fails when told to."""

    fail: grpc.StatusCode | None = None
    enrolled: list[tuple[str, int]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    async def enrol(self, sandbox_id: str, *, pupils: int, idempotency_key: str) -> int:
        self.calls.append(f"enrol {sandbox_id}")
        if self.fail is not None:
            raise RegisterCallError("rod", self.fail, "told to fail")
        self.enrolled.append((sandbox_id, pupils))
        return pupils


def _key_digest(idempotency_key: str) -> str:
    """A short digest of the caller's idempotency key (which may already be 200 characters long), from which
    each call the seed makes derives a key of its own; "" without a key."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32] if idempotency_key else ""


def _seed_enrolment(
    document: str, bsn: str, institution_code: str, offering: rio_pb2.CourseOffering, begin: date_pb2.Date
) -> rod_pb2.RegisterEnrolmentRequest:
    """A seeded pupil's enrolment in a school's offering from the seed date on. Its document id is derived from
    `document`, so a seed repeated after a failure sends the same document and ROD registers it once."""
    return rod_pb2.RegisterEnrolmentRequest(
        document_id=str(uuid.uuid5(_SCENARIO_NAMESPACE, document)),
        pupil=rod_pb2.PupilId(bsn=bsn),
        institution_code=institution_code,
        sequence=1,
        periods=[
            rod_pb2.EnrolmentPeriod(
                begin_date=begin, location_code=offering.location_code, course_code=offering.course_code
            )
        ],
    )
