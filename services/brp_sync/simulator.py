"""Feed simulator: a realistic day of BRP change messages for a sandbox's persons, written out or streamed in.

python -m services.brp_sync.simulator --date 2026-11-28 --count 10000 --seed 1 --out day.xml
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import typer

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2
from services.brp_sync import rules, seeding, xml_codec
from services.brp_sync.rules import (
    Address,
    Emigratie,
    Gebeurtenis,
    HuwelijkPartnerschap,
    MaritalStatus,
    Mutatie,
    Overlijden,
    PersonState,
    Persoon,
    RuleViolationError,
    StayAbroad,
    Verblijfplaats,
)
from services.common import places
from services.common.caller import SANDBOX_KEY
from services.common.clock import REGISTER_TIMEZONE
from services.common.dates import from_proto_date
from services.common.identifiers import a_nummer_for_bsn
from services.common.paging import MAX_PAGE_SIZE

# The mix of a day, as events per year in the Netherlands (CBS StatLine, rounded 2022–2023 figures):
# about 1.0 million moves within a municipality and 0.7 million between municipalities; 330,000
# immigrations and 220,000 emigrations; 167,000 births; 169,000 deaths; 64,000 marriages plus 19,000
# registered partnerships and about 30,000 divorces plus 5,000 dissolved partnerships (events that write
# a message for each partner); name changes (geslachts- and voornaamswijzigingen) estimated at 10,000
# messages; corrections are not published, estimated at 2% of the feed. Only the relative weights
# matter: each message's kind is drawn with them, so 10,000 messages hold roughly 3,500 moves within and
# 2,300 between municipalities, 1,200 immigrations, 750 emigrations, 600 births, 600 deaths, 550
# marriage and 180 divorce messages, 30 name changes and 240 corrections (seed 1, small register).
EVENTS_PER_YEAR: dict[Gebeurtenis, int] = {
    Gebeurtenis.VERHUISD_BINNEN: 1_000_000,
    Gebeurtenis.VERHUISD_BUITEN: 700_000,
    Gebeurtenis.IMMIGRATIE: 330_000,
    Gebeurtenis.EMIGRATIE: 220_000,
    Gebeurtenis.GEBOORTE: 167_000,
    Gebeurtenis.OVERLEDEN: 169_000,
    Gebeurtenis.VERBINTENIS_AANGEGAAN: 83_000,
    Gebeurtenis.VERBINTENIS_ONTBONDEN: 35_000,
    Gebeurtenis.NAAM_GEWIJZIGD: 10_000,
    Gebeurtenis.GECORRIGEERD: 60_000,
    # Corrections of a registered death (a wrong date, or a death withdrawn) are not published; estimated
    # at 1% of deaths.
    Gebeurtenis.OVERLIJDEN_GECORRIGEERD: 1_700,
}
# Frequent destinations of emigrants from the Netherlands (CBS), as codes of BRP table 34 "Landen", with rough
# weights: 9089 Duitsland, 5010 België, 5002 Frankrijk, 6018 Luxemburg (the neighbours; rules.ISO_ALIASES).
EMIGRATION_COUNTRIES = (("9089", 14), ("5010", 12), ("5002", 5), ("6018", 1))
# Municipalities register on working hours: messages are spread over 08:00–18:00 (Amsterdam).
FIRST_HOUR, LAST_HOUR = 8, 18
# How many times the simulator tries another person or event when one does not fit (say, no one is married yet).
_TRIES = 20


def state_from_proto(person: brp_pb2.Person) -> PersonState:
    """A person as ListPersons returns it, in the rules' terms."""
    a = person.address if person.HasField("address") else None
    sexes = {brp_pb2.SEX_MALE: "M", brp_pb2.SEX_FEMALE: "V"}
    statuses = {
        brp_pb2.MARITAL_STATUS_MARRIED: MaritalStatus.GEHUWD,
        brp_pb2.MARITAL_STATUS_REGISTERED_PARTNERSHIP: MaritalStatus.PARTNERSCHAP,
        brp_pb2.MARITAL_STATUS_DIVORCED: MaritalStatus.GESCHEIDEN,
        brp_pb2.MARITAL_STATUS_WIDOWED: MaritalStatus.WEDUWE,
    }
    birth = from_proto_date(person.birth_date)
    return PersonState(
        bsn=person.bsn,
        given_names=person.given_names,
        surname_prefix=person.surname_prefix,
        surname=person.surname,
        birth_date=birth or dt.date(2000, 1, 1),
        sex=sexes.get(person.sex, "O"),
        address=None
        if a is None
        else Address(a.street, a.house_number, a.postcode, a.city, a.municipality_code, a.house_number_addition),
        marital_status=statuses.get(person.marital_status, MaritalStatus.ONGEHUWD),
        death_date=from_proto_date(person.death_date) if person.HasField("death_date") else None,
        emigration_date=from_proto_date(person.emigration_date) if person.HasField("emigration_date") else None,
        emigration_country_code=person.emigration_country_code,
        last_sequence=person.last_sequence,
        a_nummer=person.a_nummer,
        versienummer=person.versienummer,
        # The stays abroad: a departure may not come before the last return (rules._emigrate).
        abroad=tuple(
            StayAbroad(
                stay.country_code,
                from_proto_date(stay.start_date) or dt.date.min,
                from_proto_date(stay.end_date) if stay.HasField("end_date") else None,
            )
            for stay in person.residence_abroad
        ),
    )


