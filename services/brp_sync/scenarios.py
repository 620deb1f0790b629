"""The scenario persons of scenarios.toml on a seed date: their persons and scheduled BRP messages (pure)."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from services.brp_sync.rules import (
    Address,
    Emigratie,
    Gebeurtenis,
    Mutatie,
    Overlijden,
    PersonState,
    Persoon,
    Verblijfplaats,
)
from services.common.identifiers import a_nummer_for_bsn, is_test_bsn


@dataclass(frozen=True)
class DateRule:
    """A date relative to the seed date: `years` and `days` from it, or from the first `anchor` (MM-DD) after it.

    The anchor lets a person be defined against a fixed day of the year (the 1 February count date of
    primary schools, WPO art. 39 and the Regeling bekostiging) whatever day the sandbox was seeded on.
    """

    years: int = 0
    days: int = 0
    anchor: str = ""

    def on(self, seed_date: dt.date) -> dt.date:
        base = seed_date
        if self.anchor:
            month, day = (int(part) for part in self.anchor.split("-"))
            base = dt.date(seed_date.year, month, day)
            if base <= seed_date:
                base = dt.date(seed_date.year + 1, month, day)
        return _add_years(base, self.years) + dt.timedelta(days=self.days)


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True)
class ScenarioEvent:
    """One BRP message of a scenario, `days` after the seed date, with what it changes."""

    days: int
    event: Gebeurtenis
    country: str = ""
    surname: str = ""
    birth: DateRule | None = None


@dataclass(frozen=True)
class ScenarioPerson:
    """One test person of the table: who, what happens when, and the feedback a school sees."""

    key: str
    title: str
    bsn: str  # "" for the person without a BSN (not in BRP)
    given_names: str
    surname: str
    sex: str
    birth: DateRule
    house_number: int
    feedback: str
    enrolled_elsewhere: bool = False
    events: tuple[ScenarioEvent, ...] = ()


@dataclass(frozen=True)
class ScheduledMessage:
    """A scenario's BRP message on a sandbox's calendar: sent once the sandbox clock reaches `effective_date`."""

    person_key: str
    step: int
    bsn: str
    effective_date: dt.date
    event: Gebeurtenis
    country: str = ""
    surname: str = ""
    birth_date: dt.date | None = None

    def payload(self) -> str:
        """What the message changes, as stored with it."""
        return json.dumps(
            {
                "country": self.country,
                "surname": self.surname,
                "birth_date": self.birth_date.isoformat() if self.birth_date else "",
            }
        )


@dataclass(frozen=True)
class Table:
    """The scenario table: the shared address and the persons, in the file's order."""

    address: Address
    persons: tuple[ScenarioPerson, ...]


def parse(text: str) -> Table:
    raw = tomllib.loads(text)
    place = raw["address"]
    address = Address(
        street=place["street"],
        house_number=0,
        postcode=place["postcode"],
        city=place["city"],
        municipality_code=place["municipality_code"],
    )
    persons = tuple(_person(entry, number) for number, entry in enumerate(raw["person"], start=1))
    bsns = [p.bsn for p in persons if p.bsn]
    if len(set(bsns)) != len(bsns) or not all(is_test_bsn(bsn) for bsn in bsns):
        raise ValueError("scenario persons need distinct BSNs of the official test range (999970008-999999990)")
    return Table(address, persons)


def _rule(raw: dict[str, Any]) -> DateRule:
    return DateRule(years=int(raw.get("years", 0)), days=int(raw.get("days", 0)), anchor=str(raw.get("anchor", "")))


def _person(raw: dict[str, Any], number: int) -> ScenarioPerson:
    return ScenarioPerson(
        key=raw["key"],
        title=raw["title"],
        bsn=raw["bsn"],
        given_names=raw["given_names"],
        surname=raw["surname"],
        sex=raw["sex"],
        birth=_rule(raw["birth"]),
        house_number=number,
        feedback=raw["feedback"],
        enrolled_elsewhere=bool(raw.get("enrolled_elsewhere", False)),
        events=tuple(
            ScenarioEvent(
                days=int(e["days"]),
                event=Gebeurtenis(e["event"]),
                country=e.get("country", ""),
                surname=e.get("surname", ""),
                birth=_rule(e["birth"]) if "birth" in e else None,
            )
            for e in raw.get("event", [])
        ),
    )


