"""Example requests that work in the caller's sandbox: a real school, offering, test person and the sandbox's today."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from clients.explorer import contract
from clients.explorer.grpc_client import GrpcTargets
from services._gen.registry.v1 import (
    brp_pb2,
    brp_pb2_grpc,
    common_pb2,
    rio_pb2,
    rio_pb2_grpc,
    rod_pb2,
    rod_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
)
from services.common.caller import SANDBOX_KEY
from services.rod.funding import duo_correction_deadline

# DUO's rules as ROD applies them (services.rod.funding, pure): po counts on 1 February, vo/mbo/ho on
# 1 October, and a count is final the day after its correction deadline (prikdatum).
# Primary pupils are funded from 4 to 13; 6 to 10 stays inside that on every nearby count date.
PUPIL_AGES = (6, 10)
_CANDIDATES = 8
RECENT_COUNT = dt.timedelta(days=60)


def count_date_on_or_after(day: dt.date, *, primary: bool) -> dt.date:
    month = 2 if primary else 10
    this_year = dt.date(day.year, month, 1)
    return this_year if this_year >= day else dt.date(day.year + 1, month, 1)


@dataclass(frozen=True)
class CountDate:
    """A count date, the last day of its correction window, and the first day its count is final."""

    count_date: dt.date
    correction_deadline: dt.date
    final_from: dt.date


def upcoming_count(today: dt.date, *, primary: bool) -> CountDate:
    """The count date whose correction window is open on `today` (the latest one), else the next one."""
    latest = dt.date(today.year, 2 if primary else 10, 1)
    if latest > today:
        latest = latest.replace(year=today.year - 1)
    day = latest if today <= duo_correction_deadline(latest) else latest.replace(year=latest.year + 1)
    deadline = duo_correction_deadline(day)
    return CountDate(day, deadline, deadline + dt.timedelta(days=1))


def count_to_read(today: dt.date, *, primary: bool) -> dt.date:
    """The count date whose count is news: the latest one up to two months after it, else the coming one."""
    latest = dt.date(today.year, 2 if primary else 10, 1)
    if latest > today:
        latest = latest.replace(year=today.year - 1)
    return latest if today - latest <= RECENT_COUNT else count_date_on_or_after(today, primary=primary)


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _date(day: dt.date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


def _from_proto(date: Any) -> dt.date:
    return dt.date(date.year, date.month, date.day)


@dataclass
class SandboxFacts:
    """What the sandbox holds that an example can name; empty strings where the sandbox has none (not seeded)."""

    today: str = ""
    school_name: str = ""
    institution_code: str = ""
    provider_code: str = ""
    board_code: str = ""
    location_code: str = ""
    course_code: str = ""
    offering_id: str = ""
    # The use (onderwijslocatiegebruik) of the school's location today, and a location nobody uses today.
    location_use_id: str = ""
    vacant_location_code: str = ""
    bsn: str = ""
    birth_date: str = ""
    sex: str = "SEX_UNSPECIFIED"
    enrolment_id: str = ""
    enrolment_sequence: int = 0
    enrolled_bsn: str = ""
    enrolled_last_sequence: int = 0
    enrolled_a_nummer: str = ""
    enrolled_versienummer: int = 0
    enrolled_municipality: str = ""
    po_count_date: str = ""
    po_final_from: str = ""
    # The count a school looks at now: the last one while it is recent (its correction window), else the next.
    po_count_to_read: str = ""
    schools: tuple[dict[str, str], ...] = ()
    # A key of this sandbox other than the one calling (from ListSandboxKeys), else the caller's own.
    revocable_key_id: str = ""

    @property
    def seeded(self) -> bool:
        return bool(self.institution_code and self.bsn)


async def gather_facts(targets: GrpcTargets, sandbox_key: str, school: str = "") -> SandboxFacts:
    """Asks the sandbox, as its admin, for a school, its offering and a pupil without enrolment."""
    metadata = ((SANDBOX_KEY, sandbox_key),)
    admin = sandbox_pb2_grpc.SandboxAdminStub(targets.channel("registry.v1.SandboxAdmin"))
    rio = rio_pb2_grpc.RioServiceStub(targets.channel("registry.v1.RioService"))
    brp = brp_pb2_grpc.BrpServiceStub(targets.channel("registry.v1.BrpService"))
    rod = rod_pb2_grpc.RodServiceStub(targets.channel("registry.v1.RodService"))
    clock = await admin.GetClock(sandbox_pb2.GetClockRequest(), metadata=metadata)
    today = _from_proto(clock.today)
    facts = SandboxFacts(
        today=today.isoformat(),
        po_count_date=count_date_on_or_after(today, primary=True).isoformat(),
        po_final_from=upcoming_count(today, primary=True).final_from.isoformat(),
        po_count_to_read=count_to_read(today, primary=True).isoformat(),
    )
    providers, persons = await asyncio.gather(
        rio.ListProviders(
            rio_pb2.ListProvidersRequest(
                reference_date=clock.today, sector=common_pb2.SECTOR_PO, page=common_pb2.PageRequest(page_size=100)
            ),
            metadata=metadata,
        ),
        brp.ListPersons(
            brp_pb2.ListPersonsRequest(
                born_on_or_after=_proto_date(_years_before(today, PUPIL_AGES[1])),
                born_on_or_before=_proto_date(_years_before(today, PUPIL_AGES[0])),
                only_resident=True,
                page=common_pb2.PageRequest(page_size=50),
            ),
            metadata=metadata,
        ),
    )
    facts.schools = tuple(
        {"institution_code": p.institution_code, "name": p.name, "board_code": p.board_code}
        for p in providers.providers
    )
    # A school with an offering today: the chosen one when it has one, else the first that has.
    ordered = sorted(providers.providers, key=lambda p: p.institution_code != school)
    for provider in ordered[:_CANDIDATES]:
        offerings = await rio.ListCourseOfferings(
            rio_pb2.ListCourseOfferingsRequest(
                reference_date=clock.today,
                provider_code=provider.provider_code,
                page=common_pb2.PageRequest(page_size=1),
            ),
            metadata=metadata,
        )
        if offerings.offerings:
            offering = offerings.offerings[0]
            facts.school_name, facts.institution_code = provider.name, provider.institution_code
            facts.provider_code, facts.board_code = provider.provider_code, provider.board_code
            facts.location_code, facts.course_code = offering.location_code, offering.course_code
            facts.offering_id = offering.offering_id
            break
    # A pupil nobody has enrolled yet, so the example enrolment is funded rather than a second enrolment.
    for person in persons.persons[:_CANDIDATES]:
        enrolled = await rod.ListEnrolments(
            rod_pb2.ListEnrolmentsRequest(pupil=rod_pb2.PupilId(bsn=person.bsn)), metadata=metadata
        )
        if not enrolled.enrolments:
            facts.bsn, facts.birth_date = person.bsn, _from_proto(person.birth_date).isoformat()
            facts.sex = brp_pb2.Sex.Name(person.sex)
            break
    if facts.institution_code:
        await _latest_enrolment(facts, rod, brp, metadata)
        await _location_uses(facts, rio, clock.today, metadata)
    keys = (await admin.ListSandboxKeys(sandbox_pb2.ListSandboxKeysRequest(), metadata=metadata)).keys
    active = [k for k in keys if not k.HasField("revoked_at")]
    # Never offer to revoke the key the page itself calls with (its prefix is the key's first characters).
    others = [k for k in active if not sandbox_key.startswith(k.prefix)]
    facts.revocable_key_id = (others or active or [sandbox_pb2.SandboxKey()])[-1].key_id
    return facts


async def _location_uses(
    facts: SandboxFacts, rio: rio_pb2_grpc.RioServiceStub, today: Any, metadata: tuple[tuple[str, str], ...]
) -> None:
    """The school location's use today (what EndLocationUse ends), and a vacant location of one of the primary
    boards (the seed leaves a former building of some boards unused), which CreateLocationUse can take."""
    page = common_pb2.PageRequest(page_size=100)
    current = await rio.ListLocationUses(
        rio_pb2.ListLocationUsesRequest(location_code=facts.location_code, reference_date=today, page=page),
        metadata=metadata,
    )
    facts.location_use_id = current.uses[0].use_id if current.uses else ""
    boards = dict.fromkeys([facts.board_code, *(s["board_code"] for s in facts.schools)])
    for board in list(boards)[:_CANDIDATES]:
        uses = await rio.ListLocationUses(
            rio_pb2.ListLocationUsesRequest(board_code=board, all_periods=True, page=page), metadata=metadata
        )
        ended = [u for u in uses.uses if u.validity.HasField("end_date") and u.validity.end_date.year]
        for use in ended:
            if _from_proto(use.validity.end_date) >= _from_proto(today):
                continue
            history = await rio.ListLocationUses(
                rio_pb2.ListLocationUsesRequest(location_code=use.location_code, all_periods=True, page=page),
                metadata=metadata,
            )
            if all(
                u.validity.end_date.year and _from_proto(u.validity.end_date) < _from_proto(today) for u in history.uses
            ):
                facts.vacant_location_code = use.location_code
                return


async def _latest_enrolment(
    facts: SandboxFacts,
    rod: rod_pb2_grpc.RodServiceStub,
    brp: brp_pb2_grpc.BrpServiceStub,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    """The school's last active enrolment: what Change/End/Delete and the BRP example act on."""
    answer = await rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(
            institution_code=facts.institution_code, page=common_pb2.PageRequest(page_size=100)
        ),
        metadata=metadata,
    )
    active = [e for e in answer.enrolments if e.status == rod_pb2.ENROLMENT_STATUS_ACTIVE and e.pupil.bsn]
    if not active:
        return
    latest = max(active, key=lambda e: e.updated_at.ToDatetime())
    facts.enrolment_id, facts.enrolment_sequence = latest.enrolment_id, latest.sequence
    try:
        person = await brp.GetPerson(brp_pb2.GetPersonRequest(bsn=latest.pupil.bsn), metadata=metadata)
    except grpc.aio.AioRpcError:
        return
    facts.enrolled_bsn, facts.enrolled_last_sequence = person.bsn, person.last_sequence
    facts.enrolled_a_nummer, facts.enrolled_versienummer = person.a_nummer, person.versienummer
    facts.enrolled_municipality = person.address.municipality_code or "0363"


