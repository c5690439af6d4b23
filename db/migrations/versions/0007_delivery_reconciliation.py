"""delivery reconciliation: an outbox row's history anchor and next check, a profile's down reason

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Reconciliation anchored on Wappi's clock, settle-delay bookkeeping, and held sends.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("history_anchor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("last_send_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("down_reason", sa.String(200), nullable=True))
        batch.add_column(sa.Column("down_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("down_since")
        batch.drop_column("down_reason")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("last_send_at")
        batch.drop_column("history_anchor")
