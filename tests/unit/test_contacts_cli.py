"""`celery -A tasks contacts ...` and `whitelist ...` per profile: an operator pauses the bot for a contact
to answer them in person (a bot cannot see its owner's own chats), resumes it, lists who is paused, and
keeps each profile's whitelist. A WhatsApp contact is a phone number in any notation; a Telegram one is
its numeric chat id, never read as a phone number.

The commands run in-process with click's CliRunner against the test's rolled-back session.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.contacts import contacts, whitelist
from db.models import Contact, Profile, WhitelistEntry
from db.session import SessionFactory
from domain.states import Provider
from pipeline.profiles import ensure_profile
from settings import load_settings
from tests.support.env import PROFILE_ID

WHATSAPP_PHONE = "77011234567"
# A Telegram chat id that a phone parser would take for a Russian number with its trunk 8.
TELEGRAM_CHAT = "80123456789"
BOT = "shop_bot"
SETTINGS = load_settings({**os.environ, "HUMAN_PAUSE": "5"})


@pytest.fixture()
def run(sessions: SessionFactory) -> Any:
    def invoke(group: click.Group, *args: str, **changes: Any) -> Result:
        # `app` stands in for the Celery app that `celery -A tasks` puts on the context.
        settings = dataclasses.replace(SETTINGS, **changes)
        return CliRunner().invoke(group, list(args),
                                  obj=SimpleNamespace(app=object(), sessions=sessions, settings=settings))
    return invoke


@pytest.fixture()
def whatsapp(session: Session) -> Profile:
    return ensure_profile(session, SETTINGS)


@pytest.fixture()
def bot(session: Session) -> Profile:
    profile = Profile(provider=Provider.TELEGRAM_BOT, profile_id=BOT, name="Shop", active=True, settings={})
    session.add(profile)
    session.flush()
    return profile


def customer(session: Session, profile: Profile, phone: str, chat_id: str) -> Contact:
    contact = Contact(profile_id=profile.id, phone=phone, chat_id=chat_id, first_name="Айгерим")
    session.add(contact)
    session.flush()
    return contact


def paused_until(session: Session, contact: Contact) -> datetime | None:
    session.refresh(contact)  # the command wrote through its own session
    return contact.paused_until


def near(moment: datetime | None, expected: datetime) -> bool:
    return moment is not None and abs(moment - expected) < timedelta(minutes=1)


def test_pause_and_resume_a_whatsapp_contact_in_any_notation(run: Any, session: Session, whatsapp: Profile) -> None:
    contact = customer(session, whatsapp, WHATSAPP_PHONE, f"{WHATSAPP_PHONE}@c.us")
    paused = run(contacts, "pause", "+7 (701) 123-45-67", "--hours", "2")
    assert paused.exit_code == 0, paused.output
    assert f"paused +{WHATSAPP_PHONE} of profile {PROFILE_ID} (wappi) for 2 h" in paused.output
    assert near(paused_until(session, contact), datetime.now(UTC) + timedelta(hours=2))
    listed = run(contacts, "paused")
    assert f"+{WHATSAPP_PHONE}  Айгерим  {PROFILE_ID}  paused until" in listed.output

    resumed = run(contacts, "resume", "87011234567")
    assert resumed.exit_code == 0
    assert resumed.output.strip() == f"resumed +{WHATSAPP_PHONE}"
    assert paused_until(session, contact) is None
    assert "no paused contacts" in run(contacts, "paused").output
    assert run(contacts, "resume", f"{WHATSAPP_PHONE}@c.us").output.strip() == f"+{WHATSAPP_PHONE} was not paused"


def test_pause_lasts_the_profile_s_human_pause_by_default(run: Any, session: Session, whatsapp: Profile) -> None:
    contact = customer(session, whatsapp, WHATSAPP_PHONE, f"{WHATSAPP_PHONE}@c.us")
    assert run(contacts, "pause", WHATSAPP_PHONE).exit_code == 0
    assert near(paused_until(session, contact), datetime.now(UTC) + timedelta(hours=5))
    refused = run(contacts, "pause", WHATSAPP_PHONE, human_pause_hours=0.0)
    assert refused.exit_code != 0 and "give --hours" in refused.output
    assert run(contacts, "pause", WHATSAPP_PHONE, "--hours", "0").exit_code != 0


def test_pause_and_resume_a_telegram_bot_s_contact_by_chat_id(run: Any, session: Session, whatsapp: Profile,
                                                             bot: Profile) -> None:
    bot_customer = customer(session, bot, TELEGRAM_CHAT, TELEGRAM_CHAT)
    # The same digits in the WhatsApp profile (as the phone they would normalize to) stay untouched.
    lookalike = customer(session, whatsapp, "70123456789", "70123456789@c.us")

    paused = run(contacts, "pause", TELEGRAM_CHAT, "--profile", BOT, "--hours", "3")
    assert paused.exit_code == 0, paused.output
    assert f"paused chat {TELEGRAM_CHAT} of profile {BOT} (telegram_bot) for 3 h" in paused.output
    assert near(paused_until(session, bot_customer), datetime.now(UTC) + timedelta(hours=3))
    assert paused_until(session, lookalike) is None
    listed = run(contacts, "paused", "--profile", BOT)
    assert f"chat {TELEGRAM_CHAT}  Айгерим  {BOT}  paused until" in listed.output

    resumed = run(contacts, "resume", TELEGRAM_CHAT, "--profile", str(bot.id))  # our numeric id works too
    assert resumed.exit_code == 0
    assert resumed.output.strip() == f"resumed chat {TELEGRAM_CHAT}"
    assert paused_until(session, bot_customer) is None


def test_paused_lists_every_profile_or_only_the_one_asked_for(run: Any, session: Session, whatsapp: Profile,
                                                              bot: Profile) -> None:
    customer(session, whatsapp, WHATSAPP_PHONE, f"{WHATSAPP_PHONE}@c.us")
    customer(session, bot, TELEGRAM_CHAT, TELEGRAM_CHAT)
    assert run(contacts, "pause", WHATSAPP_PHONE).exit_code == 0
    assert run(contacts, "pause", TELEGRAM_CHAT, "--profile", BOT).exit_code == 0
    everyone = run(contacts, "paused").output
    assert f"+{WHATSAPP_PHONE}" in everyone and f"chat {TELEGRAM_CHAT}" in everyone
    only_bot = run(contacts, "paused", "--profile", BOT).output
    assert f"chat {TELEGRAM_CHAT}" in only_bot and WHATSAPP_PHONE not in only_bot
    only_whatsapp = run(contacts, "paused", "--profile", PROFILE_ID).output
    assert f"+{WHATSAPP_PHONE}" in only_whatsapp and TELEGRAM_CHAT not in only_whatsapp


@pytest.mark.parametrize(("args", "message"), [
    (("pause", "+7 700 000 00 00"), f"no contact with number +7 700 000 00 00 in profile {PROFILE_ID} (wappi)"),
    (("resume", "77000000000"), f"no contact with number 77000000000 in profile {PROFILE_ID} (wappi)"),
    (("pause", "999", "--profile", BOT), f"no contact with chat id 999 in profile {BOT} (telegram_bot)"),
    # A WhatsApp customer is not the bot's: contacts belong to one profile.
    (("resume", WHATSAPP_PHONE, "--profile", BOT),
     f"no contact with chat id {WHATSAPP_PHONE} in profile {BOT} (telegram_bot)"),
    (("pause", WHATSAPP_PHONE, "--profile", "no-such-profile"), "no profile 'no-such-profile'"),
])
def test_an_unknown_contact_or_profile_is_an_error_naming_it(run: Any, session: Session, whatsapp: Profile,
                                                             bot: Profile, args: tuple[str, ...],
                                                             message: str) -> None:
    contact = customer(session, whatsapp, WHATSAPP_PHONE, f"{WHATSAPP_PHONE}@c.us")
    result = run(contacts, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert paused_until(session, contact) is None


def entries(session: Session, profile: Profile) -> list[str]:
    return list(session.scalars(select(WhitelistEntry.phone).where(WhitelistEntry.profile_id == profile.id)))


def test_the_whitelist_is_kept_per_profile(run: Any, session: Session, whatsapp: Profile, bot: Profile) -> None:
    added = run(whitelist, "add", "+7 701 555-00-04", "--note", "owner's brother")
    assert added.exit_code == 0 and "added +77015550004" in added.output
    bot_added = run(whitelist, "add", TELEGRAM_CHAT, "--profile", BOT, "--note", "the owner")
    assert bot_added.exit_code == 0, bot_added.output
    assert f"added chat {TELEGRAM_CHAT}" in bot_added.output
    assert entries(session, whatsapp) == ["77015550004"]
    assert entries(session, bot) == [TELEGRAM_CHAT]  # the chat id as it is, not read as a phone number
    assert "already on the whitelist" in run(whitelist, "add", TELEGRAM_CHAT, "--profile", BOT).output

    bot_list = run(whitelist, "list", "--profile", BOT).output
    assert f"chat {TELEGRAM_CHAT}  the owner" in bot_list and "77015550004" not in bot_list
    assert TELEGRAM_CHAT not in run(whitelist, "list").output

    assert run(whitelist, "remove", TELEGRAM_CHAT).output.strip() == "+70123456789 was not on the whitelist"
    assert entries(session, bot) == [TELEGRAM_CHAT]
    assert run(whitelist, "remove", TELEGRAM_CHAT, "--profile", BOT).output.strip() == f"removed chat {TELEGRAM_CHAT}"
    assert entries(session, bot) == []
    assert f"the whitelist of profile {BOT} (telegram_bot) is empty" in run(whitelist, "list", "--profile", BOT).output
    bad = run(whitelist, "add", "@someone", "--profile", BOT)
    assert bad.exit_code != 0 and "is not a Telegram chat id" in bad.output
