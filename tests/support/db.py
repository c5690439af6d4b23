"""Rows as a test writes and reads them: in its own session (the unit tier) or committed (through workers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.models import Contact, Message, Outbox, Profile
from db.session import get_engine, session_scope
from domain.states import Author, Direction, MessageStatus, OutboxKind, OutboxStatus
from tests.support.env import PROFILE_ID


def empty_tables() -> None:
    """Every table the pipeline writes emptied (not the knowledge base's), ids from 1 again."""
    with get_engine().begin() as connection:
        connection.execute(sa.text(
            "TRUNCATE model_usage, dead_letters, scheduled_calls, follow_ups, whitelist, outbox, "
            "messages, contacts, profiles, health_samples RESTART IDENTITY CASCADE"))


def rows(query: str, **params: Any) -> list[Any]:
    with get_engine().connect() as connection:
        return list(connection.execute(sa.text(query), params).all())


def rows_in(session: Session, query: str, **params: Any) -> list[Any]:
    """The same read inside a test's own session (the unit tier: rows not committed, rolled back)."""
    return list(session.execute(sa.text(query), params).all())


# When the contacts `add_contact` makes first wrote: before any time a test or the emulator uses.
FIRST_WORDS_AT = datetime(2020, 1, 1, tzinfo=UTC)


def add_contact(session: Session, phone: str, *, wrote: bool = True, **fields: Any) -> tuple[int, int]:
    """A lead of the test profile (created on first use); (contact id, profile id). The contact has
    written to the profile once, long ago (the send stage refuses chats that never wrote), unless
    `wrote` is False."""
    profile = session.scalar(sa.select(Profile).where(Profile.profile_id == PROFILE_ID))
    if profile is None:
        profile = Profile(profile_id=PROFILE_ID, name="test")
        session.add(profile)
        session.flush()
    contact = Contact(profile_id=profile.id, phone=phone, chat_id=f"{phone}@c.us", is_client=True, **fields)
    session.add(contact)
    session.flush()
    if wrote:
        session.add(Message(profile_id=profile.id, contact_id=contact.id, provider_message_id=f"first-{phone}",
                            direction=Direction.IN, author=Author.CUSTOMER, type="chat", text="Здравствуйте",
                            status=MessageStatus.ANSWERED, sent_at=FIRST_WORDS_AT))
        session.flush()
    return contact.id, profile.id


def add_outbox_row(session: Session, contact_id: int, profile_id: int, key: str, body: str,
               kind: OutboxKind = OutboxKind.NOTICE) -> int:
    """A pending row to the contact, flushed where the pipeline's sessions see it; its id."""
    row = Outbox(profile_id=profile_id, contact_id=contact_id, idempotency_key=key, kind=kind, body=body,
                 status=OutboxStatus.PENDING)
    session.add(row)
    session.flush()
    return row.id


def a_contact(phone: str) -> tuple[int, int]:
    """A lead of the test profile, committed (for tests through workers); (contact id, profile id)."""
    with session_scope() as session:
        return add_contact(session, phone)


def outbox_row(contact_id: int, profile_id: int, key: str, body: str) -> int:
    """A pending notice to the contact, committed; its outbox id."""
    with session_scope() as session:
        return add_outbox_row(session, contact_id, profile_id, key, body)
