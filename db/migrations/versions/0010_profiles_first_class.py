"""Profiles are first-class: encrypted credentials, per-profile settings, who added it, a CHECK on provider

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 03:00:00

`credentials` holds Fernet tokens (pipeline/credentials.py), never plaintext; NULL means the
environment's WAPPI_TOKEN (the zero-configuration profile keeps working unchanged). `settings` is a
JSON object of per-profile overrides by variable name (pipeline/profile_settings.py). `active` stays
the on/off switch; `disabled_at` says since when it is off. The provider values are written out, as in
0009: a migration is history.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROVIDERS = ("wappi", "wappi_telegram", "telegram_bot")


def upgrade() -> None:
    op.add_column("profiles", sa.Column("credentials", sa.LargeBinary(), nullable=True))
    op.add_column("profiles", sa.Column("settings", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    op.add_column("profiles", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("profiles", sa.Column("created_by", sa.String(length=200), nullable=False, server_default=""))
    op.add_column("profiles", sa.Column("note", sa.Text(), nullable=False, server_default=""))
    # A row holding any other provider makes this fail, naming the constraint: fix the row, then rerun.
    op.create_check_constraint("ck_profiles_provider", "profiles",
                               f"provider IN ({', '.join(repr(value) for value in PROVIDERS)})")


def downgrade() -> None:
    op.drop_constraint("ck_profiles_provider", "profiles", type_="check")
    for column in ("note", "created_by", "disabled_at", "settings", "credentials"):
        op.drop_column("profiles", column)
