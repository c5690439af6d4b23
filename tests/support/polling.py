"""A poll as beat would ask for one, waited for until it ran."""

from __future__ import annotations

import sqlalchemy as sa

from db.session import get_engine
from devstack import wait_for
from tasks import app


def run_poll() -> None:
    """Ask the workers for one poll, as beat would, and wait until it ran."""
    before = _poll_count()
    app.send_task("pipeline.poll", queue="poll")
    wait_for(lambda: _poll_count() > before, timeout=30, message="a poll to finish")


def _poll_count() -> int:
    with get_engine().connect() as connection:
        value = connection.execute(sa.text("SELECT extract(epoch FROM max(last_poll_at)) FROM profiles")).scalar()
    return int(float(value) * 1000) if value is not None else 0


def first_start() -> None:
    """The product's first poll: whatever is in the chats now is history."""
    run_poll()
