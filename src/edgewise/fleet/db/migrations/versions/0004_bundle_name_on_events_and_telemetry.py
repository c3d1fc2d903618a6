"""events.bundle_name, telemetry.bundle_name: which bundle (not only which version) a device ran

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 13:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('events', 'telemetry'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('bundle_name', sa.String(length=128), nullable=True))


def downgrade() -> None:
    for table in ('events', 'telemetry'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('bundle_name')
