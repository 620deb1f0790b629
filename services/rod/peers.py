"""ROD's typed gateways to the registers it calls (RIO, BRP, the sandbox clock): Protocols, gRPC and in-process fakes.

The use cases (services.rod.service) see only the Protocols and ROD's domain
types; the gRPC gateways call the peers with the internal token on behalf of
one sandbox, and the fakes answer from memory for unit tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, rio_pb2, rio_pb2_grpc
from services.common.caller import internal_metadata
from services.common.dates import to_proto_date
from services.common.peers import Peers
from services.common.sandbox_client import SandboxClient
from services.rod import codec
from services.rod.funding import Sector
from services.rod.rules import (
    FOLLOWER,
    RIO_LOCATION_UNKNOWN,
    BrpFacts,
    OfferingCheck,
    PersonChanged,
    PupilDetails,
    RioChanged,
    SchoolLocations,
    normal_postcode,
)

T = TypeVar("T")
ChangeT = TypeVar("ChangeT")
StreamedT = TypeVar("StreamedT", bound="_Streamed")
# Locations of one school read to find a period's vestiging: one is all ROD needs, the rest name the choice.
MAX_LOCATIONS = 10
# Persons born on one day at one address: a household holds a few (twins, triplets); more are not read.
MAX_CANDIDATES = 20
# Persons followed in one SetFollowIndications call: BRP's limit, one bulk registration's pupils.
MAX_FOLLOWS = 1_000
# One change of a peer's stream: its cursor, and the change when it can alter a decision (else None).
RioStreamItem = tuple[int, RioChanged | None]
# Schools of one board read when its use of a location ends: boards run a handful, the largest in RIO some hundreds.
MAX_BOARD_SCHOOLS = 500
BrpStreamItem = tuple[int, PersonChanged]


class Rio(Protocol):
    """RIO as ROD asks it: was a course offered at a school's location on a date?"""

    async def check_offering(
        self, sandbox_id: str, *, institution_code: str, location_code: str, course_code: str, on: dt.date
    ) -> OfferingCheck: ...

    async def school_sector(self, sandbox_id: str, institution_code: str) -> Sector | None:
        """The sector of the school RIO registers today under this institution code, or None when it has none."""
        ...

    async def school_locations(self, sandbox_id: str, institution_code: str, on: dt.date) -> SchoolLocations:
        """The school's sector and the locations where it teaches on a date (at most MAX_LOCATIONS of them)."""
        ...

    async def board_schools(self, sandbox_id: str, board_code: str, on: dt.date | None) -> tuple[str, ...]:
        """The institution codes of the board's schools on a date (today when None), at most MAX_BOARD_SCHOOLS."""
        ...


class Brp(Protocol):
    """BRP as ROD asks it: follow a person (volgindicatie), and read the person's facts."""

    async def follow(self, sandbox_id: str, bsn: str, until: dt.date | None = None) -> BrpFacts | None:
        """Follows the person (again), until an end date (einddatum) when given, and returns the person's facts
        read with it (None when BRP knows no person with this BSN). BRP writes nothing when it is in place."""
        ...

    async def follow_many(self, sandbox_id: str, bsns: Sequence[str]) -> dict[str, BrpFacts | None]:
        """follow(sandbox_id, bsn) for each BSN (no end date), in one call and one BRP transaction: the facts by
        BSN (None when BRP knows no such person)."""
        ...

    async def person(self, sandbox_id: str, bsn: str) -> BrpFacts | None:
        """The person's facts, or None when BRP knows no person with this BSN."""
        ...

    async def candidates(self, sandbox_id: str, details: PupilDetails) -> list[BrpFacts]:
        """The persons BRP has at the details' address (postcode, house number) with their birth date."""
        ...


class Clock(Protocol):
    """The sandbox clock: the date it is in a sandbox (a vendor may have moved it)."""

    async def today(self, sandbox_id: str) -> dt.date: ...


class ChangeFeeds(Protocol):
    """The peers' change streams, across all sandboxes, from a cursor on."""

    def rio_changes(self, after: int) -> AsyncIterator[RioStreamItem]: ...

    def person_changes(self, after: int) -> AsyncIterator[BrpStreamItem]: ...


@dataclass(frozen=True)
class RodPeers:
    rio: Rio
    brp: Brp
    clock: Clock


