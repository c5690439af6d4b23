"""Driving the follow-up ladder from a test, at an injected time, the way the beat and the
`follow_up` task do."""

from __future__ import annotations

from datetime import datetime

from clients.gemini import get_client
from db.session import session_scope
from pipeline.followup import run_touch, sweep_once
from settings import get_settings


def sweep(now: datetime) -> list[tuple[int, int]]:
    """One follow-up sweep at `now`: the touches it claimed."""
    with session_scope() as session:
        return sweep_once(session, now, get_settings())


def touch(chain_id: int, touch_number: int, now: datetime) -> int | None:
    """Write one claimed touch at `now`; its outbox id, or None when the chain stopped instead."""
    return run_touch(session_scope, get_client(), chain_id, touch_number, now, get_settings())
