"""Each service's migration history builds exactly the tables its models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from services.common.database import make_engine
from services.common.migrations import upgrade

SERVICES = ["sandbox", "rio", "brp_sync", "rod"]


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
