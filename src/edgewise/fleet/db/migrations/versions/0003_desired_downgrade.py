"""devices.desired_downgrade: an operator's rollback may take a device to an older version

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 02:30:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('devices') as batch:
        batch.add_column(sa.Column('desired_downgrade', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('devices') as batch:
        batch.drop_column('desired_downgrade')
