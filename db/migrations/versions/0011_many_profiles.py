"""Many profiles and Telegram: bot update offsets, unreachable contacts, warm-up, the proactive cap, a
knowledge base per profile

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 17:00:00

- `profiles.update_offset`: the Bot API `getUpdates` offset, written in the transaction that stores
  the update, so a restart neither loses nor repeats one.
- `profiles.warmup_from`: when the profile's send-limit warm-up started (NULL: no warm-up, as for
  the environment's profile, a number already in use).
- `profiles.proactive_tripped_at`: the daily cap on proactive messages tripped; held until an
  operator resumes (`celery -A tasks profiles resume-proactive`).
- `contacts.unreachable_at`: the customer blocked the bot or deleted the account; never sent to again.
- `voice_media.file_ref`: the channel's reference of the file (a bot's `file_id`), to download it.
- `follow_ups.stop_reason` may be `unreachable` (the customer blocked the bot).
- `kb_files.base`: which knowledge base a file belongs to ('' is KB_DIR's; a profile with its own
  KB_DIR has its own base), unique with the path.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out, as in 0009: a migration is history. The last one is new here.
STOP_REASONS = ("client_responded", "client_said_yes", "client_said_no", "opted_out", "human_replied", "failed",
                "completed_5_touches", "unreachable")


def upgrade() -> None:
    op.add_column("profiles", sa.Column("update_offset", sa.BigInteger(), nullable=True))
    op.add_column("profiles", sa.Column("warmup_from", sa.DateTime(timezone=True), nullable=True))
    op.add_column("profiles", sa.Column("proactive_tripped_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("contacts", sa.Column("unreachable_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("contacts", sa.Column("unreachable_reason", sa.String(length=200), nullable=True))
    op.add_column("voice_media", sa.Column("file_ref", sa.String(length=255), nullable=False, server_default=""))
    op.drop_constraint("ck_follow_ups_stop_reason", "follow_ups", type_="check")
    op.create_check_constraint("ck_follow_ups_stop_reason", "follow_ups",
                               f"stop_reason IS NULL OR stop_reason IN ({', '.join(map(repr, STOP_REASONS))})")
    op.add_column("kb_files", sa.Column("base", sa.String(length=500), nullable=False, server_default=""))
    op.drop_constraint("kb_files_path_key", "kb_files", type_="unique")
    op.create_unique_constraint("uq_kb_files_base_path", "kb_files", ["base", "path"])


def downgrade() -> None:
    op.drop_constraint("uq_kb_files_base_path", "kb_files", type_="unique")
    op.execute("DELETE FROM kb_files WHERE base <> ''")
    op.create_unique_constraint("kb_files_path_key", "kb_files", ["path"])
    op.drop_column("kb_files", "base")
    op.drop_constraint("ck_follow_ups_stop_reason", "follow_ups", type_="check")
    op.create_check_constraint("ck_follow_ups_stop_reason", "follow_ups",
                               f"stop_reason IS NULL OR stop_reason IN ({', '.join(map(repr, STOP_REASONS[:-1]))})")
    op.drop_column("voice_media", "file_ref")
    op.drop_column("contacts", "unreachable_reason")
    op.drop_column("contacts", "unreachable_at")
    for column in ("proactive_tripped_at", "warmup_from", "update_offset"):
        op.drop_column("profiles", column)
