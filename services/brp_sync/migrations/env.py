"""Alembic environment of the brp_sync service."""

from alembic import context
from sqlmodel import SQLModel

from services.brp_sync import tables  # noqa: F401 - registers the tables on the metadata
from services.common.migrations import run_env

run_env(context, SQLModel.metadata, "brp_sync")
