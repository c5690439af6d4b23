"""The dashboard: health samples over time, and the messages whose answer was a call request

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-16 10:00:00

- `health_samples`: every 30 s (beat's `pipeline.sample_health`) the depth of each queue, the
  tasks held by workers and the dead letters; one row per 30 s slot (unique), kept 14 days.
- `messages.call_requested_at`: set on the customer message whose answer asked for a call (booked
  or refused for its time), so the dashboard's funnel can count "asked for a call".
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "health_samples",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False, unique=True),
        sa.Column("queue_depths", sa.JSON(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=True),
        sa.Column("dead_letters", sa.Integer(), nullable=False),
    )
    op.add_column("messages", sa.Column("call_requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "call_requested_at")
    op.drop_table("health_samples")
