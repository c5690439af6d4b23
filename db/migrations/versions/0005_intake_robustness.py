"""intake robustness: a chat's last seen unread count, and chats whose history fails

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("last_seen_unread", sa.Integer(), nullable=True))
    op.create_table(
        "chat_poll_failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("profile_id", sa.Integer(), sa.ForeignKey("profiles.id", ondelete="CASCADE"), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("dialog", sa.JSON(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("profile_id", "chat_id", name="uq_chat_poll_failures_profile_chat"),
    )


def downgrade() -> None:
    op.drop_table("chat_poll_failures")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("last_seen_unread")
