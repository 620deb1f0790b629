"""Alembic environment of the sandbox admin service."""

from alembic import context
from sqlmodel import SQLModel

from services.common.migrations import run_env
from services.sandbox import tables  # noqa: F401 - registers the tables on the metadata

run_env(context, SQLModel.metadata, "sandbox")
