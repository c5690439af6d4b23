"""Sweep `recover`: restart work that no queue holds any more (say, after Redis lost its data).

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

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update

from db.models import Message, Outbox
from db.session import session_scope
from settings import Settings, get_settings
from tasks.app import app
from tasks.base import MAX_COUNTDOWN, PipelineTask
from tasks.chains import start_conversations

log = logging.getLogger(__name__)
BATCH = 200
MESSAGE_STAGES = ("pipeline.ingest", "pipeline.transcribe", "pipeline.classify", "pipeline.respond")
MARGIN = timedelta(minutes=2)


def _hard_limit(task_name: str) -> int:
    from celeryconfig import STAGES

    return STAGES[task_name][3]


def retry_path(task_name: str, attempts: int) -> timedelta:
    """The longest one task can keep its work without failing for good: every attempt runs to its
    hard time limit, and every countdown between attempts is the longest one (a server's retry
    hint, such as Gemini's retryDelay, is a floor of the backoff; MAX_COUNTDOWN caps it)."""
    return timedelta(seconds=attempts * _hard_limit(task_name) + (attempts - 1) * MAX_COUNTDOWN)


def message_stage_limit() -> timedelta:
    """The longest one run of a message stage may take (its hard time limit) plus the margin."""
    return timedelta(seconds=max(_hard_limit(name) for name in MESSAGE_STAGES)) + MARGIN


def message_stranded_after(settings: Settings) -> timedelta:
    """A message never stamped by a stage: its burst window, then one stage run, plus the margin."""
    return timedelta(seconds=settings.batch_max_wait) + message_stage_limit()


def stranded_messages(now: datetime, settings: Settings) -> list[int]:
    """`received` messages that nothing holds: their next run was due more than one stage run
    ago (or, never stamped, their burst is long closed). Each restart is written down."""
    with session_scope() as session:
        found = list(session.scalars(select(Message.id).where(
            Message.status == "received", Message.direction == "in",
            or_(and_(Message.next_attempt_at.is_(None), Message.created_at < now - message_stranded_after(settings)),
                Message.next_attempt_at < now - message_stage_limit()))
            .order_by(Message.id).limit(BATCH)))
        if found:
            session.execute(update(Message).where(Message.id.in_(found)).values(
                next_attempt_at=now + message_stage_limit()))
    return found


def outbox_stranded_after(settings: Settings) -> timedelta:
    """A row with no deferral recorded: one retry countdown and one send, plus a margin."""
    return timedelta(seconds=MAX_COUNTDOWN + _hard_limit("pipeline.send")) + MARGIN


def stranded_outbox(now: datetime, settings: Settings) -> list[int]:
    """Unsent rows that nothing holds; each restart is written down, so a row stuck behind a deep
    queue is restarted at most once per period, not every minute."""
    idle_since = now - outbox_stranded_after(settings)
    overdue = now - timedelta(seconds=_hard_limit("pipeline.send")) - MARGIN
    with session_scope() as session:
        found = list(session.scalars(select(Outbox.id).where(
            Outbox.status.in_(("pending", "sending")),
            or_(and_(Outbox.next_attempt_at.is_(None), Outbox.updated_at < idle_since),
                Outbox.next_attempt_at < overdue))
            .order_by(Outbox.id).limit(BATCH)))
        if found:
            session.execute(update(Outbox).where(Outbox.id.in_(found)).values(
                next_attempt_at=now + outbox_stranded_after(settings)))
    return found


@app.task(base=PipelineTask, name="pipeline.recover")
def recover(now: datetime | None = None) -> int:
    """`now` is for tests (called directly); the beat schedule passes nothing."""
    from tasks.send import send

    settings = get_settings()
    now = now or datetime.now(UTC)
    messages = stranded_messages(now, settings)
    outbox = stranded_outbox(now, settings)
    if messages or outbox:
        log.warning("recover: restarting %d stranded messages and %d unsent outbox rows",
                    len(messages), len(outbox))
    start_conversations(messages)
    for outbox_id in outbox:
        send.delay(outbox_id)
    return len(messages) + len(outbox)