def _proto_date(day: dt.date) -> Any:
    from google.type import date_pb2

    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _death_message(facts: SandboxFacts, today: dt.date) -> str:
    """A BRP change message (XML, as brp-mutatie.xsd defines it): the enrolled pupil died yesterday."""
    message_id = uuid.uuid4()
    moment = dt.datetime.combine(today, dt.time(9, 0), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<Mutatie xmlns="urn:registry-sandbox:brp:mutatie:v2">\n'
        f"  <BerichtId>{message_id}</BerichtId>\n"
        f"  <Burgerservicenummer>{facts.enrolled_bsn}</Burgerservicenummer>\n"
        f"  <Anummer>{facts.enrolled_a_nummer}</Anummer>\n"
        f"  <Versienummer>{facts.enrolled_versienummer + 1}</Versienummer>\n"
        f"  <Volgnummer>{facts.enrolled_last_sequence + 1}</Volgnummer>\n"
        f"  <Gemeentecode>{facts.enrolled_municipality}</Gemeentecode>\n"
        "  <Gebeurtenis>nl.brp.overleden</Gebeurtenis>\n"
        f"  <DatumIngang>{today.isoformat()}</DatumIngang>\n"
        f"  <TijdstipRegistratie>{moment}</TijdstipRegistratie>\n"
        "  <Wijzigingen>\n"
        "    <Overlijden>\n"
        f"      <Datum>{(today - dt.timedelta(days=1)).isoformat()}</Datum>\n"
        f"      <Gemeentecode>{facts.enrolled_municipality}</Gemeentecode>\n"
        "    </Overlijden>\n"
        "  </Wijzigingen>\n"
        "</Mutatie>\n"
    )