def _verblijfplaats(address: Address) -> Verblijfplaats:
    return Verblijfplaats(
        address.street,
        address.house_number,
        address.postcode,
        address.city,
        address.municipality_code,
        address.house_number_addition,
    )


class _Day:
    """The register as the simulator believes it during the day, so every message it writes applies cleanly."""

    def __init__(self, persons: Sequence[PersonState], day: dt.date, seed: int, *, synthetic_bsns: bool) -> None:
        self.day = day
        self.rng = random.Random(seed)
        self.fake = seeding.new_faker(seed)
        self.persons = {p.bsn: p for p in persons}
        self.residents = [p.bsn for p in persons if p.is_resident and p.address is not None]
        # New persons (births, first immigrations) get test-range BSNs; synthetic ones only on opt-in.
        self.new_bsns = seeding.bsn_source(set(self.persons), synthetic=synthetic_bsns)

    def message_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def resident(self, predicate: Callable[[PersonState], bool] = lambda _p: True) -> PersonState | None:
        for _ in range(_TRIES):
            if not self.residents:
                return None
            candidate = self.persons[self.rng.choice(self.residents)]
            if candidate.is_resident and candidate.address is not None and predicate(candidate):
                return candidate
        return None

    def mutatie(self, person: PersonState | None, bsn: str, event: Gebeurtenis, **data: object) -> Mutatie:
        sequence = (person.last_sequence if person else 0) + 1
        address = data.get("verblijfplaats")
        code = (
            address.gemeentecode
            if isinstance(address, Verblijfplaats)
            else (person.address.municipality_code if person and person.address else "0363")
        )
        effective = data.pop("datum_ingang", self.day)
        assert isinstance(effective, dt.date)
        # The record's identification: a new person's first inscription is version 0, every change one more.
        version = person.versienummer + 1 if person else 0
        a_nummer = person.a_nummer if person and person.a_nummer else a_nummer_for_bsn(bsn)
        return Mutatie(
            self.message_id(),
            bsn,
            sequence,
            code,
            event,
            effective,
            a_nummer=a_nummer,
            versienummer=version,
            **data,  # type: ignore[arg-type]
        )

    def record(self, mutatie: Mutatie) -> bool:
        """Applies the message to the simulator's copy; False (and nothing kept) when the rules refuse it."""
        before = self.persons.get(mutatie.bsn)
        try:
            after = rules.apply(before, mutatie)
        except RuleViolationError:
            return False
        self.persons[mutatie.bsn] = after
        if before is None and after.is_resident:
            self.residents.append(after.bsn)
        elif before is not None and before.is_resident and not after.is_resident:
            self.residents.remove(after.bsn)
        elif before is not None and not before.is_resident and after.is_resident:
            self.residents.append(after.bsn)
        return True

    # ---- one generator per kind of event; each returns the messages of one event ----

    def birth(self) -> list[Mutatie]:
        # Births are registered within three working days; the baby lives with a parent.
        born = self.day - dt.timedelta(days=self.rng.randint(0, 3))
        sex = self.rng.choice("MV")
        given, prefix, surname = seeding.random_names(self.rng, self.fake, sex)
        parent = self.resident()
        address = parent.address if parent and parent.address else seeding.random_address(self.rng, self.fake)
        if parent is not None:
            prefix, surname = parent.surname_prefix, parent.surname
        bsn = next(self.new_bsns, None)
        if bsn is None:  # the test range is used up and synthetic numbers were not asked for
            return []
        return [
            self.mutatie(
                None,
                bsn,
                Gebeurtenis.GEBOORTE,
                datum_ingang=born,
                persoon=Persoon(given, prefix, surname, born, sex),
                verblijfplaats=_verblijfplaats(address),
            )
        ]

    def immigration(self) -> list[Mutatie]:
        # A return comes after the day of departure: a stay abroad lasts at least a day.
        emigrants = [
            p
            for p in self.persons.values()
            if p.emigration_date is not None and p.emigration_date < self.day and p.death_date is None
        ]
        address = _verblijfplaats(seeding.random_address(self.rng, self.fake))
        if emigrants and self.rng.random() < 0.25:
            returning = self.rng.choice(emigrants)
            return [self.mutatie(returning, returning.bsn, Gebeurtenis.IMMIGRATIE, verblijfplaats=address)]
        bsn = next(self.new_bsns, None)
        if bsn is None:  # the test range is used up and synthetic numbers were not asked for
            return []
        sex = self.rng.choice("MV")
        given, prefix, surname = seeding.random_names(self.rng, self.fake, sex)
        born = seeding.years_before(self.day, self.rng.randint(0, 60)) - dt.timedelta(days=self.rng.randint(0, 364))
        return [
            self.mutatie(
                None,
                bsn,
                Gebeurtenis.IMMIGRATIE,
                persoon=Persoon(given, prefix, surname, born, sex),
                verblijfplaats=address,
            )
        ]

    def move_within(self) -> list[Mutatie]:
        person = self.resident(lambda p: p.address is not None)
        if person is None or person.address is None:
            return []
        code = person.address.municipality_code
        known = code in places.BY_CODE
        new = seeding.random_address(self.rng, self.fake, municipality_code=code if known else None)
        if not known:
            new = dataclasses.replace(new, municipality_code=code, city=person.address.city)
        return [self.mutatie(person, person.bsn, Gebeurtenis.VERHUISD_BINNEN, verblijfplaats=_verblijfplaats(new))]

    def move_to_other(self) -> list[Mutatie]:
        person = self.resident()
        if person is None or person.address is None:
            return []
        new = seeding.random_address(self.rng, self.fake)
        if new.municipality_code == person.address.municipality_code:
            return []
        return [self.mutatie(person, person.bsn, Gebeurtenis.VERHUISD_BUITEN, verblijfplaats=_verblijfplaats(new))]

    def emigration(self) -> list[Mutatie]:
        person = self.resident()
        if person is None:
            return []
        countries = [code for code, _ in EMIGRATION_COUNTRIES]
        country = self.rng.choices(countries, weights=[weight for _, weight in EMIGRATION_COUNTRIES])[0]
        return [self.mutatie(person, person.bsn, Gebeurtenis.EMIGRATIE, emigratie=Emigratie(country, self.day))]

    def death(self) -> list[Mutatie]:
        person = self.resident()
        if person is None or person.address is None:
            return []
        died = self.day - dt.timedelta(days=self.rng.randint(0, 2))
        died = max(died, person.birth_date)
        return [
            self.mutatie(
                person,
                person.bsn,
                Gebeurtenis.OVERLEDEN,
                overlijden=Overlijden(died, person.address.municipality_code),
            )
        ]

    def death_correction(self) -> list[Mutatie]:
        deceased = [p for p in self.persons.values() if p.death_date is not None]
        if not deceased:
            return []
        person = self.rng.choice(sorted(deceased, key=lambda p: p.bsn))
        if self.rng.random() < 0.3:  # registered wrongly: the person lives
            return [self.mutatie(person, person.bsn, Gebeurtenis.OVERLIJDEN_GECORRIGEERD)]
        assert person.death_date is not None
        corrected = max(person.death_date - dt.timedelta(days=self.rng.randint(1, 3)), person.birth_date)
        return [
            self.mutatie(
                person, person.bsn, Gebeurtenis.OVERLIJDEN_GECORRIGEERD, overlijden=Overlijden(corrected, None)
            )
        ]

    def union(self) -> list[Mutatie]:
        def eligible(p: PersonState) -> bool:
            single = p.marital_status not in (MaritalStatus.GEHUWD, MaritalStatus.PARTNERSCHAP)
            return single and rules.age_on(p.birth_date, self.day) >= rules.MINIMUM_UNION_AGE

        first = self.resident(eligible)
        second = self.resident(lambda p: eligible(p) and first is not None and p.bsn != first.bsn)
        if first is None:
            return []
        kind = "H" if self.rng.random() < 64 / 83 else "P"
        result = [
            self.mutatie(
                first,
                first.bsn,
                Gebeurtenis.VERBINTENIS_AANGEGAAN,
                huwelijk=HuwelijkPartnerschap(kind, second.bsn if second else None, self.day),
            )
        ]
        if second is not None:
            result.append(
                self.mutatie(
                    second,
                    second.bsn,
                    Gebeurtenis.VERBINTENIS_AANGEGAAN,
                    huwelijk=HuwelijkPartnerschap(kind, first.bsn, self.day),
                )
            )
        return result

    def dissolution(self) -> list[Mutatie]:
        person = self.resident(lambda p: p.marital_status in (MaritalStatus.GEHUWD, MaritalStatus.PARTNERSCHAP))
        if person is None:
            return []
        kind = "H" if person.marital_status is MaritalStatus.GEHUWD else "P"
        union = HuwelijkPartnerschap(kind, person.partner_bsn, None, self.day, "S")
        result = [self.mutatie(person, person.bsn, Gebeurtenis.VERBINTENIS_ONTBONDEN, huwelijk=union)]
        partner = self.persons.get(person.partner_bsn or "")
        if partner is not None and partner.is_resident and partner.partner_bsn == person.bsn:
            partner_union = HuwelijkPartnerschap(kind, person.bsn, None, self.day, "S")
            result.append(self.mutatie(partner, partner.bsn, Gebeurtenis.VERBINTENIS_ONTBONDEN, huwelijk=partner_union))
        return result

    def name_change(self) -> list[Mutatie]:
        person = self.resident()
        if person is None:
            return []
        if self.rng.random() < 0.5:
            prefix, surname = seeding.split_surname(self.fake.last_name())
            persoon = Persoon(voorvoegsel=prefix, geslachtsnaam=surname)
        else:
            persoon = Persoon(voornamen=seeding.random_names(self.rng, self.fake, person.sex)[0])
        return [self.mutatie(person, person.bsn, Gebeurtenis.NAAM_GEWIJZIGD, persoon=persoon)]

    def correction(self) -> list[Mutatie]:
        person = self.resident()
        if person is None:
            return []
        # Most corrections that matter to schools fix a birth date by a few days or a digit.
        shift = dt.timedelta(days=self.rng.choice((-1, 1)) * self.rng.randint(1, 40))
        corrected = min(person.birth_date + shift, self.day)
        return [self.mutatie(person, person.bsn, Gebeurtenis.GECORRIGEERD, persoon=Persoon(geboortedatum=corrected))]


