"""shadow assignments, shadow reports and captured frames

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'shadow_assignments',
        sa.Column('device_id', sa.String(length=40), nullable=False),
        sa.Column('deployment_id', sa.String(length=40), nullable=False),
        sa.Column('bundle_digest', sa.String(length=80), nullable=False),
        sa.Column('share', sa.Float(), nullable=False),
        sa.Column('assigned_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('device_id'),
    )
    op.create_index('ix_shadow_assignments_deployment_id', 'shadow_assignments', ['deployment_id'])
    op.create_table(
        'shadow_reports',
        sa.Column('id', ROW_ID, autoincrement=True, nullable=False),
        sa.Column('device_id', sa.String(length=40), nullable=False),
        sa.Column('event_seq', sa.BigInteger(), nullable=False),
        sa.Column('ts', sa.Float(), nullable=False),
        sa.Column('camera', sa.String(length=64), nullable=False),
        sa.Column('candidate_digest', sa.String(length=80), nullable=True),
        sa.Column('candidate_version', sa.String(length=64), nullable=False),
        sa.Column('serving_version', sa.String(length=64), nullable=False),
        sa.Column('frames_shadowed', sa.Integer(), nullable=False),
        sa.Column('top1_agreement', sa.Float(), nullable=True),
        sa.Column('report', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('device_id', 'event_seq', name='uq_shadow_reports_device_seq'),
    )
    op.create_index('ix_shadow_reports_candidate_digest', 'shadow_reports', ['candidate_digest'])
    op.create_table(
        'captured_frames',
        sa.Column('id', ROW_ID, autoincrement=True, nullable=False),
        sa.Column('device_id', sa.String(length=40), nullable=False),
        sa.Column('capture_id', sa.String(length=128), nullable=False),
        sa.Column('ts', sa.Float(), nullable=False),
        sa.Column('received_at', sa.Float(), nullable=False),
        sa.Column('camera', sa.String(length=64), nullable=False),
        sa.Column('bundle_version', sa.String(length=64), nullable=True),
        sa.Column('label', sa.String(length=128), nullable=True),
        sa.Column('meta', sa.JSON(), nullable=False),
        sa.Column('jpeg', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('device_id', 'capture_id', name='uq_captured_frames_device_capture'),
    )
    op.create_index('ix_captured_frames_ts', 'captured_frames', ['ts'])


def downgrade() -> None:
    op.drop_index('ix_captured_frames_ts', table_name='captured_frames')
    op.drop_table('captured_frames')
    op.drop_index('ix_shadow_reports_candidate_digest', table_name='shadow_reports')
    op.drop_table('shadow_reports')
    op.drop_index('ix_shadow_assignments_deployment_id', table_name='shadow_assignments')
    op.drop_table('shadow_assignments')
