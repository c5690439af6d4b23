"""One message's chain run in the test's own process, stage after stage, by calling the pipeline
functions the tasks call (no Celery, no workers): for the unit tier.

A deferral (`Defer`) is not waited for: the stage is the thing under test, so the helper raises it.
Time is injected: ingest decides at `now`, which defaults to just after the burst window closed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from clients.gemini import get_client as get_gemini
from db.session import SessionFactory
from pipeline.channels import ChannelDirectory
from pipeline.classify import run_classify
from pipeline.ingest import Action, IngestDecision, ingest_decision
from pipeline.poll import run_poll
from pipeline.respond import run_respond
from pipeline.send import run_send
from pipeline.transcribe import run_transcribe
from settings import Settings, get_settings


def decide(sessions: SessionFactory, message_id: int, now: datetime | None = None,
           settings: Settings | None = None) -> IngestDecision:
    """The ingest stage's decision at `now`; a notice is sent at once."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC) + timedelta(seconds=settings.batch_max_wait + 1)
    with sessions() as session:
        decision = ingest_decision(session, message_id, now, window=settings.batch_window,
                                   max_wait=settings.batch_max_wait, cap=settings.batch_max_messages,
                                   opt_out_text=settings.opt_out_confirmation)
    if decision.action == Action.NOTICE and decision.notice_id is not None:
        send(sessions, decision.notice_id, settings)
    return decision


def ingest(sessions: SessionFactory, message_id: int, now: datetime | None = None,
           settings: Settings | None = None) -> int | None:
    """The ingest stage at `now`: the message id when the chain goes on; a notice is sent at once."""
    return message_id if decide(sessions, message_id, now, settings).action == Action.GO else None


def transcribe(sessions: SessionFactory, message_id: int, settings: Settings | None = None, *,
               fails_for_good: Callable[[int, Exception], bool] = lambda _voice_id, _exc: False) -> int | None:
    """The transcribe stage. `fails_for_good` is the task's retry policy for a failed note: by default
    every failure is raised (as a retry would); return True to give the note up instead."""
    def send_notice(outbox_id: int | None) -> None:
        if outbox_id is not None:
            send(sessions, outbox_id)

    settings = settings or get_settings()
    return run_transcribe(sessions, ChannelDirectory(sessions, settings), get_gemini(), message_id, settings,
                          fails_for_good=fails_for_good, enqueue_send=send_notice)


def send(sessions: SessionFactory, outbox_id: int, settings: Settings | None = None) -> int | None:
    settings = settings or get_settings()
    return run_send(sessions, outbox_id, settings, ChannelDirectory(sessions, settings))


def answer(sessions: SessionFactory, message_id: int, *, now: datetime | None = None,
           settings: Settings | None = None, reply_at: datetime | None = None) -> int | None:
    """ingest -> transcribe -> classify -> respond -> send for one stored customer message; returns
    the outbox id that was sent, or None where a stage stopped the chain. As in the worker,
    `transcribe` runs only when ingest found a voice note in the burst. `reply_at` is the time
    the agent answers at (what a requested call is checked against); the real clock by default."""
    settings = settings or get_settings()
    decision = decide(sessions, message_id, now, settings)
    carried = message_id if decision.action == Action.GO else None
    if carried is not None and decision.voice:
        carried = transcribe(sessions, carried, settings)
    if carried is not None:
        carried = run_classify(sessions, get_gemini(), carried, settings)
    outbox_id = run_respond(sessions, get_gemini(), carried, settings, reply_at) if carried is not None else None
    return send(sessions, outbox_id, settings) if outbox_id is not None else None


def poll(sessions: SessionFactory, settings: Settings | None = None) -> list[int]:
    """One poll of every profile, as the poll stage runs it; the customer messages it would start
    conversations for (the first poll of a profile records history and starts none)."""
    started: list[int] = []
    settings = settings or get_settings()
    run_poll(sessions, settings, ChannelDirectory(sessions, settings), started.extend)
    return started