_GENERATORS: dict[Gebeurtenis, Callable[[_Day], list[Mutatie]]] = {
    Gebeurtenis.VERHUISD_BINNEN: _Day.move_within,
    Gebeurtenis.VERHUISD_BUITEN: _Day.move_to_other,
    Gebeurtenis.IMMIGRATIE: _Day.immigration,
    Gebeurtenis.EMIGRATIE: _Day.emigration,
    Gebeurtenis.GEBOORTE: _Day.birth,
    Gebeurtenis.OVERLEDEN: _Day.death,
    Gebeurtenis.OVERLIJDEN_GECORRIGEERD: _Day.death_correction,
    Gebeurtenis.VERBINTENIS_AANGEGAAN: _Day.union,
    Gebeurtenis.VERBINTENIS_ONTBONDEN: _Day.dissolution,
    Gebeurtenis.NAAM_GEWIJZIGD: _Day.name_change,
    Gebeurtenis.GECORRIGEERD: _Day.correction,
}


def simulate_day(
    persons: Sequence[PersonState], day: dt.date, count: int = 10_000, seed: int = 1, *, synthetic_bsns: bool = False
) -> list[Mutatie]:
    """`count` messages for one day, in registration order, that apply cleanly to `persons` (the same for a seed).

    An event that does not fit the register (a divorce when nobody is married) is replaced by another draw;
    so is a birth or first immigration once the test range's free BSNs are used up, unless the caller opts
    in to synthetic BSNs (numbers a real person may hold, see identifiers.synthetic_bsns).
    """
    state = _Day(persons, day, seed, synthetic_bsns=synthetic_bsns)
    kinds = list(EVENTS_PER_YEAR)
    weights = list(EVENTS_PER_YEAR.values())
    produced: list[Mutatie] = []
    failures = 0
    while len(produced) < count:
        kind = state.rng.choices(kinds, weights=weights)[0]
        batch = _GENERATORS[kind](state)[: count - len(produced)]
        kept = [m for m in batch if state.record(m)]
        produced.extend(kept)
        failures = 0 if kept else failures + 1
        if failures > 1000:
            raise RuntimeError("the register has no persons the simulator can change; seed the sandbox first")
    start = dt.datetime.combine(day, dt.time(FIRST_HOUR), tzinfo=REGISTER_TIMEZONE)
    seconds = sorted(state.rng.uniform(0, (LAST_HOUR - FIRST_HOUR) * 3600) for _ in produced)
    return [
        dataclasses.replace(m, tijdstip_registratie=(start + dt.timedelta(seconds=s)).astimezone(dt.UTC))
        for m, s in zip(produced, seconds, strict=True)
    ]


