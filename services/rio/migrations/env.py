"""Alembic environment of the rio service."""

from alembic import context
from sqlmodel import SQLModel

from services.common.migrations import run_env
from services.rio import tables  # noqa: F401 - registers the tables on the metadata

run_env(context, SQLModel.metadata, "rio")
