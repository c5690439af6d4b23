"""What the delivery tests set up. For the unit tier, inside the test's own session: a contact,
outbox rows to it, settings with other limits, and the moments `send` reads from a row (its last
send call, its age), moved back instead of waited for."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.models import Outbox
from settings import Settings, get_settings

SEND_PATHS = ["message/send", "message/reply"]  # what Wappi's send faults are aimed at


def settings_with(**changes: Any) -> Settings:
    """The test environment's settings with some changed, for one call (the process keeps its own)."""
    return dataclasses.replace(get_settings(), **changes)


def last_send_call_ago(session: Session, outbox_id: int, seconds: float) -> None:
    """The row's last send call was `seconds` ago: the settle delay counts from it."""
    session.execute(sa.update(Outbox).where(Outbox.id == outbox_id).values(
        last_send_at=datetime.now(UTC) - timedelta(seconds=seconds)))
    session.flush()


def written_ago(session: Session, outbox_id: int, seconds: float) -> None:
    """The row was written `seconds` ago: HOLD_MAX_AGE counts from it."""
    session.execute(sa.update(Outbox).where(Outbox.id == outbox_id).values(
        created_at=datetime.now(UTC) - timedelta(seconds=seconds)))
    session.flush()
