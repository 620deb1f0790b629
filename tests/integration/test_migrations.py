"""Each service's migration history builds exactly the tables its models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import importlib
import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

from services.common.database import make_engine
from services.common.migrations import alembic_config, upgrade

SERVICES = ["sandbox", "rio", "brp_sync", "rod"]
# services/rio/migrations/versions/2d6c187e7e85_location_use.py
LOCATION_USE_REVISION = "2d6c187e7e85"


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_the_models(database_url: str, service: str) -> None:
    importlib.import_module(f"services.{service}.tables")
    engine = make_engine(database_url)
    prefix = f"{service}_"

    def own(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
        return bool(table and table.startswith(prefix))

    try:
        upgrade(service, engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"include_object": own, "compare_type": True})
            diff: list[Any] = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"{service}: the models differ from the migrations; add a revision (README: Database migrations)"


def test_persons_stored_before_stays_were_kept_get_them_from_the_log(database_url: str) -> None:
    """e643de65c1de rebuilds each person's stays abroad from the applied-change log: a return made before the
    upgrade still leaves its stay in the person's history, and a person abroad gets the open stay."""
    engine = make_engine(database_url)
    try:
        command.upgrade(alembic_config("brp_sync", engine), "21845fa44ce7")
        person = (
            "INSERT INTO brp_sync_person (sandbox_id, bsn, given_names, surname_prefix, surname, birth_date, sex,"
            " marital_status, emigration_date, emigration_country_code, last_sequence, a_nummer, versienummer, seeded)"
            " VALUES ('s', :bsn, 'Sam', '', 'Jansen', '2014-05-05', 'O', 'ongehuwd', :left, :country, 2, '', 2, false)"
        )
        logged = (
            "INSERT INTO brp_sync_applied_change (sandbox_id, bsn, message_id, sequence, event_type, effective_date,"
            " applied_at, person_after) VALUES ('s', :bsn, :id, :sequence, :event, :on, '2026-11-01 10:00:00', :after)"
        )
        with engine.begin() as connection:
            connection.execute(text(person), {"bsn": "999970008", "left": None, "country": ""})
            connection.execute(text(person), {"bsn": "999970021", "left": "2026-01-02", "country": "9089"})
            for sequence, event, on, after in (
                (
                    1,
                    "nl.brp.verhuisd.naar-buitenland",
                    "2025-09-20",
                    {"emigration_date": "2025-09-20", "emigration_country_code": "5010"},
                ),
                (2, "nl.brp.ingeschreven.immigratie", "2025-10-11", {"emigration_date": None}),
            ):
                connection.execute(
                    text(logged),
                    {
                        "bsn": "999970008",
                        "id": f"m{sequence}",
                        "sequence": sequence,
                        "event": event,
                        "on": on,
                        "after": json.dumps(after),
                    },
                )
        upgrade("brp_sync", engine)
        with engine.connect() as connection:
            stays = dict(connection.execute(text("SELECT bsn, abroad_json FROM brp_sync_person")).all())
    finally:
        engine.dispose()
    assert json.loads(stays["999970008"]) == [["5010", "2025-09-20", "2025-10-11"]]
    assert json.loads(stays["999970021"]) == [["9089", "2026-01-02", None]]


def test_the_location_use_migration_turns_each_locations_board_into_a_use_over_its_whole_life(
    database_url: str,
) -> None:
    """Data held before onderwijslocatiegebruik keeps working: the board on a location's versions uses it from
    the first version's begindatum to the latest version's einddatum."""
    engine = make_engine(database_url)
    config = alembic_config("rio", engine)
    try:
        before = ScriptDirectory.from_config(config).get_revision(LOCATION_USE_REVISION).down_revision
        command.upgrade(config, str(before))  # the revision before rio_location_use
        rows = [
            ("sbx_a", "100X001", 1, "100B001", dt.date(2010, 8, 1), dt.date(2019, 12, 31)),
            ("sbx_a", "100X001", 2, "100B001", dt.date(2020, 1, 1), dt.date(2030, 7, 31)),
            ("sbx_a", "100X002", 1, "100B002", dt.date(2015, 8, 1), None),
            ("sbx_b", "100X001", 1, "100B009", dt.date(2001, 8, 1), None),
        ]
        with engine.begin() as connection:
            for sandbox_id, code, version, board, begin, end in rows:
                connection.execute(
                    sa.text(
                        "INSERT INTO rio_location (sandbox_id, location_code, version, board_code, name, street, "
                        "house_number, house_number_addition, postcode, city, municipality_code, country_code, "
                        "begin_date, end_date) VALUES (:s, :c, :v, :b, 'X', '', 0, '', '', '', '', 'NL', :begin, :end)"
                    ),
                    {"s": sandbox_id, "c": code, "v": version, "b": board, "begin": begin, "end": end},
                )
        upgrade("rio", engine)
        with engine.connect() as connection:
            uses = connection.execute(
                sa.text(
                    "SELECT sandbox_id, location_code, board_code, begin_date, end_date, use_id "
                    "FROM rio_location_use ORDER BY sandbox_id, location_code"
                )
            ).all()
    finally:
        engine.dispose()
    as_dates = [
        (s, c, b, dt.date.fromisoformat(str(begin)), dt.date.fromisoformat(str(end)) if end else None)
        for s, c, b, begin, end, _ in uses
    ]
    assert as_dates == [
        ("sbx_a", "100X001", "100B001", dt.date(2010, 8, 1), dt.date(2030, 7, 31)),
        ("sbx_a", "100X002", "100B002", dt.date(2015, 8, 1), None),
        ("sbx_b", "100X001", "100B009", dt.date(2001, 8, 1), None),
    ]
    assert len({use_id for *_, use_id in uses}) == 3
