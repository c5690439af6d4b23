"""CHECK constraints: every status column holds one of its lifecycle's values (domain.states)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:30:00

The values are written out here, as they were at this revision: a migration is history and must not
change when the enums do. tests/unit/test_states.py checks that the live constraints match the enums;
a new value needs a new migration.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("messages", "ck_messages_status", "status",
     ("received", "answered", "waiting", "ignored", "paused", "failed", "skipped", "history", "sent")),
    ("messages", "ck_messages_direction", "direction", ("in", "out")),
    ("messages", "ck_messages_author", "author", ("customer", "bot", "phone")),
    ("outbox", "ck_outbox_status", "status", ("pending", "sending", "sent", "failed", "cancelled")),
    ("outbox", "ck_outbox_kind", "kind", ("reply", "notice", "follow_up")),
    ("follow_ups", "ck_follow_ups_status", "status", ("active", "stopped", "completed")),
    ("scheduled_calls", "ck_scheduled_calls_status", "status", ("booked",)),
    ("model_usage", "ck_model_usage_purpose", "purpose", ("reply", "classify", "transcribe", "follow_up")),
)
STOP_REASONS = ("client_responded", "client_said_yes", "client_said_no", "opted_out", "human_replied",
                "failed", "completed_5_touches")


def _in(column: str, allowed: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in allowed)})"


def upgrade() -> None:
    # A row holding any other value makes this fail, naming the constraint: fix the row, then rerun.
    for table, name, column, allowed in CHECKS:
        op.create_check_constraint(name, table, _in(column, allowed))
    op.create_check_constraint("ck_follow_ups_stop_reason", "follow_ups",
                               f"stop_reason IS NULL OR {_in('stop_reason', STOP_REASONS)}")


def downgrade() -> None:
    op.drop_constraint("ck_follow_ups_stop_reason", "follow_ups", type_="check")
    for table, name, _column, _allowed in reversed(CHECKS):
        op.drop_constraint(name, table, type_="check")
