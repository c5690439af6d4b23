"""The MCP server: its bearer tokens, the audit of its writes, and the outbox kind `mcp`

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-14 10:00:00

- `mcp_tokens`: one row per bearer token (`celery -A tasks mcp-token create`). Only the token's sha256
  is stored; `scopes` is a JSON list (read, write, admin), `profiles` a JSON list of profile ids or
  NULL for every profile. A revoked or expired token is refused.
- `mcp_audit`: every call of a write tool, dry run or applied or refused: which token, which tool,
  the arguments (phone numbers masked), the outcome and the result.
- `outbox.kind` may be `mcp`: a message an outside agent asked us to send. The values are written
  out, as in 0009 and 0011: a migration is history.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOX_KINDS = ("reply", "notice", "follow_up", "mcp")


def _kinds(allowed: tuple[str, ...]) -> str:
    return f"kind IN ({', '.join(repr(value) for value in allowed)})"


def upgrade() -> None:
    op.create_table(
        "mcp_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("profiles", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "mcp_audit",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("mcp_tokens.id", ondelete="SET NULL"), nullable=True),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_mcp_audit_created_at", "mcp_audit", ["created_at"])
    # A row holding any other kind makes this fail, naming the constraint: fix the row, then rerun.
    op.drop_constraint("ck_outbox_kind", "outbox", type_="check")
    op.create_check_constraint("ck_outbox_kind", "outbox", _kinds(OUTBOX_KINDS))


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE kind = 'mcp'")
    op.drop_constraint("ck_outbox_kind", "outbox", type_="check")
    op.create_check_constraint("ck_outbox_kind", "outbox", _kinds(OUTBOX_KINDS[:-1]))
    op.drop_index("ix_mcp_audit_created_at", table_name="mcp_audit")
    op.drop_table("mcp_audit")
    op.drop_table("mcp_tokens")
