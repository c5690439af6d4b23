"""Many profiles in the pipeline's own functions (no workers): a Telegram bot's updates stored and
answered through its own channel, its offset kept; a blocked customer never sent to again; no
message to a chat that never wrote; the daily cap on proactive messages; the warm-up of a new
number's send limit; each business answered with its own facts and knowledge base."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Contact, Message, Outbox, Profile
from db.session import SessionFactory
from domain.sending import warmup_rate
from domain.states import MessageStatus, OutboxKind, OutboxStatus, Provider
from emulators.gemini import GeminiEmulator
from emulators.telegram import TelegramEmulator
from emulators.wappi import WappiEmulator
from infra.redis import get_redis
from kb.index import build_index, kb_base
from pipeline.credentials import encrypt
from pipeline.locks import Defer
from pipeline.ops import stats
from pipeline.send import NeverWrote
from settings import ROOT, get_settings
from tests.support import chain
from tests.support.db import add_contact, add_outbox_row
from tests.support.env import BOT_TOKEN, PROFILE_ID
from tests.support.intake import voice_audio
from tests.support.model_calls import AGENT, TRANSCRIBE, system_texts

BOT = "shop_bot"
SECOND = "b2c3d4e5-0a01"  # ids of their own: the shared emulator keeps profiles across tests
TAPI = "7e1e9a00-0b01"
FLOWERS_KB = ROOT / "kb" / "examples" / "flowers"


def add_bot(session: Session, **overrides: str) -> Profile:
    profile = Profile(provider=Provider.TELEGRAM_BOT, profile_id=BOT, name="Бот лавки", active=True,
                      credentials=encrypt(BOT_TOKEN, get_settings()), settings=dict(overrides))
    session.add(profile)
    session.flush()
    return profile


def add_second_number(session: Session, wappi: WappiEmulator, **overrides: str) -> Profile:
    if SECOND not in wappi.profile_ids:
        wappi.add_profile(SECOND)
    profile = Profile(provider=Provider.WAPPI, profile_id=SECOND, name="Второй номер", active=True,
                      settings=dict(overrides))
    session.add(profile)
    session.flush()
    return profile


def stored(session: Session, profile: Profile) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.profile_id == profile.id).order_by(Message.id)))


def test_a_bot_profile_answers_private_chats_in_its_own_channel(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, bot: TelegramEmulator) -> None:
    bot_profile = add_bot(session)
    chain.poll(sessions)  # the WhatsApp profile's first start
    bot.user_writes(1001, "/start")
    bot.user_writes(2002, "Здравствуйте, сколько стоит доставка?")
    bot.user_writes(-1001987654321, "@shop_bot есть в наличии?", chat_type="supergroup", user_id=555,
                    title="Оптовики")
    bot.user_sends_sticker(1001)
    started = chain.poll(sessions)
    assert len(started) == 2, "/start and the question; the group and the sticker are not answered"
    rows = stored(session, bot_profile)
    assert {row.provider_message_id.split(":")[0] for row in rows} == {"1001", "2002"}, "the group is not stored"
    assert [row.status for row in rows if row.type == "sticker"] == [MessageStatus.SKIPPED]
    for message_id in started:
        chain.answer(sessions, message_id)
    assert len(bot.sent_messages(1001)) == 1 and len(bot.sent_messages(2002)) == 1
    assert bot.sent_messages(-1001987654321) == []
    assert wappi.sent_messages(PROFILE_ID) == [], "nothing of the bot's customers goes out through WhatsApp"
    # The offset is stored with the updates: the next poll confirms them and stores nothing twice.
    session.refresh(bot_profile)
    assert bot_profile.update_offset == max(update["update_id"] for update in bot.updates()) + 1
    assert chain.poll(sessions) == [] and len(stored(session, bot_profile)) == len(rows) + 2  # + our replies


def test_an_edit_is_recorded_and_not_answered_twice(
        sessions: SessionFactory, session: Session, bot: TelegramEmulator) -> None:
    bot_profile = add_bot(session)
    first = bot.user_writes(3003, "Нужен торт на субботу")
    [message_id] = chain.poll(sessions)
    chain.answer(sessions, message_id)
    bot.user_edits(3003, first["message"]["message_id"], "Нужен торт на воскресенье")
    assert chain.poll(sessions) == []
    edits = [row for row in stored(session, bot_profile) if row.type == "edited"]
    assert [(row.text, row.status) for row in edits] == [("Нужен торт на воскресенье", MessageStatus.SKIPPED)]
    assert len(bot.sent_messages(3003)) == 1


def test_a_poller_restart_neither_loses_nor_repeats_an_update(
        sessions: SessionFactory, session: Session, bot: TelegramEmulator) -> None:
    """The offset is written with the update it confirms. A poller that died before its commit
    reads the same updates again (Telegram keeps them until confirmed): stored once, none lost."""
    bot_profile = add_bot(session)
    for chat in (4001, 4002, 4003):
        bot.user_writes(chat, f"Вопрос из чата {chat}")
    started = chain.poll(sessions)
    assert len(started) == 3
    bot_profile.update_offset = None  # the crash: our offset never reached the database
    session.flush()
    bot.user_writes(4004, "Ещё вопрос")
    again = chain.poll(sessions)
    assert len(again) == 1, "only the new update starts a conversation"
    customer_rows = [row for row in stored(session, bot_profile) if row.direction == "in"]
    assert sorted(row.provider_message_id.split(":")[0] for row in customer_rows) == ["4001", "4002", "4003", "4004"]


def test_a_customer_who_blocked_the_bot_is_never_sent_to_again(
        sessions: SessionFactory, session: Session, bot: TelegramEmulator) -> None:
    add_bot(session)
    bot.user_writes(5001, "Сколько стоит торт?")
    [message_id] = chain.poll(sessions)
    bot.user_blocks(5001, notify=False)  # only the send finds out: 403
    assert chain.answer(sessions, message_id) is None
    row = session.scalars(select(Outbox)).one()
    contact = session.get(Contact, row.contact_id)
    assert row.status == OutboxStatus.CANCELLED and "blocked" in (row.error or "")
    assert contact is not None and contact.unreachable_at is not None
    assert chain.send(sessions, row.id) is None, "settled: no retry"
    assert bot.sent_messages(5001) == []


def test_a_block_announced_by_an_update_settles_the_reply_without_a_call(
        sessions: SessionFactory, session: Session, bot: TelegramEmulator) -> None:
    bot_profile = add_bot(session)
    bot.user_writes(5002, "Здравствуйте")
    chain.poll(sessions)
    bot.user_blocks(5002)  # my_chat_member: kicked
    chain.poll(sessions)
    contact = session.scalars(select(Contact).where(Contact.profile_id == bot_profile.id)).one()
    assert contact.unreachable_at is not None and contact.unreachable_reason == "blocked the bot"
    outbox_id = add_outbox_row(session, contact.id, bot_profile.id, "test:blocked", "Ответ")
    assert chain.send(sessions, outbox_id) is None
    assert session.get(Outbox, outbox_id).status == OutboxStatus.CANCELLED  # type: ignore[union-attr]
    bot.user_unblocks(5002)
    chain.poll(sessions)
    session.refresh(contact)
    assert contact.unreachable_at is None, "unblocked: reachable again"


def test_no_message_goes_to_a_chat_that_never_wrote(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    contact_id, profile_id = add_contact(session, "77050000001", wrote=False)
    outbox_id = add_outbox_row(session, contact_id, profile_id, "test:stranger", "Здравствуйте! У нас скидки")
    with pytest.raises(NeverWrote, match="never wrote"):
        chain.send(sessions, outbox_id)
    assert wappi.sent_messages(PROFILE_ID) == []
    # Once the customer has written, the same row may go out.
    add_contact(session, "77050000002")
    assert wappi.sent_messages(PROFILE_ID) == []


def test_the_daily_proactive_cap_trips_holds_touches_and_never_replies(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    contacts = [add_contact(session, f"7706000000{index}") for index in range(3)]
    profile = session.get(Profile, contacts[0][1])
    assert profile is not None
    profile.settings = {"PROACTIVE_DAILY_CAP": "1"}
    touches = [add_outbox_row(session, contact_id, profile_id, f"test:touch:{index}", f"Касание {index}",
                              kind=OutboxKind.FOLLOW_UP) for index, (contact_id, profile_id) in enumerate(contacts[:2])]
    assert chain.send(sessions, touches[0]) == touches[0]
    with pytest.raises(Defer, match="daily cap"):
        chain.send(sessions, touches[1])
    session.refresh(profile)
    assert profile.proactive_tripped_at is not None
    reply = add_outbox_row(session, contacts[2][0], contacts[2][1], "test:reply", "Ответ клиенту",
                           kind=OutboxKind.REPLY)
    assert chain.send(sessions, reply) == reply, "replies to customers are not capped"
    profile.settings = {"PROACTIVE_DAILY_CAP": "5"}
    with pytest.raises(Defer, match="daily cap"):
        chain.send(sessions, touches[1])  # a higher cap alone does not resume: an operator does
    profile.proactive_tripped_at = None
    session.flush()
    assert chain.send(sessions, touches[1]) == touches[1]
    assert sorted(item["body"] for item in wappi.sent_messages(PROFILE_ID)) == ["Касание 0", "Касание 1",
                                                                                "Ответ клиенту"]


def test_warmup_raises_the_limit_day_by_day() -> None:
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    schedule = (2, 4, 8)
    days = [warmup_rate(20, schedule, start, start + timedelta(days=day, hours=1)) for day in range(4)]
    assert days == [(2, 1), (4, 2), (8, 3), (20, None)]
    assert warmup_rate(3, schedule, start, start + timedelta(days=2)) == (3, 3), "never above the configured limit"
    assert warmup_rate(20, schedule, None, start) == (20, None), "no warm-up for a number already in use"


def test_a_warming_number_sends_at_its_warmup_limit(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, redis_client: Any) -> None:
    contacts = [add_contact(session, f"7707000000{index}") for index in range(2)]
    profile = session.get(Profile, contacts[0][1])
    assert profile is not None
    profile.warmup_from = datetime.now(UTC) - timedelta(hours=1)
    profile.settings = {"WARMUP_SCHEDULE": "1,2"}  # one a minute on its first day
    rows = [add_outbox_row(session, contact_id, profile_id, f"test:warm:{index}", f"Ответ {index}")
            for index, (contact_id, profile_id) in enumerate(contacts)]
    assert chain.send(sessions, rows[0]) == rows[0]
    with pytest.raises(Defer, match="send limit"):
        chain.send(sessions, rows[1])
    assert len(wappi.sent_messages(PROFILE_ID)) == 1


def test_each_business_is_answered_with_its_own_facts(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    """Two WhatsApp numbers of two businesses: each reply is written with its own business's name
    and knowledge base, and goes out through its own number."""
    flowers = add_second_number(session, wappi, BUSINESS_NAME="Цветы «Астра» на Туран", KB_DIR=str(FLOWERS_KB))
    build_index(session, Path(FLOWERS_KB), base=kb_base(str(FLOWERS_KB), get_settings().kb_dir))
    chain.poll(sessions)  # both numbers' first start
    wappi.customer_message(PROFILE_ID, "77080000001", "Сколько стоит торт Медовик?")
    wappi.customer_message(SECOND, "77080000001", "Сколько стоит букет Весна?")
    started = chain.poll(sessions)
    assert len(started) == 2
    for message_id in started:
        chain.answer(sessions, message_id)
    instructions = system_texts(gemini, AGENT)
    assert len(instructions) == 2
    florist = next(text for text in instructions if "Астра" in text)
    bakery = next(text for text in instructions if "Астра" not in text)
    assert "Цветы «Астра» на Туран" in florist and "18 500" in florist and "Медовик" not in florist
    assert get_settings().business_name in bakery and "Медовик" in bakery
    assert "на Туран" not in bakery and "18 500" not in bakery
    assert len(wappi.sent_messages(PROFILE_ID)) == 1 and len(wappi.sent_messages(SECOND)) == 1
    # The same phone writing to two numbers is two contacts.
    assert session.scalar(select(Contact.id).where(Contact.profile_id == flowers.id)) is not None
    assert len(session.scalars(select(Contact).where(Contact.phone == "77080000001")).all()) == 2
    # Each business's figures are its own; together they add up.
    timezone = get_settings().timezone
    bakery_profile = session.scalars(select(Profile).where(Profile.profile_id == PROFILE_ID)).one()
    each = [stats(session, get_redis(), timezone, profile_id=profile.id) for profile in (bakery_profile, flowers)]
    together = stats(session, get_redis(), timezone)
    for figures in each:
        assert figures["messages"]["received"] == 1 and figures["replies"] == 1
        assert figures["classified"]["lead"] == 1
        assert 0 < figures["model_tokens"]["total"] < together["model_tokens"]["total"]
    assert together["messages"]["received"] == 2 and together["replies"] == 2


def test_a_bot_voice_note_is_downloaded_with_getfile_and_answered(
        sessions: SessionFactory, session: Session, bot: TelegramEmulator, gemini: GeminiEmulator) -> None:
    add_bot(session)
    bot.user_sends_voice(6001, voice_audio("Сколько стоит торт Медовик?"))
    bot.user_sends_photo(6002, b"\xff\xd8jpeg-bytes", caption="Такой торт можно на субботу?")
    bot.user_sends_document(6003, b"%PDF-1.4 order", file_name="order.pdf")  # no caption: recorded only
    started = chain.poll(sessions)
    assert len(started) == 2
    for message_id in started:
        chain.answer(sessions, message_id)
    voice = session.scalars(select(Message).where(Message.is_voice.is_(True))).one()
    assert (voice.type, voice.transcription, voice.status) == ("ptt", "Сколько стоит торт Медовик?",
                                                               MessageStatus.ANSWERED)
    assert len(bot.sent_messages(6001)) == 1 and "Медовик" in bot.sent_messages(6001)[0]["text"]
    assert len(bot.sent_messages(6002)) == 1 and bot.sent_messages(6003) == []
    # The audio went to the transcription model inline, fetched through getFile and the file link.
    assert any(TRANSCRIBE in json.dumps(call["body"], ensure_ascii=False) for call in gemini.requests_log())


def test_a_telegram_account_through_wappi_is_answered_by_reply(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    """A personal Telegram account through Wappi's /tapi/: numeric ids, the `text` type, replies."""
    if TAPI not in wappi.profile_ids:
        wappi.add_profile(TAPI, platform="telegram")
    session.add(Profile(provider=Provider.WAPPI_TELEGRAM, profile_id=TAPI, name="Личный Telegram", active=True))
    session.flush()
    chain.poll(sessions)  # first start of both accounts
    sent = wappi.customer_message(TAPI, "555000111", "Здравствуйте! Сколько стоит доставка?")
    wappi.customer_message(TAPI, "555000222", "Всем привет", group=True, group_id="4127433587")
    started = chain.poll(sessions)
    assert len(started) == 1, "the group is no customer's chat"
    chain.answer(sessions, started[0])
    [reply] = wappi.sent_messages(TAPI)
    assert reply["reply_to"] == sent["message_id"]
    contact = session.scalars(select(Contact).join(Profile).where(Profile.profile_id == TAPI)).one()
    assert (contact.phone, contact.chat_id) == ("555000111", "555000111")
    assert wappi.sent_messages(PROFILE_ID) == []
