"""A day of register traffic as plain data: the messages, their time of day, the seasonal mix, and the JSONL file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.brp_sync.rules import Gebeurtenis, Mutatie, PersonState
from services.brp_sync.xml_codec import message_document
from services.common.clock import REGISTER_TIMEZONE

# 2: BRP messages in the mutatie v2 namespace (issue 13); a version 1 file holds messages BRP now refuses.
FORMAT_VERSION = 2
Kind = Literal["register", "change", "end", "delete", "brp"]
Phase = Literal["setup", "day"]
SECTORS = ("po", "vo", "mbo", "ho")

# Ages (on the day) of the pupils a school of each sector registers: ROD's funded ages (services/rod/README.md).
PUPIL_AGES = {"po": (4, 11), "vo": (12, 16), "mbo": (16, 21), "ho": (18, 24)}
# Highest year (groep / leerjaar) per sector; a pupil's year follows from its age.
TOP_YEAR = {"po": 8, "vo": 6, "mbo": 4, "ho": 4}
FIRST_AGE = {"po": 4, "vo": 12, "mbo": 16, "ho": 18}

# Average enrolment messages per school on an ordinary working day (no season), from DUO's yearly volumes
# scaled to one school: a primary school registers ~40 pupils a year spread over the year (4th birthdays and
# movers), vo/mbo/ho register almost all of their intake around the start of the school year.
BASE_REGISTRATIONS = {"po": 0.2, "vo": 0.1, "mbo": 0.3, "ho": 0.2}
# Extra registrations per school on the busiest intake day (the first school day), per sector.
INTAKE_PEAK = {"po": 3.0, "vo": 25.0, "mbo": 20.0, "ho": 30.0}
# Share of existing enrolments that get a change (new period: next group/year) on the busiest day of the
# school-year transition, and on an ordinary day.
TRANSITION_CHANGE_SHARE = 0.5
ORDINARY_CHANGE_SHARE = 0.01
# Share of existing enrolments ended: leavers are mostly sent around the start of the year.
TRANSITION_END_SHARE = 0.06
ORDINARY_END_SHARE = 0.003
# Around a count date, schools correct their registrations: this share of enrolments gets a correction per day.
COUNT_DATE_CORRECTION_SHARE = 0.03
# Share of the day's registrations that were sent by mistake and deleted later the same day.
DELETED_BY_MISTAKE = 0.03
# Share of the day's registrations that are a pupil moving from another school in the traffic (the other
# school ends the old enrolment later that day; until then ROD sees a double enrolment).
SCHOOL_SWITCHES = 0.05
# Weekends carry almost no school traffic.
WEEKEND_FACTOR = 0.05
# Schools work office hours; half the messages come in a morning peak around 10:00.
OFFICE_HOURS = (8.0, 16.5)
MORNING_PEAK, MORNING_SPREAD = 10.0, 1.0


@dataclass(frozen=True)
class Period:
    begin: dt.date
    location: str
    course: str
    year: int
    end: dt.date | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "begin": self.begin.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "location": self.location,
            "course": self.course,
            "year": self.year,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Period:
        return cls(
            begin=dt.date.fromisoformat(data["begin"]),
            end=dt.date.fromisoformat(data["end"]) if data.get("end") else None,
            location=str(data["location"]),
            course=str(data["course"]),
            year=int(data["year"]),
        )


@dataclass(frozen=True)
class Message:
    """One message of the day. `ref` names the enrolment (school messages) or the person (BRP) it is about.

    A change, end or delete names its enrolment by `ref`, the id the registration in this file gave it;
    the replayer maps it to the enrolment id ROD assigned. `at` is the time of day it was sent (None in the
    setup phase: the enrolments that exist before the day, sent before timing starts).
    """

    kind: Kind
    phase: Phase
    at: dt.datetime | None
    ref: str
    id: str  # the document id (school messages) or BRP message id: the cause id of the feedback it causes
    school: str = ""
    bsn: str = ""
    periods: tuple[Period, ...] = ()
    sequence: int = 0
    end_date: dt.date | None = None
    xml: str = ""
    event: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "phase": self.phase,
            "at": self.at.astimezone(REGISTER_TIMEZONE).isoformat(timespec="milliseconds") if self.at else None,
            "ref": self.ref,
            "id": self.id,
        }
        if self.kind == "brp":
            data |= {"bsn": self.bsn, "event": self.event, "xml": self.xml}
            return data
        data["school"] = self.school
        if self.bsn:
            data["bsn"] = self.bsn
        if self.periods:
            data["periods"] = [p.to_json() for p in self.periods]
        if self.sequence:
            data["sequence"] = self.sequence
        if self.end_date:
            data["end_date"] = self.end_date.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        kind = data["kind"]
        if kind not in ("register", "change", "end", "delete", "brp"):
            raise ValueError(f"unknown message kind {kind!r}")
        phase = data.get("phase", "day")
        if phase not in ("setup", "day"):
            raise ValueError(f"unknown phase {phase!r}")
        at = dt.datetime.fromisoformat(data["at"]) if data.get("at") else None
        if phase == "day" and at is None:
            raise ValueError("a message of the day needs its time ('at')")
        return cls(
            kind=kind,
            phase=phase,
            at=at,
            ref=str(data["ref"]),
            id=str(data["id"]),
            school=str(data.get("school", "")),
            bsn=str(data.get("bsn", "")),
            periods=tuple(Period.from_json(p) for p in data.get("periods", ())),
            sequence=int(data.get("sequence", 0)),
            end_date=dt.date.fromisoformat(data["end_date"]) if data.get("end_date") else None,
            xml=str(data.get("xml", "")),
            event=str(data.get("event", "")),
        )


@dataclass(frozen=True)
class School:
    institution_code: str
    sector: str
    offerings: tuple[tuple[str, str], ...]  # (location_code, course_code), valid all through the traffic

    def to_json(self) -> dict[str, Any]:
        return {"institution_code": self.institution_code, "sector": self.sector, "offerings": self.offerings}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> School:
        offerings = tuple((str(o[0]), str(o[1])) for o in data["offerings"])
        return cls(str(data["institution_code"]), str(data["sector"]), offerings)


@dataclass(frozen=True)
class Header:
    """What a recording needs to be played back: the sandbox it was made for and how it was made."""

    date: dt.date
    seed: int
    seed_size: str
    register_seed: int
    schools: tuple[School, ...]
    brp_source: str
    fingerprint: str
    counts: dict[str, int] = field(default_factory=dict)
    # The sandbox was seeded with synthetic BSNs (SeedSandboxRequest.synthetic_bsns): an explicit opt-in.
    synthetic_bsns: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "header",
            "version": FORMAT_VERSION,
            "date": self.date.isoformat(),
            "seed": self.seed,
            "seed_size": self.seed_size,
            "register_seed": self.register_seed,
            "brp_source": self.brp_source,
            "fingerprint": self.fingerprint,
            "counts": self.counts,
            "synthetic_bsns": self.synthetic_bsns,
            "schools": [s.to_json() for s in self.schools],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Header:
        if data.get("kind") != "header":
            raise ValueError("the first line must be the header ({'kind': 'header', ...})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {data.get('version')!r} is not {FORMAT_VERSION}; record the day again")
        return cls(
            date=dt.date.fromisoformat(data["date"]),
            seed=int(data["seed"]),
            seed_size=str(data["seed_size"]),
            register_seed=int(data["register_seed"]),
            schools=tuple(School.from_json(s) for s in data["schools"]),
            brp_source=str(data.get("brp_source", "")),
            fingerprint=str(data.get("fingerprint", "")),
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
            synthetic_bsns=bool(data.get("synthetic_bsns", False)),
        )


@dataclass(frozen=True)
class Day:
    header: Header
    messages: tuple[Message, ...]

    @property
    def setup(self) -> list[Message]:
        return [m for m in self.messages if m.phase == "setup"]

    @property
    def timed(self) -> list[Message]:
        return [m for m in self.messages if m.phase == "day"]


# ---- the file ----


def write_day(day: Day, path: Path) -> None:
    """One JSON object a line: the header, then every message in sending order."""
    with path.open("w") as handle:
        handle.write(json.dumps(day.header.to_json(), sort_keys=True) + "\n")
        for message in day.messages:
            handle.write(json.dumps(message.to_json(), sort_keys=True) + "\n")


def read_day(path: Path) -> Day:
    """Reads a recorded day; a bad line is a ValueError naming its line number."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file (make one with `sandbox replay record`)")
    header: Header | None = None
    messages: list[Message] = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if header is None:
                    header = Header.from_json(data)
                else:
                    messages.append(Message.from_json(data))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    if header is None:
        raise ValueError(f"{path}: empty file")
    return Day(header, tuple(messages))


