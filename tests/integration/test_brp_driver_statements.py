"""The driver-level writes and look-ups BRP ingestion uses give what SQLAlchemy's Core statements give."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlmodel import Session

from services.brp_sync import store
from services.common.database import make_engine
from services.common.raw_insert import insert_rows, update_rows
from services.common.raw_select import select_in

PERSON = store._PERSON
KEY = ("sandbox_id", "bsn")


def person(bsn: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "sandbox_id": "s",
        "bsn": bsn,
        "given_names": "Sanne",
        "surname": "Berg",
        "birth_date": dt.date(2010, 5, 17),
        "sex": "V",
        "marital_status": "ongehuwd",
    }
    return {**row, **values}


def test_rows_written_and_read_through_the_driver_are_what_core_writes_and_reads(database_url: str) -> None:
    engine = make_engine(database_url)
    PERSON.create(engine)
    try:
        with Session(engine) as session:
            insert_rows(session, PERSON, [person("999990019"), person("999990020", death_date=dt.date(2020, 1, 2))])
            update_rows(
                session,
                PERSON,
                columns=("death_date", "emigration_date", "last_sequence"),
                key=KEY,
                rows=[(None, dt.date(2021, 3, 4), 7, "s", "999990020"), (dt.date(2022, 1, 1), None, 2, "s", "nobody")],
            )
            names = tuple(column.name for column in PERSON.columns)
            read = select_in(session, PERSON, names, equal={"sandbox_id": "s"}, column="bsn", values=["999990020"])
            core = session.connection().execute(select(PERSON).where(PERSON.c.bsn == "999990020")).all()
            assert [tuple(row) for row in read] == [tuple(row) for row in core]
            changed = dict(zip(names, read[0], strict=True))
            assert (changed["death_date"], changed["emigration_date"], changed["last_sequence"]) == (
                None,
                dt.date(2021, 3, 4),
                7,
            )
            assert changed["birth_date"] == dt.date(2010, 5, 17) and changed["seeded"] is False
            assert (
                select_in(session, PERSON, ("bsn",), equal={"sandbox_id": "t"}, column="bsn", values=["999990019"])
                == []
            )
            assert select_in(session, PERSON, ("bsn",), equal={"sandbox_id": "s"}, column="bsn", values=[]) == []
            session.commit()
    finally:
        PERSON.drop(engine)
        engine.dispose()
