"""Small BRP client helpers for tests: seed a sandbox's persons, write change messages, submit and read them."""

from __future__ import annotations

import datetime as dt
import uuid

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2
from services.brp_sync.rules import Gebeurtenis, Mutatie, Verblijfplaats
from services.common.caller import internal_metadata
from services.common.paging import MAX_PAGE_SIZE
from tests.conftest import SandboxHarness

DAY = dt.date(2026, 11, 28)


def stub(sandbox: SandboxHarness) -> brp_pb2_grpc.BrpServiceStub:
    return brp_pb2_grpc.BrpServiceStub(sandbox.channel)


async def seed(sandbox: SandboxHarness, seed_number: int = 7) -> list[brp_pb2.Person]:
    await stub(sandbox).SeedRegister(
        common_pb2.SeedRegisterRequest(size="small", seed=seed_number),
        metadata=internal_metadata(sandbox.internal_token, sandbox.sandbox_id),
    )
    persons: list[brp_pb2.Person] = []
    token = ""
    while True:
        page = await stub(sandbox).ListPersons(
            brp_pb2.ListPersonsRequest(page=common_pb2.PageRequest(page_size=MAX_PAGE_SIZE, page_token=token)),
            metadata=sandbox.metadata(),
        )
        persons.extend(page.persons)
        token = page.page.next_page_token
        if not token:
            return persons


def new_id() -> str:
    return str(uuid.uuid4())


def move_within(person: brp_pb2.Person, sequence: int, street: str = "Nieuwe Gracht") -> Mutatie:
    code = person.address.municipality_code
    return Mutatie(
        bericht_id=new_id(),
        bsn=person.bsn,
        volgnummer=sequence,
        gemeentecode=code,
        gebeurtenis=Gebeurtenis.VERHUISD_BINNEN,
        datum_ingang=DAY,
        verblijfplaats=Verblijfplaats(street, 7, person.address.postcode, person.address.city, code),
    )


async def submit(sandbox: SandboxHarness, document: bytes, key: str = "") -> brp_pb2.SubmitChangesResponse:
    return await stub(sandbox).SubmitChanges(
        brp_pb2.SubmitChangesRequest(xml_document=document, idempotency_key=key), metadata=sandbox.metadata()
    )


async def get(sandbox: SandboxHarness, bsn: str, history: bool = False) -> brp_pb2.Person:
    return await stub(sandbox).GetPerson(
        brp_pb2.GetPersonRequest(bsn=bsn, include_history=history), metadata=sandbox.metadata()
    )