# ---- output ----


def write_file(mutaties: Sequence[Mutatie], path: Path) -> None:
    """The day as one <MutatieBericht> document."""
    path.write_bytes(xml_codec.batch_document(mutaties, created=dt.datetime.now(dt.UTC), source="simulator"))


def write_directory(mutaties: Sequence[Mutatie], directory: Path) -> None:
    """The day as one <Mutatie> document per message, named so that a sorted listing is registration order."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, mutatie in enumerate(mutaties):
        (directory / f"{index:06d}-{mutatie.bericht_id}.xml").write_bytes(xml_codec.message_document(mutatie))


# ---- reading the sandbox and streaming into it (public API only) ----


async def read_persons(stub: brp_pb2_grpc.BrpServiceStub, metadata: Sequence[tuple[str, str]]) -> list[PersonState]:
    """Every person of the sandbox, through ListPersons."""
    persons: list[PersonState] = []
    token = ""
    while True:
        page = await stub.ListPersons(
            brp_pb2.ListPersonsRequest(page=common_pb2.PageRequest(page_size=MAX_PAGE_SIZE, page_token=token)),
            metadata=tuple(metadata),
        )
        persons.extend(state_from_proto(p) for p in page.persons)
        token = page.page.next_page_token
        if not token:
            return persons


@dataclass
class StreamReport:
    submitted: int = 0
    documents: int = 0
    applied: int = 0
    rejected: int = 0
    seconds: float = 0.0


async def stream_day(
    mutaties: Sequence[Mutatie],
    submit: Callable[[bytes], Awaitable[brp_pb2.SubmitChangesResponse]],
    *,
    speed: float,
    max_seconds: float,
    max_batch: int = 500,
) -> StreamReport:
    """Submits the messages as their registration times come due at `speed` times real time.

    Bounded: stops after max_seconds even if messages remain; sends at most max_batch per document.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    report = StreamReport()
    if not mutaties:
        return report
    first = mutaties[0].tijdstip_registratie or dt.datetime.now(dt.UTC)
    began = time.monotonic()
    index = 0
    while index < len(mutaties):
        elapsed = time.monotonic() - began
        if elapsed >= max_seconds:
            break
        simulated_now = first + dt.timedelta(seconds=elapsed * speed)
        due = index
        while due < len(mutaties) and due - index < max_batch:
            moment = mutaties[due].tijdstip_registratie or first
            if moment > simulated_now:
                break
            due += 1
        if due == index:
            next_moment = mutaties[index].tijdstip_registratie or first
            wait = (next_moment - simulated_now).total_seconds() / speed
            await asyncio.sleep(min(max(wait, 0.001), max_seconds - elapsed))
            continue
        answer = await submit(xml_codec.batch_document(mutaties[index:due], source="simulator"))
        report.documents += 1
        report.submitted += due - index
        report.applied += sum(r.outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED for r in answer.results)
        report.rejected += sum(r.outcome == brp_pb2.MESSAGE_OUTCOME_REJECTED for r in answer.results)
        index = due
    report.seconds = time.monotonic() - began
    return report


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    date: str = typer.Option(..., help="The day to simulate, YYYY-MM-DD."),
    count: int = typer.Option(10_000, min=1, help="Messages in the day."),
    seed: int = typer.Option(1, help="Random seed: the same seed gives the same day."),
    out: Path | None = typer.Option(None, help="Write the day to this file (or directory, with --directory)."),  # noqa: B008
    directory: bool = typer.Option(False, help="Write one <Mutatie> document per message into --out."),
    address: str = typer.Option("", help="Read persons from (and stream into) this sandbox, e.g. 127.0.0.1:50051."),
    sandbox_key: str = typer.Option("", envvar="REGISTRY_SANDBOX_KEY", help="The sandbox's x-sandbox-key."),
    seed_size: str = typer.Option("small", help="Without --address: persons as SeedRegister makes them, this size."),
    register_seed: int = typer.Option(20260101, help="Without --address: the seed the register was seeded with."),
    stream: bool = typer.Option(False, help="Submit the day into the sandbox instead of writing it."),
    speed: float = typer.Option(60.0, min=0.001, help="With --stream: times real speed."),
    max_seconds: float = typer.Option(600.0, min=0.1, help="With --stream: stop after this many seconds."),
    synthetic_bsns: bool = typer.Option(
        False,
        help="WARNING: numbers a real person may hold. Give new persons (and, without --address, seeded persons "
        "beyond the test range) synthetic BSNs once the official test range is used up.",
    ),
) -> None:
    day = dt.date.fromisoformat(date)
    if stream and not (address and sandbox_key):
        raise typer.BadParameter("--stream needs --address and --sandbox-key")
    if not stream and out is None:
        raise typer.BadParameter("give --out (or --stream)")
    asyncio.run(
        _run(
            day,
            count,
            seed,
            out,
            directory,
            address,
            sandbox_key,
            seed_size,
            register_seed,
            stream,
            speed,
            max_seconds,
            synthetic_bsns,
        )
    )