# ---- the season ----


def school_year_start(day: dt.date) -> dt.date:
    """The first school day of the school year `day` falls in (about the last Monday of August or so;
    the sandbox takes 1 September)."""
    year = day.year if day >= dt.date(day.year, 8, 1) else day.year - 1
    return dt.date(year, 9, 1)


def _bump(day: dt.date, centre: dt.date, half_width_days: float) -> float:
    """1 on the centre day, falling linearly to 0 at half_width_days either side."""
    distance = abs((day - centre).days)
    return max(0.0, 1.0 - distance / half_width_days)


def season(day: dt.date) -> dict[str, float]:
    """How busy the day is: `intake` (start of the school year, 0–1), `counting` (around a count date, 0–1
    per sector: 1 October for all, 1 February for po) and `weekday` (the weekend factor)."""
    start = school_year_start(day)
    intake = max(_bump(day, start, 21), _bump(day, dt.date(start.year + 1, 9, 1), 21))
    october = max(_bump(day, dt.date(y, 10, 1), 14) for y in (day.year - 1, day.year))
    february = max(_bump(day, dt.date(y, 2, 1), 14) for y in (day.year, day.year + 1))
    return {
        "intake": intake,
        "counting_po": max(october, february),
        "counting": october,
        "weekday": 1.0 if day.weekday() < 5 else WEEKEND_FACTOR,
    }


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:  # normal approximation, plenty for volumes
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _office_time(rng: random.Random, day: dt.date) -> dt.datetime:
    first, last = OFFICE_HOURS
    hour = rng.uniform(first, last)
    if rng.random() < 0.5:
        # Redrawn, not clamped, outside office hours: clamping would pile messages up at 08:00:00.
        for _ in range(10):
            peak = rng.gauss(MORNING_PEAK, MORNING_SPREAD)
            if first <= peak <= last:
                hour = peak
                break
    start = dt.datetime.combine(day, dt.time(0), tzinfo=REGISTER_TIMEZONE)
    return _to_ms((start + dt.timedelta(hours=hour)).astimezone(dt.UTC))


