"""Stage `recover`: restart work that no queue holds any more (say, after Redis lost its data).

Only work nothing holds is restarted. Both an outbox row that waits (the send limit, the settle
delay of an unclear send, an offline profile) and a `received` customer message carry
`next_attempt_at`: when their next run is due, refreshed at every stage start, retry and deferral
(tasks.base stamps a message's whole burst). A thing is stranded only once that time is past by the
stage's hard time limit plus a margin; a chain merely retrying through a Gemini outage keeps moving
its mark forward and is left alone. A message never stamped (lost between commit and enqueue) is
stranded once its burst window and one stage run are past. Each restart moves the mark forward, so
the same thing is restarted at most once per period. Every stage is idempotent, so a restart of
something merely slow (say, deep in a queue) costs a no-op, never a second message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from celeryconfig import MAX_COUNTDOWN, hard_limit
from db.models import Message, Outbox
from domain.states import OUTBOX_UNSENT, Direction, MessageStatus
from settings import Settings

BATCH = 200
MESSAGE_STAGES = ("pipeline.ingest", "pipeline.transcribe", "pipeline.classify", "pipeline.respond")
MARGIN = timedelta(minutes=2)


def message_stage_limit() -> timedelta:
    """The longest one run of a message stage may take (its hard time limit) plus the margin."""
    return timedelta(seconds=max(hard_limit(name) for name in MESSAGE_STAGES)) + MARGIN


def message_stranded_after(settings: Settings) -> timedelta:
    """A message never stamped by a stage: its burst window, then one stage run, plus the margin."""
    return timedelta(seconds=settings.batch_max_wait) + message_stage_limit()


def stranded_messages(session: Session, now: datetime, settings: Settings) -> list[int]:
    """`received` messages that nothing holds: their next run was due more than one stage run
    ago (or, never stamped, their burst is long closed). Each restart is written down."""
    found = list(session.scalars(select(Message.id).where(
        Message.status == MessageStatus.RECEIVED, Message.direction == Direction.IN,
        or_(and_(Message.next_attempt_at.is_(None), Message.created_at < now - message_stranded_after(settings)),
            Message.next_attempt_at < now - message_stage_limit()))
        .order_by(Message.id).limit(BATCH)))
    if found:
        session.execute(update(Message).where(Message.id.in_(found)).values(
            next_attempt_at=now + message_stage_limit()))
    return found


def outbox_stranded_after(settings: Settings) -> timedelta:
    """A row with no deferral recorded: one retry countdown and one send, plus a margin."""
    return timedelta(seconds=MAX_COUNTDOWN + hard_limit("pipeline.send")) + MARGIN


def stranded_outbox(session: Session, now: datetime, settings: Settings) -> list[int]:
    """Unsent rows that nothing holds; each restart is written down, so a row stuck behind a deep
    queue is restarted at most once per period, not every minute."""
    idle_since = now - outbox_stranded_after(settings)
    overdue = now - timedelta(seconds=hard_limit("pipeline.send")) - MARGIN
    found = list(session.scalars(select(Outbox.id).where(
        Outbox.status.in_(OUTBOX_UNSENT),
        or_(and_(Outbox.next_attempt_at.is_(None), Outbox.updated_at < idle_since),
            Outbox.next_attempt_at < overdue))
        .order_by(Outbox.id).limit(BATCH)))
    if found:
        session.execute(update(Outbox).where(Outbox.id.in_(found)).values(
            next_attempt_at=now + outbox_stranded_after(settings)))
    return found
