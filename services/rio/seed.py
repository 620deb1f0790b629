"""A national-shaped RIO data set from a size and a seed number: boards, schools, locations, catalogue, offerings.

`plan` is pure and deterministic (random.Random and faker nl_NL seeded with
the seed number); `apply` writes a plan into one sandbox with bulk inserts and
one change-log entry per record, numbering codes after any the sandbox holds.
The change log keeps records as the contract's bytes; the caller says how.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from faker import Faker
from sqlmodel import Session, SQLModel

from services.common.clock import real_now
from services.common.identifiers import format_institution_code, format_rio_code
from services.common.places import MUNICIPALITIES
from services.common.seeding import SeedProfile
from services.rio import rules, store
from services.rio.rules import ChangeKind, CodeSystem, RecordKind, Sector
from services.rio.tables import (
    RioBoard,
    RioCourse,
    RioCourseOffering,
    RioLocation,
    RioLocationUse,
    RioProvider,
)

PO, VO, MBO, HO = Sector.PO, Sector.VO, Sector.MBO, Sector.HO
CATALOGUE_BEGIN = dt.date(2000, 8, 1)
# A few offerings ended at the end of a past school year, so history is there to query.
ENDED_SHARE = 0.03
ENDED_ON = dt.date(2023, 7, 31)
# A few locations were used by another board before the current one took them over (onderwijslocatiegebruik
# changes hands), so a location's history of boards is there to query too.
HANDED_OVER_SHARE = 0.03
# One primary board in ten keeps a former building it stopped using on ENDED_ON: a registered location
# nobody uses, which a board can start to use (CreateLocationUse) without waiting for a handover.
VACATED_EVERY = 10
INSTITUTION_CODES = 100 * 26 * 26


@dataclass(frozen=True)
class CatalogueCourse:
    code: str
    system: int
    sector: int
    name: str
    level: str


def _catalogue() -> list[CatalogueCourse]:
    """The national course catalogue: the same for every seed (it is national, not per sandbox)."""
    courses = [CatalogueCourse("BAO", CodeSystem.PO, PO, "Basisonderwijs", "PO-BAO")]
    vmbo_profiles = (
        "Economie en ondernemen",
        "Zorg en welzijn",
        "Bouwen, wonen en interieur",
        "Produceren, installeren en energie",
        "Groen",
        "Dienstverlening en producten",
    )
    for offset, (level, label) in enumerate(
        (
            ("VO-VMBO-BB", "basisberoepsgerichte leerweg"),
            ("VO-VMBO-KB", "kaderberoepsgerichte leerweg"),
            ("VO-VMBO-GL", "gemengde leerweg"),
            ("VO-VMBO-TL", "theoretische leerweg"),
        )
    ):
        for n, profile in enumerate(vmbo_profiles):
            courses.append(
                CatalogueCourse(
                    f"{3000 + offset * 100 + n:04d}",
                    CodeSystem.ILT,
                    VO,
                    f"vmbo {label} {profile}",
                    level,
                )
            )
    for offset, (level, label) in enumerate((("VO-HAVO", "havo"), ("VO-VWO", "vwo"))):
        for n, profile in enumerate(
            ("Cultuur en Maatschappij", "Economie en Maatschappij", "Natuur en Gezondheid", "Natuur en Techniek")
        ):
            courses.append(
                CatalogueCourse(f"{offset + 1:01d}{n + 1:03d}", CodeSystem.ILT, VO, f"{label} {profile}", level)
            )
    mbo = (
        ("Entree", 1),
        ("Assistent logistiek", 1),
        ("Medewerker facilitaire dienstverlening", 2),
        ("Logistiek medewerker", 2),
        ("Kok", 2),
        ("Verkoopmedewerker", 2),
        ("Helpende zorg en welzijn", 2),
        ("Monteur elektrotechnische installaties", 2),
        ("Timmerman", 2),
        ("Medewerker fastservice", 1),
        ("Verzorgende-IG", 3),
        ("Zelfstandig werkend kok", 3),
        ("Eerste monteur elektrotechnische installaties", 3),
        ("Pedagogisch medewerker kinderopvang", 3),
        ("Doktersassistent", 4),
        ("Verpleegkundige", 4),
        ("Software developer", 4),
        ("Expert IT systems and devices", 4),
        ("Mediavormgever", 4),
        ("Onderwijsassistent", 4),
        ("Sport- en bewegingscoördinator", 4),
        ("Ondernemer horeca/bakkerij", 4),
        ("Commercieel medewerker", 4),
        ("Juridisch medewerker", 4),
        ("Financieel administratief medewerker", 3),
        ("Logistiek teamleider", 3),
        ("Apothekersassistent", 4),
        ("Technicus engineering", 4),
        ("Middenkaderfunctionaris bouw", 4),
        ("Particulier beveiliger", 2),
    )
    for n, (name, mbo_level) in enumerate(mbo):
        courses.append(CatalogueCourse(f"{25000 + n * 7:05d}", CodeSystem.CREBO, MBO, name, f"MBO-{mbo_level}"))
    # ISAT ranges per level (as CROHO numbers them): 8xxxx Ad, 3xxxx hbo bachelor, 4xxxx hbo master,
    # 5xxxx wo bachelor, 6xxxx wo master.
    ho = {
        ("HBO-AD", 80000): (
            "Ad Ondernemen",
            "Ad Software Development",
            "Ad Pedagogisch Educatief Professional",
            "Ad Accountancy",
        ),
        ("HBO-BA", 34000): (
            "HBO-ICT",
            "Verpleegkunde",
            "Bedrijfskunde",
            "Social Work",
            "Commerciële Economie",
            "Leraar Basisonderwijs",
            "Werktuigbouwkunde",
            "Communicatie",
            "Bouwkunde",
            "Fysiotherapie",
        ),
        ("HBO-MA", 49000): ("Master Advanced Nursing Practice", "Master Informatica", "Master Leren en Innoveren"),
        ("WO-BA", 56000): (
            "Rechtsgeleerdheid",
            "Psychologie",
            "Geneeskunde",
            "Economie en Bedrijfseconomie",
            "Informatica",
            "Geschiedenis",
            "Natuurkunde",
            "Bestuurskunde",
        ),
        ("WO-MA", 66000): (
            "Rechtsgeleerdheid",
            "Psychologie",
            "Geneeskunde",
            "Economics",
            "Computer Science",
            "Public Administration",
        ),
    }
    for (level, base), names in ho.items():
        for n, name in enumerate(names):
            courses.append(CatalogueCourse(f"{base + n * 11:05d}", CodeSystem.ISAT, HO, name, level))
    return courses


CATALOGUE = _catalogue()


@dataclass
class Plan:
    """What a seed creates, with codes relative to the sandbox's existing ones (board 0 is the first new board)."""

    boards: list[dict[str, Any]] = field(default_factory=list)
    providers: list[dict[str, Any]] = field(default_factory=list)
    locations: list[dict[str, Any]] = field(default_factory=list)
    offerings: list[dict[str, Any]] = field(default_factory=list)
    # Onderwijslocatiegebruik: which board uses which location when (every location has at least one use).
    location_uses: list[dict[str, Any]] = field(default_factory=list)
    # Locations whose only use ended on ENDED_ON (no offerings there): vacant since.
    vacated: set[int] = field(default_factory=set)
    # Candidate institution code numbers, in the order providers take them.
    institution_numbers: list[int] = field(default_factory=list)


