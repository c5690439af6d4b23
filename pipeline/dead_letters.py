"""The dead-letter table: a task (or one item of it) that failed for good, kept for an operator to
read and replay (`celery -A tasks dlq`). Values arrive masked; this only stores them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import DeadLetter
from db.session import insert_ignore


def write_dead_letter(session: Session, values: dict[str, Any], *, attempts: int, now: datetime) -> None:
    """One letter per task id: a task that fails for good again updates its letter."""
    if insert_ignore(session, DeadLetter, values, ["task_id"]) is None:
        session.execute(update(DeadLetter).where(DeadLetter.task_id == values["task_id"])
                        .values(exception=values["exception"], traceback=values["traceback"],
                                attempts=attempts, last_failed_at=now))
