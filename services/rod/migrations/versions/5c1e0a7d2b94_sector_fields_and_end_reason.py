"""sector fields (mbo leerweg and intensity, ho mode of study) and the reason an enrolment ended

Revision ID: 5c1e0a7d2b94
Revises: 722c8d15ec0d
Create Date: 2026-11-29 12:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1e0a7d2b94"
down_revision: str | None = "722c8d15ec0d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Existing rows get "": enrolments registered before these fields existed carry none of them.
_COLUMNS = (("leerweg", 3), ("intensity", 2), ("study_mode", 10), ("end_reason", 20))


def upgrade() -> None:
    with op.batch_alter_table("rod_enrolment", schema=None) as batch_op:
        for name, length in _COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("rod_enrolment", schema=None) as batch_op:
        for name, _length in reversed(_COLUMNS):
            batch_op.drop_column(name)
