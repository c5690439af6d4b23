"""The follow-up ladder from a test: a lead who went silent after our reply, and the ladder run at an
injected time, the way the beat's sweep and the `follow_up` task run it."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from clients.gemini import get_client
from db.models import Contact, Message, Profile
from db.session import SessionFactory
from domain.states import Author
from pipeline.contacts import note_message
from pipeline.followup import run_touch, sweep_once
from settings import get_settings
from tests.support.env import PROFILE_ID

ALMATY = ZoneInfo("Asia/Almaty")
T0 = datetime(2025, 10, 2, 15, 0, tzinfo=ALMATY)  # a Thursday afternoon: our reply, then silence


def lead_went_silent(session: Session, phone: str = "77300000001", *, client_text: str = "Спасибо, я подумаю",
                     replied_at: datetime = T0, names: dict[str, str] | None = None) -> int:
    """A lead who wrote, got our reply at `replied_at`, and said nothing since; its contact id.
    `names`: the contact's push_name, full_name, business_name (push name "Алия" by default)."""
    profile = session.scalar(sa.select(Profile).where(Profile.profile_id == PROFILE_ID))
    if profile is None:
        profile = Profile(profile_id=PROFILE_ID, name="Main")
        session.add(profile)
        session.flush()
    contact = Contact(profile_id=profile.id, phone=phone, chat_id=f"{phone}@c.us", is_client=True,
                      **(names or {"push_name": "Алия"}))
    session.add(contact)
    session.flush()
    for offset, author, text in ((-60, Author.CUSTOMER, client_text), (0, Author.BOT, "Будем рады помочь!")):
        sent_at = replied_at + timedelta(minutes=offset)
        session.add(Message(profile_id=profile.id, contact_id=contact.id, provider_message_id=f"{phone}{offset}",
                            direction="in" if author == Author.CUSTOMER else "out", author=author, text=text,
                            status="answered" if author == Author.CUSTOMER else "sent", sent_at=sent_at))
        note_message(session, contact, author, sent_at, text=text)
    contact.awaiting_follow_up = True  # what `send` sets after our reply went out
    session.flush()
    return contact.id


def run_ladder_until(sessions: SessionFactory, now: datetime) -> list[int]:
    """One sweep at `now` and every touch it claims; the outbox ids written."""
    settings = get_settings()
    with sessions() as session:
        claimed = sweep_once(session, now, settings)
    written = []
    for chain_id, touch_number in claimed:
        outbox_id = run_touch(sessions, get_client(), chain_id, touch_number, now, settings)
        if outbox_id is not None:
            written.append(outbox_id)
    return written
