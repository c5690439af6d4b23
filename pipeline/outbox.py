"""The outbox: every message to a customer is first a row here, written in the same transaction as
the decision to send it, then delivered by `send`. This is the one writer of outbox rows.

The idempotency key makes the write once-only: a stage that runs twice finds its first row. The
caller enqueues `send` with the returned id after its transaction commits (tasks.app.enqueue_send).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Outbox
from db.session import insert_ignore
from domain.states import OUTBOX_UNSENT, OutboxKind, OutboxStatus


def reply_key(message_id: int) -> str:
    return f"reply:{message_id}"


def opt_out_key(contact_id: int) -> str:
    return f"opt-out:{contact_id}"


def voice_fallback_key(message_id: int) -> str:
    return f"voice-fallback:{message_id}"


FOLLOW_UP_PREFIX = "follow_up"


def follow_up_key(chain_id: int, touch_number: int) -> str:
    return f"{FOLLOW_UP_PREFIX}:{chain_id}:{touch_number}"


def follow_up_chain_of(idempotency_key: str) -> int | None:
    """The follow-up chain a touch's key names, or None for any other row."""
    parts = idempotency_key.split(":")
    if len(parts) == 3 and parts[0] == FOLLOW_UP_PREFIX and parts[1].isdigit():
        return int(parts[1])
    return None


def write_outbox(session: Session, *, profile_id: int, contact_id: int, key: str, kind: OutboxKind, body: str,
                 reply_to: str | None = None, source_message_id: int | None = None) -> int | None:
    """Write the row for `key` once. Returns its id while it is unsent (to enqueue `send` with after
    the commit), None once it was sent, failed or cancelled: there is nothing to send then."""
    written = insert_ignore(session, Outbox, {
        "profile_id": profile_id, "contact_id": contact_id, "idempotency_key": key, "kind": kind,
        "body": body, "reply_to_provider_id": reply_to, "source_message_id": source_message_id,
        "status": OutboxStatus.PENDING,
    }, ["idempotency_key"])
    if written is not None:  # new, so pending
        return written
    return unsent_row(session, key)


def unsent_row(session: Session, key: str) -> int | None:
    """The id of the row written for `key`, while it is unsent."""
    return session.scalar(select(Outbox.id).where(Outbox.idempotency_key == key, Outbox.status.in_(OUTBOX_UNSENT)))