def build_examples(facts: SandboxFacts) -> dict[str, dict[str, Any]]:
    """One request per method, in the proto3 JSON the gateway takes. idempotency_key and document_id are fresh
    UUIDs; the page renews them each time it loads an example."""
    today = dt.date.fromisoformat(facts.today) if facts.today else dt.date.today()
    count_date = dt.date.fromisoformat(facts.po_count_to_read) if facts.po_count_to_read else today
    final_from = dt.date.fromisoformat(facts.po_final_from) if facts.po_final_from else today
    period = {
        "begin_date": _date(today),
        "location_code": facts.location_code,
        "course_code": facts.course_code,
        "year": 3,
    }
    record_codes = {
        "Provider": facts.provider_code,
        "Location": facts.location_code,
        "Course": facts.course_code,
        "CourseOffering": facts.offering_id,
        "LocationUse": facts.location_use_id,
    }
    page = {"page_size": 10}
    at_eight = "T08:00:00+01:00"
    curated: dict[str, dict[str, Any]] = {
        "SandboxAdmin/CreateSandbox": {"name": "my-school-package"},
        "SandboxAdmin/RevokeSandboxKey": {"key_id": facts.revocable_key_id},
        "SandboxAdmin/SeedSandbox": {"size": "SEED_SIZE_SMALL", "seed": "1"},
        "SandboxAdmin/SetClock": {"freeze_at": f"{final_from.isoformat()}{at_eight}"},
        "RioService/CreateBoard": {
            "name": "Stichting Voorbeeldscholen",
            "kvk_number": "41234567",
            "begin_date": _date(today),
        },
        "RioService/GetBoard": {"board_code": facts.board_code},
        "RioService/ListBoards": {"page": page},
        "RioService/CreateProvider": {
            "board_code": facts.board_code,
            "name": "Basisschool De Voorbeeldboom",
            "sector": "SECTOR_PO",
            "begin_date": _date(today),
        },
        "RioService/UpdateProvider": {
            "provider_code": facts.provider_code,
            "effective_date": _date(today),
            "name": f"{facts.school_name} (nieuwe naam)",
        },
        "RioService/ListProviders": {"reference_date": _date(today), "sector": "SECTOR_PO", "page": page},
        "RioService/CreateLocation": {
            "board_code": facts.board_code,
            "name": "Dependance Voorbeeldstraat",
            "address": {
                "street": "Voorbeeldstraat",
                "house_number": 12,
                "postcode": "1012AB",
                "city": "Amsterdam",
                "municipality_code": "0363",
                "country_code": "NL",
            },
            "begin_date": _date(today),
        },
        "RioService/UpdateLocation": {
            "location_code": facts.location_code,
            "effective_date": _date(today),
            "name": "Hoofdgebouw",
        },
        "RioService/ListLocations": {
            "reference_date": _date(today),
            "provider_code": facts.provider_code,
            "page": page,
        },
        # A board starts to use a location nobody uses today (onderwijslocatiegebruik).
        "RioService/CreateLocationUse": {
            "location_code": facts.vacant_location_code,
            "board_code": facts.board_code,
            "begin_date": _date(today),
        },
        "RioService/ListLocationUses": {"location_code": facts.location_code, "all_periods": True, "page": page},
        "RioService/CreateCourse": {
            "course_code": "25998",
            "code_system": "COURSE_CODE_SYSTEM_CREBO",
            "sector": "SECTOR_MBO",
            "name": "Medewerker voorbeeldtechniek",
            "level": "MBO-2",
            "begin_date": _date(today),
        },
        "RioService/ListCourses": {"reference_date": _date(today), "sector": "SECTOR_PO", "page": page},
        "RioService/CreateCourseOffering": {
            "provider_code": facts.provider_code,
            "course_code": facts.course_code,
            "location_code": facts.location_code,
            "begin_date": _date(today),
        },
        "RioService/ListCourseOfferings": {
            "reference_date": _date(today),
            "provider_code": facts.provider_code,
            "page": page,
        },
        "RioService/CheckOffering": {
            "institution_code": facts.institution_code,
            "course_code": facts.course_code,
            "location_code": facts.location_code,
            "reference_date": _date(today),
        },
        "RioService/ListChanges": {"after_cursor": "0", "limit": 10},
        "RioService/StreamChanges": {"after_cursor": "0"},
        "BrpService/GetPerson": {"bsn": facts.bsn, "include_history": True},
        "BrpService/ListPersons": {
            "born_on_or_after": _date(_years_before(today, PUPIL_AGES[1])),
            "born_on_or_before": _date(_years_before(today, PUPIL_AGES[0])),
            "only_resident": True,
            "page": page,
        },
        "BrpService/ListRejectedMessages": {"page": page},
        "BrpService/ListHeldMessages": {"page": page},
        # Follow for a year (the einddatum of the BRP update API's volgindicatie); leave end_date out for no end.
        "BrpService/SetFollowIndication": {
            "subscriber": "my-school-package",
            "bsn": facts.bsn,
            "follow": True,
            "end_date": _date(today + dt.timedelta(days=365)),
        },
        "BrpService/StreamPersonChanges": {"after_cursor": "0"},
        "RodService/IdentifyPupil": {
            "bsn": facts.bsn,
            "details": {
                "birth_date": _date(dt.date.fromisoformat(facts.birth_date)) if facts.birth_date else None,
                "sex": facts.sex,
            },
        },
        "RodService/RegisterEnrolment": {
            "document_id": "",
            "pupil": {"bsn": facts.bsn},
            "institution_code": facts.institution_code,
            "periods": [period],
            "sequence": "1",
        },
        # The bulk path: the same registration as one item of a batch (each item names its own document id).
        "RodService/RegisterEnrolments": {
            "enrolments": [
                {
                    "document_id": str(uuid.uuid4()),
                    "pupil": {"bsn": facts.bsn},
                    "institution_code": facts.institution_code,
                    "periods": [period],
                    "sequence": "1",
                }
            ]
        },
        "RodService/ChangeEnrolment": {
            "document_id": "",
            "enrolment_id": facts.enrolment_id,
            "periods": [{**period, "year": 4}],
            "sequence": str(facts.enrolment_sequence + 1),
        },
        "RodService/EndEnrolment": {
            "document_id": "",
            "enrolment_id": facts.enrolment_id,
            "end_date": _date(today),
            "sequence": str(facts.enrolment_sequence + 1),
            # A primary school: the reason is optional, one of the sandbox's SBX-UIT- codes (mbo: DUO's 01-08).
            "end_reason_code": "SBX-UIT-OVERSTAP",
        },
        "RodService/DeleteEnrolment": {"document_id": "", "enrolment_id": facts.enrolment_id},
        "RodService/GetEnrolment": {"enrolment_id": facts.enrolment_id},
        "RodService/ListEnrolments": {"institution_code": facts.institution_code, "page": page},
        "RodService/StreamFeedback": {"institution_codes": [facts.institution_code] if facts.institution_code else []},
        "RodService/AcknowledgeFeedback": {"subscriber": "my-school-package", "cursor": "1"},
        "RodService/ListFeedback": {"institution_code": facts.institution_code, "page": page},
        "RodService/GetFundingCount": {"institution_code": facts.institution_code, "count_date": _date(count_date)},
    }
    if facts.enrolled_bsn:
        xml = _death_message(facts, today).encode()
        curated["BrpService/SubmitChanges"] = {"xml_document": base64.b64encode(xml).decode()}
    examples: dict[str, dict[str, Any]] = {}
    for method in contract.methods():
        short = method.full_name.removeprefix(f"{contract.PACKAGE}.")
        body = dict(curated.get(short, {}))
        if short.split("/")[1] in {f"Get{k}" for k in record_codes} | {f"End{k}" for k in record_codes}:
            kind = short.split("/")[1].removeprefix("Get").removeprefix("End")
            body = {"code": record_codes[kind]}
            body["reference_date" if short.split("/")[1].startswith("Get") else "end_date"] = _date(today)
        if "idempotency_key" in method.input.fields_by_name:
            body = {"idempotency_key": str(uuid.uuid4()), **body}
        if "document_id" in body:
            body["document_id"] = str(uuid.uuid4())
        examples[method.full_name] = _prune(body)
    return examples


def _prune(value: Any) -> Any:
    """Drops unknown (empty or None) values, so an unseeded sandbox's example shows only what it can fill."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ("", None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def facts_json(facts: SandboxFacts) -> dict[str, Any]:
    return {**asdict(facts), "schools": list(facts.schools), "seeded": facts.seeded}