async def _run(
    day: dt.date,
    count: int,
    seed: int,
    out: Path | None,
    directory: bool,
    address: str,
    sandbox_key: str,
    seed_size: str,
    register_seed: int,
    stream: bool,
    speed: float,
    max_seconds: float,
    synthetic_bsns: bool = False,
) -> None:
    metadata = ((SANDBOX_KEY, sandbox_key),)
    if address:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = brp_pb2_grpc.BrpServiceStub(channel)
            persons = await read_persons(stub, metadata)
            mutaties = simulate_day(persons, day, count, seed, synthetic_bsns=synthetic_bsns)
            if stream:

                async def submit(document: bytes) -> brp_pb2.SubmitChangesResponse:
                    return await stub.SubmitChanges(
                        brp_pb2.SubmitChangesRequest(xml_document=document), metadata=metadata
                    )

                report = await stream_day(mutaties, submit, speed=speed, max_seconds=max_seconds)
                typer.echo(
                    f"submitted {report.submitted} messages in {report.documents} documents over "
                    f"{report.seconds:.1f}s: {report.applied} applied, {report.rejected} rejected"
                )
                return
    else:
        persons = seeding.seed_persons(seed_size, register_seed, day, synthetic_bsns=synthetic_bsns)
        mutaties = simulate_day(persons, day, count, seed, synthetic_bsns=synthetic_bsns)
    assert out is not None
    if directory:
        write_directory(mutaties, out)
    else:
        write_file(mutaties, out)
    typer.echo(f"wrote {len(mutaties)} messages for {day} to {out}")


if __name__ == "__main__":
    app()
