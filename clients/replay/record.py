"""`sandbox replay record`: reads a seeded sandbox through the public API and writes a day of traffic to a file."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import grpc

from clients.replay import target
from clients.replay.traffic import Day, build_day, write_day
from services.brp_sync.simulator import simulate_day


@dataclass(frozen=True)
class RecordOptions:
    address: str
    date: dt.date
    out: Path
    seed: int = 1
    schools: int = 50
    pupils_per_school: int = 15
    brp_messages: int = 10_000
    seed_size: str = "medium"
    register_seed: int = 20260101
    sandbox_key: str = ""
    # Opt-in to BSNs outside the test range (a real person may hold them): the size's full number of persons.
    synthetic_bsns: bool = False


async def record(options: RecordOptions) -> Day:
    """Makes (or uses) a seeded sandbox, reads its persons and schools, builds the day and writes it.

    The BRP part is the project's change-feed simulator (services.brp_sync.simulator.simulate_day) run on
    the persons read through BrpService.ListPersons; the enrolment part is this package's traffic model.
    """
    if options.brp_messages < 0:
        raise ValueError("--brp-messages must not be negative")
    if options.pupils_per_school < 0:
        raise ValueError("--pupils-per-school must not be negative")
    async with grpc.aio.insecure_channel(options.address) as channel:
        key = options.sandbox_key
        if not key:
            _, key = await target.fresh_sandbox(
                channel,
                date=options.date,
                seed_size=options.seed_size,
                register_seed=options.register_seed,
                name=f"replay-record-{options.date}",
                synthetic_bsns=options.synthetic_bsns,
            )
        today = await target.sandbox_today(channel, key)
        if today != options.date:
            raise ValueError(
                f"the sandbox's today is {today}, not {options.date}: record into a fresh sandbox (no --sandbox-key)"
                " or set its clock to the day first"
            )
        persons, all_schools = await target.read_world(channel, key, options.date)
    schools = target.choose_schools(all_schools, options.schools, options.seed)
    brp = (
        simulate_day(persons, options.date, options.brp_messages, options.seed, synthetic_bsns=options.synthetic_bsns)
        if options.brp_messages
        else []
    )
    day = build_day(
        date=options.date,
        seed=options.seed,
        schools=schools,
        persons=persons,
        brp=brp,
        pupils_per_school=options.pupils_per_school,
        seed_size=options.seed_size,
        register_seed=options.register_seed,
        brp_source="services.brp_sync.simulator.simulate_day",
        fingerprint=target.fingerprint(persons, schools),
        synthetic_bsns=options.synthetic_bsns,
    )
    write_day(day, options.out)
    return day