_PO_PREFIXES = ("Basisschool", "OBS", "CBS", "RKBS", "Daltonschool", "Montessorischool", "Jenaplanschool", "IKC")
_PO_NAMES = (
    "De Regenboog",
    "'t Kompas",
    "De Vlinder",
    "De Wegwijzer",
    "Het Palet",
    "De Springplank",
    "De Ark",
    "De Fontein",
    "De Klimop",
    "De Zonnewijzer",
    "De Horizon",
    "De Sterrenkijker",
    "De Linde",
    "Prins Willem-Alexander",
    "Koningin Beatrix",
    "Sint Jozef",
    "De Kameleon",
    "De Meander",
    "De Tweemaster",
    "Het Mozaïek",
    "De Piramide",
    "De Wilgenhoek",
    "Het Anker",
    "De Bron",
    "De Eendracht",
    "Het Klavertje",
    "De Vuurtoren",
    "De Zeester",
)
_BOARD_KINDS = (
    "Openbaar Onderwijs",
    "Katholiek Onderwijs",
    "Christelijk Onderwijs",
    "Primair Onderwijs",
    "Samenwerkingsscholen",
)


def plan(profile: SeedProfile, seed: int) -> Plan:
    """Deterministic for (profile, seed): the same numbers give the same boards, schools, addresses and offerings."""
    rng = random.Random(seed)
    fake = Faker("nl_NL")
    fake.seed_instance(seed)
    result = Plan()
    total_providers = profile.schools
    result.institution_numbers = rng.sample(range(INSTITUTION_CODES), min(INSTITUTION_CODES, total_providers * 2))

    def address() -> dict[str, Any]:
        # A municipality from the CBS table, so the code matches the place name and the postcode area;
        # picked from faker's place draw (stable per name) so the rest of the plan's random draws stay put.
        municipality = MUNICIPALITIES[zlib.crc32(fake.city().encode()) % len(MUNICIPALITIES)]
        return {
            "street": fake.street_name(),
            "house_number": rng.randint(1, 250),
            "house_number_addition": rng.choice(("", "", "", "", "A", "B")),
            "postcode": municipality.postcode_prefix + fake.postcode().replace(" ", "")[2:],
            "city": municipality.name,
            "municipality_code": municipality.code,
            "country_code": "NL",
        }

    def add_board(name: str, begin: dt.date) -> int:
        result.boards.append({"name": name, "kvk_number": f"{rng.randrange(10**7, 10**8)}", "begin_date": begin})
        return len(result.boards) - 1

    def add_provider(board: int, name: str, sector: int, begin: dt.date) -> int:
        result.providers.append({"board": board, "name": name, "sector": sector, "begin_date": begin})
        return len(result.providers) - 1

    def add_location(board: int, name: str, begin: dt.date) -> int:
        result.locations.append({"board": board, "name": name, "begin_date": begin, **address()})
        return len(result.locations) - 1

    def offer(provider: int, course: CatalogueCourse, location: int) -> None:
        begin = max(result.locations[location]["begin_date"], CATALOGUE_BEGIN)
        end = ENDED_ON if rng.random() < ENDED_SHARE and begin < ENDED_ON else None
        result.offerings.append(
            {
                "provider": provider,
                "course_code": course.code,
                "location": location,
                "begin_date": begin,
                "end_date": end,
                "offering_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            }
        )

    def school_year_start() -> dt.date:
        return dt.date(rng.randint(1970, 2018), 8, 1)

    by_level: dict[str, list[CatalogueCourse]] = {}
    for course in CATALOGUE:
        by_level.setdefault(course.level, []).append(course)

    # Primary: ~930 boards for ~6,700 schools at full size; a few boards run many schools, most run a handful.
    po_boards = [
        add_board(f"Stichting {rng.choice(_BOARD_KINDS)} {fake.city()}", dt.date(rng.randint(1990, 2010), 1, 1))
        for _ in range(profile.primary_boards)
    ]
    weights = [rng.paretovariate(1.2) for _ in po_boards]
    bao = by_level["PO-BAO"][0]
    for i in range(profile.primary_schools):
        board = po_boards[i] if i < len(po_boards) else rng.choices(po_boards, weights)[0]
        name = f"{rng.choice(_PO_PREFIXES)} {rng.choice(_PO_NAMES)}"
        begin = school_year_start()
        provider = add_provider(board, name, PO, begin)
        offer(provider, bao, add_location(board, name, begin))

    # Secondary: boards of about three schools; school types decide the levels offered.
    vo_boards = [
        add_board(f"Stichting Voortgezet Onderwijs {fake.city()}", dt.date(rng.randint(1990, 2010), 1, 1))
        for _ in range(max(1, (profile.secondary_schools + 2) // 3))
    ]
    vo_types = {
        "vmbo": ("VO-VMBO-BB", "VO-VMBO-KB", "VO-VMBO-GL", "VO-VMBO-TL"),
        "havo/vwo": ("VO-HAVO", "VO-VWO"),
        "scholengemeenschap": ("VO-VMBO-GL", "VO-VMBO-TL", "VO-HAVO", "VO-VWO"),
    }
    for i in range(profile.secondary_schools):
        board = vo_boards[i % len(vo_boards)]
        kind = rng.choice(tuple(vo_types))
        name = rng.choice(
            (f"{fake.last_name()} College", f"{fake.city()} Lyceum", f"Scholengemeenschap {fake.last_name()}")
        )
        begin = school_year_start()
        provider = add_provider(board, name, VO, begin)
        sites = [add_location(board, f"{name} locatie {n + 1}", begin) for n in range(rng.randint(1, 2))]
        for level in vo_types[kind]:
            for course in rng.sample(by_level[level], rng.randint(2, len(by_level[level]))):
                offer(provider, course, rng.choice(sites))

    # MBO: one board per institution (ROC or vakinstelling), several sites, many qualifications.
    mbo_courses = [c for c in CATALOGUE if c.sector == MBO]
    for _ in range(profile.mbo_institutions):
        region = fake.city()
        name = rng.choice((f"ROC {region}", f"{region} College", f"Vakcollege {region}"))
        board = add_board(f"Stichting {name}", dt.date(rng.randint(1995, 2005), 1, 1))
        begin = dt.date(rng.randint(1996, 2010), 8, 1)
        provider = add_provider(board, name, MBO, begin)
        sites = [add_location(board, f"{name} {fake.city()}", begin) for _ in range(rng.randint(2, 5))]
        for course in rng.sample(mbo_courses, rng.randint(12, len(mbo_courses))):
            offer(provider, course, rng.choice(sites))

    # HO: about a third universities (wo), the rest universities of applied sciences (hbo).
    for i in range(profile.ho_institutions):
        city = fake.city()
        university = i % 3 == 0
        name = f"Universiteit {city}" if university else f"Hogeschool {city}"
        board = add_board(f"Stichting {name}", dt.date(rng.randint(1960, 2000), 1, 1))
        begin = dt.date(rng.randint(1960, 2005), 9, 1)
        provider = add_provider(board, name, HO, begin)
        sites = [add_location(board, f"{name} campus {n + 1}", begin) for n in range(rng.randint(1, 3))]
        levels = ("WO-BA", "WO-MA") if university else ("HBO-AD", "HBO-BA", "HBO-MA")
        pool = [c for level in levels for c in by_level[level]]
        for course in rng.sample(pool, rng.randint(min(6, len(pool)), len(pool))):
            offer(provider, course, rng.choice(sites))

    # Drawn last, so every record above is what it was before vacated buildings existed.
    for number, board in enumerate(po_boards[::VACATED_EVERY]):
        begin = result.boards[board]["begin_date"]
        result.vacated.add(add_location(board, f"Voormalig gebouw {number + 1}", begin))
    _plan_uses(result, random.Random(seed ^ 0x5EED_0C))
    return result


def _plan_uses(result: Plan, rng: random.Random) -> None:
    """Each location is used by its board from its begindatum; a few were another board's before.

    Drawn after (and apart from) everything else, so the rest of a seed's plan is what it always was. The
    current board's use, and so every offering there, begins on the date the location had; a handed-over
    location begins earlier, registered by its first user, whose use ends the day before the handover.
    """
    for index, location in enumerate(result.locations):
        current, taken_over = location["board"], location["begin_date"]
        if index in result.vacated:
            result.location_uses.append(_use(index, current, taken_over, ENDED_ON, rng))
            continue
        if len(result.boards) > 1 and rng.random() < HANDED_OVER_SHARE:
            former = rng.choice([b for b in range(len(result.boards)) if b != current])
            first_day = taken_over.replace(year=taken_over.year - rng.randint(5, 15))
            result.location_uses.append(_use(index, former, first_day, taken_over - dt.timedelta(days=1), rng))
            location["begin_date"], location["board"] = first_day, former
        result.location_uses.append(_use(index, current, taken_over, None, rng))


def _use(location: int, board: int, begin: dt.date, end: dt.date | None, rng: random.Random) -> dict[str, Any]:
    use_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return {"location": location, "board": board, "begin_date": begin, "end_date": end, "use_id": use_id}


# --- Writing a plan ---


def _first_free(session: Session, kind: str, model: type[SQLModel], code_field: str, sandbox_id: str) -> int:
    """The number before the sandbox's next free code of a kind."""
    highest = store.highest_code(session, model, code_field, sandbox_id)
    return rules.next_rio_number(kind, [highest] if highest else []) - 1


def _log_rows(
    sandbox_id: str,
    record_kind: RecordKind,
    rows: Iterable[SQLModel],
    code_field: str,
    record_bytes: Callable[[Any], bytes],
    committed_at: dt.datetime,
) -> list[dict[str, Any]]:
    return [
        {
            "sandbox_id": sandbox_id,
            "record_kind": record_kind,
            "change_kind": ChangeKind.CREATED,
            "code": getattr(row, code_field),
            "committed_at": committed_at,
            "record": record_bytes(row),
        }
        for row in rows
    ]


def apply(session: Session, *, sandbox_id: str, plan: Plan, record_bytes: Callable[[Any], bytes]) -> dict[str, int]:
    """Writes the plan into the sandbox with one CREATED log entry per record; returns what it created."""
    # Codes continue after what the sandbox already holds, so seeding never collides with hand-made records.
    board_base = _first_free(session, "board", RioBoard, "board_code", sandbox_id)
    provider_base = _first_free(session, "provider", RioProvider, "provider_code", sandbox_id)
    location_base = _first_free(session, "location", RioLocation, "location_code", sandbox_id)
    used_institutions = store.institution_codes(session, sandbox_id)
    known_courses = store.course_codes(session, sandbox_id)
    unit_base = _first_free(session, "course_unit", RioCourse, "unit_code", sandbox_id)
    new_courses = [c for c in CATALOGUE if c.code not in known_courses]
    board_codes = [format_rio_code("board", board_base + i + 1) for i in range(len(plan.boards))]
    provider_codes = [format_rio_code("provider", provider_base + i + 1) for i in range(len(plan.providers))]
    location_codes = [format_rio_code("location", location_base + i + 1) for i in range(len(plan.locations))]
    candidates = (format_institution_code(n) for n in plan.institution_numbers)
    institutions = [code for code in candidates if code not in used_institutions][: len(plan.providers)]
    if len(institutions) < len(plan.providers):
        raise RuntimeError("not enough free institution codes for this seed")

    now = real_now()
    boards: list[dict[str, Any]] = [
        {"sandbox_id": sandbox_id, "board_code": board_codes[i], "end_date": None, **b}
        for i, b in enumerate(plan.boards)
    ]
    providers: list[dict[str, Any]] = [
        {
            "sandbox_id": sandbox_id,
            "provider_code": provider_codes[i],
            "version": 1,
            "board_code": board_codes[p["board"]],
            "institution_code": institutions[i],
            "name": p["name"],
            "sector": p["sector"],
            "begin_date": p["begin_date"],
            "end_date": None,
        }
        for i, p in enumerate(plan.providers)
    ]
    locations: list[dict[str, Any]] = [
        {
            "sandbox_id": sandbox_id,
            "location_code": location_codes[i],
            "version": 1,
            "board_code": board_codes[loc["board"]],
            "end_date": None,
            **{k: v for k, v in loc.items() if k != "board"},
        }
        for i, loc in enumerate(plan.locations)
    ]
    courses: list[dict[str, Any]] = [
        {
            "sandbox_id": sandbox_id,
            "course_code": c.code,
            "unit_code": format_rio_code("course_unit", unit_base + i + 1),
            "version": 1,
            "code_system": c.system,
            "sector": c.sector,
            "name": c.name,
            "level": c.level,
            "begin_date": CATALOGUE_BEGIN,
            "end_date": None,
        }
        for i, c in enumerate(new_courses)
    ]
    offerings: list[dict[str, Any]] = [
        {
            "sandbox_id": sandbox_id,
            "offering_id": o["offering_id"],
            "provider_code": provider_codes[o["provider"]],
            "course_code": o["course_code"],
            "location_code": location_codes[o["location"]],
            "begin_date": o["begin_date"],
            "end_date": o["end_date"],
        }
        for o in plan.offerings
    ]
    uses: list[dict[str, Any]] = [
        {
            "sandbox_id": sandbox_id,
            "use_id": u["use_id"],
            "location_code": location_codes[u["location"]],
            "board_code": board_codes[u["board"]],
            "begin_date": u["begin_date"],
            "end_date": u["end_date"],
        }
        for u in plan.location_uses
    ]
    for model, rows in (
        (RioBoard, boards),
        (RioProvider, providers),
        (RioLocation, locations),
        (RioCourse, courses),
        (RioCourseOffering, offerings),
        (RioLocationUse, uses),
    ):
        store.insert_many(session, model, rows)

    # One CREATED entry per seeded record, like any other change (records built without validation: speed).
    log: list[dict[str, Any]] = []
    for kind, model, rows, code_field in (
        (RecordKind.BOARD, RioBoard, boards, "board_code"),
        (RecordKind.PROVIDER, RioProvider, providers, "provider_code"),
        (RecordKind.LOCATION, RioLocation, locations, "location_code"),
        (RecordKind.COURSE, RioCourse, courses, "course_code"),
        (RecordKind.COURSE_OFFERING, RioCourseOffering, offerings, "offering_id"),
        (RecordKind.LOCATION_USE, RioLocationUse, uses, "use_id"),
    ):
        built = (model.model_construct(**row) for row in rows)
        log += _log_rows(sandbox_id, kind, built, code_field, record_bytes, now)
    store.append_changes(session, log)
    return {
        "boards": len(boards),
        "providers": len(providers),
        "locations": len(locations),
        "courses": len(courses),
        "course_offerings": len(offerings),
        "location_uses": len(uses),
    }