def _to_ms(moment: dt.datetime) -> dt.datetime:
    """The file keeps milliseconds: a day read back equals the day written."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


# ---- the generator ----


@dataclass
class _Enrolment:
    ref: str
    school: School
    bsn: str
    periods: list[Period]
    sequence: int = 1
    # Sent a message today already: a school switch picks only untouched enrolments, so that each
    # enrolment's messages keep their sequence order in time.
    touched: bool = False


def build_day(
    *,
    date: dt.date,
    seed: int,
    schools: Sequence[School],
    persons: Sequence[PersonState],
    brp: Sequence[Mutatie],
    pupils_per_school: int,
    seed_size: str,
    register_seed: int,
    brp_source: str,
    fingerprint: str,
    synthetic_bsns: bool = False,
) -> Day:
    """The day's traffic, the same for the same arguments.

    Setup: each school's existing enrolments (begun at the start of the previous school year), sent before
    the day. The day: the BRP messages at their registration time, plus each school's registrations,
    changes, ends and deletions in the seasonal mix, at office-hour times.
    """
    rng = random.Random(seed)
    namespace = uuid.UUID(int=rng.getrandbits(128), version=4)
    counter = {"doc": 0, "ref": 0}

    def document_id() -> str:
        counter["doc"] += 1
        return str(uuid.uuid5(namespace, f"document-{counter['doc']}"))

    def new_ref() -> str:
        counter["ref"] += 1
        return f"e{counter['ref']}"

    # Pupils who die or emigrate today are not registered anew today: their registration would be refused.
    leaving = {m.bsn for m in brp if m.gebeurtenis in (Gebeurtenis.OVERLEDEN, Gebeurtenis.EMIGRATIE)}
    this_year = school_year_start(date)
    last_year = dt.date(this_year.year - 1, this_year.month, this_year.day)
    pools: dict[str, list[PersonState]] = {}
    for sector, (youngest, oldest) in PUPIL_AGES.items():
        fitting = [
            p
            for p in persons
            if p.is_resident
            and youngest <= _age_on(p.birth_date, date) <= oldest
            and _age_on(p.birth_date, last_year) >= FIRST_AGE[sector] - 1
        ]
        fitting.sort(key=lambda p: p.bsn)
        rng.shuffle(fitting)
        pools[sector] = fitting
    taken: set[str] = set()

    def take(sector: str, avoid: set[str]) -> PersonState | None:
        pool = pools[sector]
        while pool:
            person = pool.pop()
            if person.bsn not in taken and person.bsn not in avoid:
                taken.add(person.bsn)
                return person
        return None

    def year_of(sector: str, birth: dt.date, on: dt.date) -> int:
        return min(max(1, _age_on(birth, on) - FIRST_AGE[sector] + 1), TOP_YEAR[sector])

    messages: list[Message] = []
    enrolments: dict[str, list[_Enrolment]] = {s.institution_code: [] for s in schools}
    births = {p.bsn: p.birth_date for p in persons}

    # Setup: the enrolments that exist before the day.
    for school in schools:
        for _ in range(pupils_per_school):
            person = take(school.sector, set())
            if person is None:
                break
            location, course = rng.choice(school.offerings)
            period = Period(last_year, location, course, year_of(school.sector, person.birth_date, last_year))
            enrolment = _Enrolment(new_ref(), school, person.bsn, [period])
            enrolments[school.institution_code].append(enrolment)
            messages.append(
                Message(
                    "register",
                    "setup",
                    None,
                    enrolment.ref,
                    document_id(),
                    school.institution_code,
                    person.bsn,
                    (period,),
                    1,
                )
            )

    timed: list[Message] = []
    mood = season(date)
    for school in schools:
        sector = school.sector
        counting = mood["counting_po"] if sector == "po" else mood["counting"]
        # Not those a school processed earlier took over (a pupil who switched): they have their end already.
        existing = [e for e in enrolments[school.institution_code] if not e.touched]
        registrations = _poisson(
            rng, (BASE_REGISTRATIONS[sector] + INTAKE_PEAK[sector] * mood["intake"]) * mood["weekday"]
        )
        change_share = (
            ORDINARY_CHANGE_SHARE + TRANSITION_CHANGE_SHARE * mood["intake"] + COUNT_DATE_CORRECTION_SHARE * counting
        ) * mood["weekday"]
        end_share = (ORDINARY_END_SHARE + TRANSITION_END_SHARE * mood["intake"]) * mood["weekday"]
        # Ends first (a pupil who left does not move up a year), then year transitions of the others.
        rng.shuffle(existing)
        ends = min(_poisson(rng, end_share * len(existing)), len(existing))
        for enrolment in existing[:ends]:
            end_date = max(this_year - dt.timedelta(days=1), enrolment.periods[-1].begin)
            enrolment.sequence += 1
            enrolment.touched = True
            timed.append(
                Message(
                    "end",
                    "day",
                    _office_time(rng, date),
                    enrolment.ref,
                    document_id(),
                    school.institution_code,
                    sequence=enrolment.sequence,
                    end_date=end_date,
                )
            )
        rest = existing[ends:]
        for enrolment in rest[: min(_poisson(rng, change_share * len(existing)), len(rest))]:
            old = enrolment.periods[-1]
            begin = max(this_year, old.begin + dt.timedelta(days=1))
            new = Period(begin, old.location, old.course, min(old.year + 1, TOP_YEAR[sector]))
            enrolment.periods = [
                *enrolment.periods[:-1],
                dataclasses.replace(old, end=begin - dt.timedelta(days=1)),
                new,
            ]
            enrolment.sequence += 1
            enrolment.touched = True
            timed.append(
                Message(
                    "change",
                    "day",
                    _office_time(rng, date),
                    enrolment.ref,
                    document_id(),
                    school.institution_code,
                    periods=tuple(enrolment.periods),
                    sequence=enrolment.sequence,
                )
            )
        # New pupils, starting on the first school day (or today, later in the year).
        begin = this_year if date <= this_year else date
        others = [e for code, es in enrolments.items() if code != school.institution_code for e in es]
        movers = [e for e in others if e.school.sector == sector and not e.touched]
        for _ in range(registrations):
            at = _office_time(rng, date)
            location, course = rng.choice(school.offerings)
            if movers and rng.random() < SCHOOL_SWITCHES:
                # A pupil moves here from another school in the traffic; the old school ends its enrolment
                # a little later, so ROD sees a double enrolment in between (feedback to both schools).
                leaver = movers.pop(rng.randrange(len(movers)))
                bsn = leaver.bsn
                leaver.sequence += 1
                leaver.touched = True
                timed.append(
                    Message(
                        "end",
                        "day",
                        _to_ms(at + dt.timedelta(minutes=rng.uniform(5, 120))),
                        leaver.ref,
                        document_id(),
                        leaver.school.institution_code,
                        sequence=leaver.sequence,
                        end_date=max(begin - dt.timedelta(days=1), leaver.periods[-1].begin),
                    )
                )
            else:
                person = take(sector, leaving)
                if person is None:
                    continue
                bsn = person.bsn
            period = Period(begin, location, course, year_of(sector, births.get(bsn, begin), begin))
            enrolment = _Enrolment(new_ref(), school, bsn, [period], touched=True)
            enrolments[school.institution_code].append(enrolment)
            timed.append(
                Message("register", "day", at, enrolment.ref, document_id(), school.institution_code, bsn, (period,), 1)
            )
            if rng.random() < DELETED_BY_MISTAKE:
                timed.append(
                    Message(
                        "delete",
                        "day",
                        _to_ms(at + dt.timedelta(minutes=rng.uniform(1, 90))),
                        enrolment.ref,
                        document_id(),
                        school.institution_code,
                    )
                )

    for mutatie in brp:
        assert mutatie.tijdstip_registratie is not None
        timed.append(
            Message(
                "brp",
                "day",
                _to_ms(mutatie.tijdstip_registratie),
                mutatie.bsn,
                mutatie.bericht_id,
                bsn=mutatie.bsn,
                xml=message_document(mutatie).decode(),
                event=str(mutatie.gebeurtenis),
            )
        )
    # Stable order: by time, then by the order generated (sorted() is stable).
    timed.sort(key=lambda m: m.at or dt.datetime.min.replace(tzinfo=dt.UTC))
    all_messages = messages + _in_enrolment_order(timed)
    counts = _count(all_messages)
    header = Header(
        date=date,
        seed=seed,
        seed_size=seed_size,
        register_seed=register_seed,
        schools=tuple(schools),
        brp_source=brp_source,
        fingerprint=fingerprint,
        counts=counts,
        synthetic_bsns=synthetic_bsns,
    )
    return Day(header, tuple(all_messages))


def _in_enrolment_order(timed: list[Message]) -> list[Message]:
    """Moves a message of an enrolment that would go before its own registration to just after it.

    (A deletion or an end drawn a few minutes after a late registration may otherwise fall on the next
    office-hour draw; the time of the later message is kept, its order follows the enrolment.)
    """
    registered_at: dict[str, dt.datetime] = {}
    for message in timed:
        if message.kind == "register" and message.at is not None:
            registered_at[message.ref] = message.at
    fixed = []
    for message in timed:
        first = registered_at.get(message.ref)
        if message.kind in ("change", "end", "delete") and first is not None and message.at and message.at < first:
            message = dataclasses.replace(message, at=first + dt.timedelta(seconds=1))
        fixed.append(message)
    fixed.sort(key=lambda m: m.at or dt.datetime.min.replace(tzinfo=dt.UTC))
    return fixed


def _count(messages: Iterable[Message]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in messages:
        key = f"{message.phase}.{message.kind}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
