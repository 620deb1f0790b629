"""log cursors never reused on SQLite (AUTOINCREMENT)

Revision ID: 9203a4999a70
Revises: 1bd6b20f7dfe
Create Date: 2026-11-29 10:32:48.804982
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '9203a4999a70'
down_revision: str | None = '1bd6b20f7dfe'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite reuses the highest rowid after those rows are deleted unless the table is AUTOINCREMENT;
    # only a rebuilt table can gain it. PostgreSQL sequences never go back, so nothing to do there.
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("rod_feedback", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("rod_feedback", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