@cache
def table() -> Table:
    """The table shipped with the package (services/brp_sync/scenarios.toml)."""
    return parse(resources.files("services.brp_sync").joinpath("scenarios.toml").read_text(encoding="utf-8"))


def reserved_bsns() -> frozenset[str]:
    """The scenario persons' BSNs: no seed or simulated day hands them to anyone else."""
    return frozenset(p.bsn for p in table().persons if p.bsn)


def address_of(person: ScenarioPerson) -> Address:
    shared = table().address
    return Address(
        street=shared.street,
        house_number=person.house_number,
        postcode=shared.postcode,
        city=shared.city,
        municipality_code=shared.municipality_code,
    )


def person_state(person: ScenarioPerson, seed_date: dt.date) -> PersonState:
    """The person as seeded on `seed_date` (only for a person with a BSN)."""
    return PersonState(
        bsn=person.bsn,
        a_nummer=a_nummer_for_bsn(person.bsn) if person.bsn else "",
        given_names=person.given_names,
        surname_prefix="",
        surname=person.surname,
        birth_date=person.birth.on(seed_date),
        sex=person.sex,
        address=address_of(person),
    )


def seeded_persons(seed_date: dt.date) -> list[PersonState]:
    return [person_state(p, seed_date) for p in table().persons if p.bsn]


def schedule(seed_date: dt.date) -> list[ScheduledMessage]:
    """Every scheduled message of the table for a sandbox seeded on `seed_date`, in date order."""
    messages = [
        ScheduledMessage(
            person_key=person.key,
            step=step,
            bsn=person.bsn,
            effective_date=seed_date + dt.timedelta(days=event.days),
            event=event.event,
            country=event.country,
            surname=event.surname,
            birth_date=event.birth.on(seed_date) if event.birth else None,
        )
        for person in table().persons
        for step, event in enumerate(person.events, start=1)
    ]
    return sorted(messages, key=lambda m: (m.effective_date, m.person_key, m.step))


def by_key(key: str) -> ScenarioPerson:
    return next(p for p in table().persons if p.key == key)


def from_payload(
    *, person_key: str, step: int, bsn: str, effective_date: dt.date, event: str, payload: str
) -> ScheduledMessage:
    """A scheduled message as stored (ScheduledMessage.payload) back in the domain's terms."""
    data = json.loads(payload)
    return ScheduledMessage(
        person_key=person_key,
        step=step,
        bsn=bsn,
        effective_date=effective_date,
        event=Gebeurtenis(event),
        country=data.get("country", ""),
        surname=data.get("surname", ""),
        birth_date=dt.date.fromisoformat(data["birth_date"]) if data.get("birth_date") else None,
    )


def mutatie(message: ScheduledMessage, current: PersonState | None, *, message_id: str) -> Mutatie:
    """The BRP message that carries a scheduled change to the person as BRP holds them now.

    Volgnummer and Versienummer follow the record as it is when the message is sent (a vendor may have sent
    messages about the person meanwhile), as a municipality's next message would.
    """
    person = by_key(message.person_key)
    home = address_of(person)
    municipality = current.address.municipality_code if current and current.address else home.municipality_code
    changes: dict[str, Any] = {}
    if message.event is Gebeurtenis.OVERLEDEN:
        changes["overlijden"] = Overlijden(message.effective_date, municipality)
    elif message.event is Gebeurtenis.EMIGRATIE:
        changes["emigratie"] = Emigratie(message.country, message.effective_date)
    elif message.event is Gebeurtenis.IMMIGRATIE:
        changes["verblijfplaats"] = Verblijfplaats(
            home.street, home.house_number, home.postcode, home.city, home.municipality_code
        )
        municipality = home.municipality_code
    elif message.event is Gebeurtenis.GECORRIGEERD:
        changes["persoon"] = Persoon(geboortedatum=message.birth_date)
    elif message.event is Gebeurtenis.NAAM_GEWIJZIGD:
        changes["persoon"] = Persoon(geslachtsnaam=message.surname)
    else:
        raise ValueError(f"scenario event {message.event} is not supported")
    return Mutatie(
        bericht_id=message_id,
        bsn=message.bsn,
        volgnummer=(current.last_sequence if current else 0) + 1,
        gemeentecode=municipality,
        gebeurtenis=message.event,
        datum_ingang=message.effective_date,
        a_nummer=current.a_nummer if current and current.a_nummer else a_nummer_for_bsn(message.bsn),
        versienummer=(current.versienummer if current else 0) + 1,
        **changes,
    )