# --- one batch: each distinct question asked once ---


class _Once:
    """Answers to one batch's questions, by their arguments: concurrent askers of the same question share one
    call (its future), so a batch of 1,000 pupils of one school asks RIO about the offering once."""

    def __init__(self) -> None:
        self._answers: dict[tuple[object, ...], asyncio.Future[Any]] = {}

    def ask(self, key: tuple[object, ...], call: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = asyncio.ensure_future(call())
        return answer

    def __contains__(self, key: tuple[object, ...]) -> bool:
        return key in self._answers

    def known(self, key: tuple[object, ...], answer: object) -> None:
        """An answer learnt in a batched call: later askers of the question get it without a call."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(answer)
        self._answers.setdefault(key, future)


class _OnceRio:
    def __init__(self, rio: Rio) -> None:
        self._rio, self._once = rio, _Once()

    async def check_offering(
        self, sandbox_id: str, *, institution_code: str, location_code: str, course_code: str, on: dt.date
    ) -> OfferingCheck:
        return await self._once.ask(
            ("check", sandbox_id, institution_code, location_code, course_code, on),
            lambda: self._rio.check_offering(
                sandbox_id,
                institution_code=institution_code,
                location_code=location_code,
                course_code=course_code,
                on=on,
            ),
        )

    async def school_sector(self, sandbox_id: str, institution_code: str) -> Sector | None:
        return await self._once.ask(
            ("sector", sandbox_id, institution_code), lambda: self._rio.school_sector(sandbox_id, institution_code)
        )

    async def school_locations(self, sandbox_id: str, institution_code: str, on: dt.date) -> SchoolLocations:
        return await self._once.ask(
            ("locations", sandbox_id, institution_code, on),
            lambda: self._rio.school_locations(sandbox_id, institution_code, on),
        )

    async def board_schools(self, sandbox_id: str, board_code: str, on: dt.date | None) -> tuple[str, ...]:
        return await self._once.ask(
            ("board", sandbox_id, board_code, on), lambda: self._rio.board_schools(sandbox_id, board_code, on)
        )


class _OnceBrp:
    def __init__(self, brp: Brp) -> None:
        self._brp, self._once = brp, _Once()

    async def follow(self, sandbox_id: str, bsn: str, until: dt.date | None = None) -> BrpFacts | None:
        return await self._once.ask(
            ("follow", sandbox_id, bsn, until), lambda: self._brp.follow(sandbox_id, bsn, until)
        )

    async def follow_many(self, sandbox_id: str, bsns: Sequence[str]) -> dict[str, BrpFacts | None]:
        """Follows the batch's persons in one call, and answers each later follow of them (no end) from it."""
        wanted = sorted({b for b in bsns if ("follow", sandbox_id, b, None) not in self._once})
        followed = await self._brp.follow_many(sandbox_id, wanted) if wanted else {}
        for bsn, facts in followed.items():
            self._once.known(("follow", sandbox_id, bsn, None), facts)
        return {b: await self.follow(sandbox_id, b) for b in bsns}

    async def person(self, sandbox_id: str, bsn: str) -> BrpFacts | None:
        return await self._once.ask(("person", sandbox_id, bsn), lambda: self._brp.person(sandbox_id, bsn))

    async def candidates(self, sandbox_id: str, details: PupilDetails) -> list[BrpFacts]:
        return await self._brp.candidates(sandbox_id, details)


class _OnceClock:
    def __init__(self, clock: Clock) -> None:
        self._clock, self._once = clock, _Once()

    async def today(self, sandbox_id: str) -> dt.date:
        return await self._once.ask(("today", sandbox_id), lambda: self._clock.today(sandbox_id))


def once_each(peers: RodPeers) -> RodPeers:
    """The peers as one bulk registration asks them: the clock once, RIO once per distinct offering (and
    school), BRP once per distinct person. Answers are shared by the batch's items, never kept after it: a
    batch is judged on one moment's facts, as a single registration is."""
    return RodPeers(rio=_OnceRio(peers.rio), brp=_OnceBrp(peers.brp), clock=_OnceClock(peers.clock))


# --- over gRPC ---


class GrpcRio:
    def __init__(self, peers: Peers, internal_token: str) -> None:
        self._peers = peers
        self._token = internal_token

    async def check_offering(
        self, sandbox_id: str, *, institution_code: str, location_code: str, course_code: str, on: dt.date
    ) -> OfferingCheck:
        answer = await rio_pb2_grpc.RioServiceStub(self._peers.channel("rio")).CheckOffering(
            rio_pb2.CheckOfferingRequest(
                institution_code=institution_code,
                course_code=course_code,
                location_code=location_code,
                reference_date=to_proto_date(on),
            ),
            metadata=internal_metadata(self._token, sandbox_id),
        )
        return codec.offering_check(answer)

    async def school_sector(self, sandbox_id: str, institution_code: str) -> Sector | None:
        answer = await rio_pb2_grpc.RioServiceStub(self._peers.channel("rio")).ListProviders(
            rio_pb2.ListProvidersRequest(institution_code=institution_code, page=common_pb2.PageRequest(page_size=1)),
            metadata=internal_metadata(self._token, sandbox_id),
        )
        return next((codec.SECTORS.get(p.sector) for p in answer.providers), None)

    async def school_locations(self, sandbox_id: str, institution_code: str, on: dt.date) -> SchoolLocations:
        stub = rio_pb2_grpc.RioServiceStub(self._peers.channel("rio"))
        metadata = internal_metadata(self._token, sandbox_id)
        day = to_proto_date(on)
        providers = await stub.ListProviders(
            rio_pb2.ListProvidersRequest(
                institution_code=institution_code, reference_date=day, page=common_pb2.PageRequest(page_size=1)
            ),
            metadata=metadata,
        )
        if not providers.providers:
            return SchoolLocations(None, ())
        provider = providers.providers[0]
        locations = await stub.ListLocations(
            rio_pb2.ListLocationsRequest(
                provider_code=provider.provider_code,
                reference_date=day,
                page=common_pb2.PageRequest(page_size=MAX_LOCATIONS),
            ),
            metadata=metadata,
        )
        return SchoolLocations(
            codec.SECTORS.get(provider.sector), tuple(sorted(loc.location_code for loc in locations.locations))
        )

    async def board_schools(self, sandbox_id: str, board_code: str, on: dt.date | None) -> tuple[str, ...]:
        answer = await rio_pb2_grpc.RioServiceStub(self._peers.channel("rio")).ListProviders(
            rio_pb2.ListProvidersRequest(
                board_code=board_code,
                reference_date=to_proto_date(on) if on else None,
                page=common_pb2.PageRequest(page_size=MAX_BOARD_SCHOOLS),
            ),
            metadata=internal_metadata(self._token, sandbox_id),
        )
        return tuple(sorted({p.institution_code for p in answer.providers if p.institution_code}))


class GrpcBrp:
    def __init__(self, peers: Peers, internal_token: str) -> None:
        self._peers = peers
        self._token = internal_token

    def _stub(self) -> brp_pb2_grpc.BrpServiceStub:
        return brp_pb2_grpc.BrpServiceStub(self._peers.channel("brp"))

    async def follow(self, sandbox_id: str, bsn: str, until: dt.date | None = None) -> BrpFacts | None:
        request = brp_pb2.SetFollowIndicationRequest(subscriber=FOLLOWER, bsn=bsn, follow=True)
        if until is not None:
            request.end_date.CopyFrom(to_proto_date(until))
        metadata = internal_metadata(self._token, sandbox_id)
        for attempt in range(3):
            try:
                answer = await self._stub().SetFollowIndication(request, metadata=metadata)
                return codec.brp_facts(answer.person) if answer.HasField("person") else None
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    # Reading the person reports the unknown person (or sandbox) as it always did.
                    return await self.person(sandbox_id, bsn)
                # Two schools registering the same new pupil at once can race to create the
                # indication; a retry finds it in place.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def follow_many(self, sandbox_id: str, bsns: Sequence[str]) -> dict[str, BrpFacts | None]:
        followed: dict[str, BrpFacts | None] = {}
        metadata = internal_metadata(self._token, sandbox_id)
        for at in range(0, len(bsns), MAX_FOLLOWS):
            chunk = list(bsns[at : at + MAX_FOLLOWS])
            try:
                answer = await self._stub().SetFollowIndications(
                    brp_pb2.SetFollowIndicationsRequest(subscriber=FOLLOWER, bsns=chunk), metadata=metadata
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                # A BSN BRP refuses refuses the whole call: each is asked alone, so it is refused alone.
                for bsn in chunk:
                    followed[bsn] = await self.follow(sandbox_id, bsn)
                continue
            for bsn, result in zip(chunk, answer.results, strict=True):
                followed[bsn] = codec.brp_facts(result.person) if result.HasField("person") else None
        return followed

    async def person(self, sandbox_id: str, bsn: str) -> BrpFacts | None:
        try:
            person = await self._stub().GetPerson(
                brp_pb2.GetPersonRequest(bsn=bsn), metadata=internal_metadata(self._token, sandbox_id)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return codec.brp_facts(person)

    async def candidates(self, sandbox_id: str, details: PupilDetails) -> list[BrpFacts]:
        day = to_proto_date(details.birth_date)
        request = brp_pb2.ListPersonsRequest(
            born_on_or_after=day,
            born_on_or_before=day,
            postcode=details.postcode,
            house_number=details.house_number,
            page=common_pb2.PageRequest(page_size=MAX_CANDIDATES),
        )
        answer = await self._stub().ListPersons(request, metadata=internal_metadata(self._token, sandbox_id))
        return [codec.brp_facts(p) for p in answer.persons]


class StreamWatcher(Protocol):
    """What keeps a copy of a peer: told when the peer registered the stream, of each change as it arrives, and
    when the stream ended (services.rod.copies)."""

    def following_from_now(self, following: bool) -> None: ...

    def changed(self) -> None: ...


class PersonWatcher(Protocol):
    """What keeps a copy of BRP's persons: told when BRP registered the stream, of each person change as it
    arrives, and when the stream ended (services.rod.copies.PersonCopy)."""

    def following_from_now(self, following: bool) -> None: ...

    def changed(self, change: PersonChanged) -> None: ...


class GrpcChangeFeeds:
    def __init__(
        self,
        peers: Peers,
        internal_token: str,
        rio_watcher: StreamWatcher | None = None,
        person_watcher: PersonWatcher | None = None,
    ) -> None:
        self._peers = peers
        self._token = internal_token
        self._rio_watcher = rio_watcher
        self._person_watcher = person_watcher

    async def rio_changes(self, after: int) -> AsyncIterator[RioStreamItem]:
        stub = rio_pb2_grpc.RioServiceStub(self._peers.channel("rio"))
        call = stub.StreamChanges(
            rio_pb2.StreamChangesRequest(after_cursor=after), metadata=internal_metadata(self._token, None)
        )
        watcher = self._rio_watcher
        async for item in _confirmed(
            call,
            codec.rio_change,
            watcher.following_from_now if watcher is not None else None,
            (lambda _change: watcher.changed()) if watcher is not None else None,
        ):
            yield item

    async def person_changes(self, after: int) -> AsyncIterator[BrpStreamItem]:
        stub = brp_pb2_grpc.BrpServiceStub(self._peers.channel("brp"))
        call: AsyncIterator[brp_pb2.PersonChange] = stub.StreamPersonChanges(
            brp_pb2.StreamPersonChangesRequest(after_cursor=after, subscriber=FOLLOWER),
            metadata=internal_metadata(self._token, None),
        )
        watcher = self._person_watcher
        async for item in _confirmed(
            call,
            codec.person_change,
            watcher.following_from_now if watcher is not None else None,
            watcher.changed if watcher is not None else None,
        ):
            yield item


class _Streamed(Protocol):
    cursor: int


async def _confirmed(
    call: AsyncIterator[StreamedT],
    decode: Callable[[StreamedT], ChangeT],
    following_from_now: Callable[[bool], None] | None,
    arrived: Callable[[ChangeT], None] | None,
) -> AsyncIterator[tuple[int, ChangeT]]:
    """A peer's change stream as a confirming follower reads it, telling the copy that keeps the peer's state.

    The peer's first, empty message (cursor 0) says it registered the stream: from then on each write to the
    peer waits until it was handed here, so the copy may be trusted (`following_from_now(True)`) until the
    stream ends. Each change is told to the copy at arrival, before it waits for its turn to be re-evaluated.
    """
    try:
        async for change in call:
            if not change.cursor:
                if following_from_now is not None:
                    following_from_now(True)
                continue
            decoded = decode(change)
            if arrived is not None:
                arrived(decoded)
            yield change.cursor, decoded
    finally:
        if following_from_now is not None:
            following_from_now(False)


def grpc_peers(peers: Peers, internal_token: str, sandboxes: SandboxClient) -> RodPeers:
    return RodPeers(GrpcRio(peers, internal_token), GrpcBrp(peers, internal_token), sandboxes)


# --- in process, for unit tests ---


@dataclass
class FakeRio:
    """Offers what a test said it offers; anything else is refused like RIO does (A01060: no such location)."""

    offered: dict[tuple[str, str, str], OfferingCheck] = field(default_factory=dict)
    asked: list[tuple[str, str, str, dt.date]] = field(default_factory=list)
    # The board of each school (institution code), for board_schools().
    boards: dict[str, str] = field(default_factory=dict)

    def offer(
        self, institution_code: str, location_code: str, course_code: str, sector: Sector, end: dt.date | None = None
    ) -> str:
        offering_id = str(uuid.uuid4())
        check = OfferingCheck(True, sector=sector, offering_id=offering_id, offering_end=end)
        self.offered[(institution_code, location_code, course_code)] = check
        return offering_id

    async def check_offering(
        self, sandbox_id: str, *, institution_code: str, location_code: str, course_code: str, on: dt.date
    ) -> OfferingCheck:
        self.asked.append((institution_code, location_code, course_code, on))
        refused = OfferingCheck(False, RIO_LOCATION_UNKNOWN, f"location {location_code} does not exist")
        return self.offered.get((institution_code, location_code, course_code), refused)

    async def school_sector(self, sandbox_id: str, institution_code: str) -> Sector | None:
        return next((c.sector for (school, _, _), c in self.offered.items() if school == institution_code), None)

    async def school_locations(self, sandbox_id: str, institution_code: str, on: dt.date) -> SchoolLocations:
        sector = await self.school_sector(sandbox_id, institution_code)
        taught = sorted({location for (school, location, _) in self.offered if school == institution_code})
        return SchoolLocations(sector, tuple(taught[:MAX_LOCATIONS]))

    async def board_schools(self, sandbox_id: str, board_code: str, on: dt.date | None) -> tuple[str, ...]:
        return tuple(sorted(school for school, board in self.boards.items() if board == board_code))


@dataclass
class FakeBrp:
    """Persons a test registered, by BSN; remembers whom ROD follows."""

    persons: dict[str, BrpFacts] = field(default_factory=dict)
    followed: set[tuple[str, str]] = field(default_factory=set)
    # The end date of each indication (None: no end), by (sandbox, BSN).
    follow_ends: dict[tuple[str, str], dt.date | None] = field(default_factory=dict)
    # (postcode, house number) of a person, for candidates().
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    # Every follow asked, as (sandbox, BSN, end), in order.
    asked: list[tuple[str, str, dt.date | None]] = field(default_factory=list)

    def add(self, bsn: str, birth_date: dt.date, *, death_date: dt.date | None = None) -> None:
        self.persons[bsn] = BrpFacts(bsn, birth_date, death_date, None, 1)

    async def follow(self, sandbox_id: str, bsn: str, until: dt.date | None = None) -> BrpFacts | None:
        self.asked.append((sandbox_id, bsn, until))
        if bsn in self.persons:
            self.followed.add((sandbox_id, bsn))
            self.follow_ends[(sandbox_id, bsn)] = until
        return self.persons.get(bsn)

    async def follow_many(self, sandbox_id: str, bsns: Sequence[str]) -> dict[str, BrpFacts | None]:
        return {bsn: await self.follow(sandbox_id, bsn) for bsn in bsns}

    async def person(self, sandbox_id: str, bsn: str) -> BrpFacts | None:
        return self.persons.get(bsn)

    async def candidates(self, sandbox_id: str, details: PupilDetails) -> list[BrpFacts]:
        address = (normal_postcode(details.postcode), details.house_number)
        return [
            p
            for bsn, p in self.persons.items()
            if self.addresses.get(bsn) == address and p.birth_date == details.birth_date
        ]


@dataclass
class FakeClock:
    """One date for every sandbox, set by the test."""

    date: dt.date

    async def today(self, sandbox_id: str) -> dt.date:
        return self.date
