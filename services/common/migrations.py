"""Alembic, one migration history per service: each service migrates only its own tables (its table prefix)."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Engine

SERVICES_DIR = Path(__file__).resolve().parent.parent


def alembic_config(service: str, engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.attributes["service"] = service
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(service: str, engine: Engine) -> None:
    """Brings the service's tables to the newest revision.

    Replicas and workers start at once: on PostgreSQL they take turns (a
    session advisory lock), so one migrates and the others find it done.
    """
    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(service, engine), "head")
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": f"alembic:{service}"})
        try:
            command.upgrade(alembic_config(service, engine), "head")
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": f"alembic:{service}"})
            connection.commit()


def run_env(context: EnvironmentContext, metadata: MetaData, service: str) -> None:
    """Body of every service's migrations/env.py: migrate tables named `<service>_*` only."""
    prefix = f"{service}_"

    def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        if type_ == "table":
            return bool(name and name.startswith(prefix))
        return True

    engine: Engine | None = context.config.attributes.get("engine")
    if engine is None:
        from services.common.database import make_engine
        from services.common.settings import get_settings

        engine = make_engine(get_settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_object=include_object,
            version_table=f"alembic_version_{service}",
            # SQLite cannot ALTER most things; batch mode copies the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


def main() -> None:
    """python -m services.common.migrations revision SERVICE "message": autogenerates a revision from the models."""
    if len(sys.argv) != 4 or sys.argv[1] != "revision":
        raise SystemExit('usage: python -m services.common.migrations revision SERVICE "message"')
    service, message = sys.argv[2], sys.argv[3]
    from services.common.database import make_engine

    engine = make_engine("sqlite://")
    upgrade(service, engine)
    command.revision(alembic_config(service, engine), message=message, autogenerate=True)


if __name__ == "__main__":
    main()
