"""How a new customer message travels: the chain of stages, built in one place."""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature

from tasks.classify import classify
from tasks.ingest import ingest
from tasks.respond import respond
from tasks.send import send
from tasks.transcribe import transcribe


def conversation_chain(message_id: int) -> Signature:
    """ingest -> transcribe -> classify -> respond -> send. Each stage returns the id the next
    one needs, or None to stop the chain there. The chain is built whole, and `ingest` drops the
    `transcribe` step once it has seen that the burst holds no voice note (a burst is known only
    when its window closes)."""
    return chain(ingest.si(message_id), transcribe.s(), classify.s(), respond.s(), send.s())


def start_conversations(message_ids: list[int]) -> None:
    for message_id in message_ids:
        conversation_chain(message_id).apply_async()
