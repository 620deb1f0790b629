"""RIO at national size: seeds the full profile into a temporary SQLite database, then times ROD's lookup."""

from __future__ import annotations

import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, col, select

from common.database import Database, make_engine
from common.migrations import upgrade
from common.seeding import PROFILES
from services.rio import seed, store
from services.rio.tables import RioCourseOffering, RioProvider

SANDBOX = "sbx_bench"
CHECKS = 2000


def main() -> None:
    size = sys.argv[2] if len(sys.argv) > 2 else "full"
    profile = PROFILES[size]
    with tempfile.TemporaryDirectory() as folder:
        database = Database(make_engine(f"sqlite:///{Path(folder) / 'rio.db'}"))
        upgrade("rio", database.engine)

        started = time.perf_counter()
        plan = seed.plan(profile, 20260101)
        planned = time.perf_counter()
        created = database.transaction(lambda s: seed.apply(s, sandbox_id=SANDBOX, plan=plan, size=size, seed=20260101))
        written = time.perf_counter()
        counts = dict(created.created)
        print(f"seed {size} (SQLite, temporary file): {written - started:.2f} s total")
        print(f"  plan (faker nl_NL, deterministic): {planned - started:.2f} s")
        print(f"  bulk insert + change log, one transaction: {written - planned:.2f} s")
        print(f"  created: {counts}")

        with Session(database.engine) as session:
            primary = session.exec(select(func.count()).select_from(RioProvider).where(RioProvider.sector == 1)).one()
            print(f"  primary schools: {primary}")
            rows = session.exec(
                select(RioProvider.institution_code, RioCourseOffering.course_code, RioCourseOffering.location_code)
                .join(
                    RioProvider,
                    (col(RioProvider.sandbox_id) == col(RioCourseOffering.sandbox_id))
                    & (col(RioProvider.provider_code) == col(RioCourseOffering.provider_code)),
                )
                .where(RioCourseOffering.sandbox_id == SANDBOX)
            ).all()
            day = dt.date(2025, 10, 1)
            picks = random.Random(1).choices(rows, k=CHECKS)
            started = time.perf_counter()
            offered = 0
            for institution, course, location in picks:
                answer = store.check_offering(
                    session,
                    sandbox_id=SANDBOX,
                    institution_code=institution,
                    course_code=course,
                    location_code=location,
                    day=day,
                )
                offered += answer.offered
            elapsed = time.perf_counter() - started
        print(
            f"CheckOffering lookups (store, no gRPC) at this size: {CHECKS} in {elapsed:.2f} s, "
            f"{elapsed / CHECKS * 1e6:.0f} µs each, {offered} offered on {day}"
        )
        database.engine.dispose()


if __name__ == "__main__":
    main()
