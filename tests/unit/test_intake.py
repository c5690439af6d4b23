"""Intake of what real Wappi sends, through the poll and the webhook functions, no workers: late
messages, poison messages, channels, captions and stickers, webhook items, the poll and the webhook
together, WHITELIST; and the pure rules behind them."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session

from clients.wappi import parse_dialog, parse_message
from db.session import SessionFactory
from domain.phones import is_person_chat, normalize_phone
from domain.text import clean_text
from emulators.wappi import WappiEmulator
from pipeline.inbound import LATE_CAP
from pipeline.inbound import is_history as _is_history
from pipeline.profiles import ensure_profile
from pipeline.webhook import store_webhook, webhook_messages
from settings import get_settings, load_settings
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.env import PROFILE_ID
from tests.support.intake import answer_new, webhook_caught


def dialog_of(wappi: WappiEmulator, chat_id: str) -> dict[str, Any]:
    body = requests.get(f"{wappi.url}/api/sync/chats/get", params={"profile_id": PROFILE_ID}, timeout=5,
                        headers={"Authorization": wappi.token}).json()
    found: dict[str, Any] = next(item for item in body["dialogs"] if item["id"] == chat_id)
    return found


def started_an_hour_ago(sessions: SessionFactory, session: Session) -> None:
    """The product's first start, an hour back: what was written since then is no history."""
    assert chain.poll(sessions) == []
    session.execute(sa.text("UPDATE profiles SET history_boundary = history_boundary - 3600"))


def status_of(session: Session, provider_id: str) -> list[tuple[str, ...]]:
    return [tuple(row) for row in rows_in(session, "SELECT status FROM messages WHERE provider_message_id = :id",
                                          id=provider_id)]


def store_pushed(sessions: SessionFactory, items: list[Any]) -> list[int]:
    """What the web app does with a webhook body: store its items, return the messages to answer."""
    with sessions() as session:
        profile_id = ensure_profile(session, get_settings()).id
        return store_webhook(session, profile_id, webhook_messages({"messages": items}), stale_after=600.0)


# -- late messages -------------------------------------------------------------------------------

def test_a_late_message_after_our_reply_is_stored_once_and_answered_once(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    phone = "77017000001"
    started_an_hour_ago(sessions, session)
    customer_says(wappi, phone, "Здравствуйте, хочу заказать торт")
    assert len(answer_new(sessions)) == 1
    assert answer_new(sessions) == [] and len(replies_to(wappi, phone)) == 1  # our reply is stored as our own
    before = dialog_of(wappi, f"{phone}@c.us")
    # Written two minutes ago while the customer's phone was offline, delivered only now.
    late = wappi.late_message(PROFILE_ID, phone, "И ещё: есть ли доставка в субботу?", written_ago=120)["message_id"]
    history = wappi.chat_messages(PROFILE_ID, phone)
    assert [m["id"] for m in history].index(late) < len(history) - 1  # it sorts before our reply
    after = dialog_of(wappi, f"{phone}@c.us")
    assert (after["last_message_id"], after["last_time"]) == (before["last_message_id"], before["last_time"])
    assert after["unread_count"] == before["unread_count"] + 1
    assert len(answer_new(sessions)) == 1
    for _ in range(3):
        assert answer_new(sessions) == []
    replies = [r for r in replies_to(wappi, phone) if r["reply_to"] == late]
    assert len(replies) == 1 and "доставка в субботу" in replies[0]["body"]
    assert len(replies_to(wappi, phone)) == 2
    assert status_of(session, late) == [("answered",)]


def test_a_late_message_written_long_ago_is_answered_when_we_were_up(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    """Written half an hour ago, before our previous poll, and delivered to Wappi only now: the
    phone was offline, not we; it is answered (STALE_AFTER is for messages that came while we were down)."""
    phone = "77017000002"
    started_an_hour_ago(sessions, session)
    customer_says(wappi, phone, "Сколько стоит торт?")
    answer_new(sessions)
    assert answer_new(sessions) == [] and len(replies_to(wappi, phone)) == 1
    late = wappi.late_message(PROFILE_ID, phone, "А с доставкой?", written_ago=1800)["message_id"]
    assert len(answer_new(sessions)) == 1
    assert answer_new(sessions) == []
    replies = [r for r in replies_to(wappi, phone) if r["reply_to"] == late]
    assert len(replies) == 1 and len(replies_to(wappi, phone)) == 2
    assert status_of(session, late) == [("answered",)]


def test_a_message_that_came_while_we_were_down_is_recorded_not_answered(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    """Newer than our previous poll and older than STALE_AFTER: we were down; an answer that late
    does more harm than good."""
    phone = "77017000003"
    started_an_hour_ago(sessions, session)
    assert chain.poll(sessions) == []
    # Our previous poll was 50 minutes ago: we were down since.
    session.execute(sa.text("UPDATE profiles SET last_poll_at = now() - interval '50 minutes'"))
    late = wappi.late_message(PROFILE_ID, phone, "А с доставкой?", written_ago=1800)["message_id"]
    assert answer_new(sessions) == []
    assert answer_new(sessions) == []
    assert status_of(session, late) == [("history",)]
    assert replies_to(wappi, phone) == []


def test_the_late_message_rule() -> None:
    now = 1_000_000.0
    previous_poll = now - 5

    def history(written_ago: float, previous: float | None = previous_poll) -> bool:
        message = parse_message({"id": "X", "type": "chat", "body": "Алло", "from": "77010000001@c.us",
                                 "chatId": "77010000001@c.us", "time": int(now - written_ago)})
        return _is_history(message, first_start=False, boundary=int(now - 10 * LATE_CAP), now=now,
                           stale_after=600, previous_poll=previous)

    assert not history(60)  # fresh
    assert not history(1800)  # delivered late, we were up: answered
    assert not history(LATE_CAP - 60)  # within the cap
    assert history(LATE_CAP + 60)  # over the cap: recorded only
    assert history(1800, previous=now - 3600)  # came while we were down: recorded only
    assert not history(300, previous=now - 3600)  # down, but fresh: answered
    assert history(1800, previous=None)  # no previous poll known: the old rule


# -- poison messages -----------------------------------------------------------------------------

def test_bad_messages_never_stop_the_poll(sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    nul = customer_says(wappi, "77017000011", "Здравствуйте\x00, торт\x07 на завтра \u200fשלום\u200f 🎂\nспасибо")
    now_ms = int(time.time() * 1000)
    ms = customer_says(wappi, "77017000012", "Есть ли доставка?", overrides={"time": now_ms})
    customer_says(wappi, "77017000013", "Хочу заказать пирог", overrides={"id": 987654321012})
    customer_says(wappi, "77017000014", "странное", overrides={
        "type": ["chat"], "fromMe": "no", "body": {"unexpected": 1}, "senderName": 42})
    too_long = "F" * 300  # longer than any provider id column: this one cannot be stored
    customer_says(wappi, "77017000015", "Этот не сохранится", overrides={"id": too_long})
    customer_says(wappi, "77017000016", "Какие торты есть?")
    answered = ("77017000011", "77017000012", "77017000013", "77017000016")
    assert len(answer_new(sessions)) == len(answered)  # the poll went on past every bad one
    for _ in range(3):
        assert answer_new(sessions) == []
    assert {r["phone"] for r in wappi.sent_messages(PROFILE_ID)} == set(answered)
    assert all(len(replies_to(wappi, phone)) == 1 for phone in answered)
    # The NUL and the bell are gone; line breaks, RTL marks and emoji are intact.
    stored = rows_in(session, "SELECT text FROM messages WHERE provider_message_id = :id", id=nul)[0][0]
    assert stored == "Здравствуйте, торт на завтра \u200fשלום\u200f 🎂\nспасибо"
    # The ms time is read as seconds: the message is from now, not from the year 56000.
    sent_at = rows_in(session, "SELECT extract(epoch FROM sent_at) FROM messages WHERE provider_message_id = :id",
                      id=ms)[0][0]
    assert abs(float(sent_at) - now_ms / 1000) < 5
    assert replies_to(wappi, "77017000013")[0]["reply_to"] == "987654321012"
    assert rows_in(session, "SELECT status FROM messages WHERE contact_id = (SELECT id FROM contacts "
                            "WHERE phone = '77017000014')")[0][0] == "skipped"
    # The one that could not be stored is a dead letter with its payload, phone masked.
    letters = rows_in(session, "SELECT task_name, args::text, exception FROM dead_letters")
    assert len(letters) == 1 and letters[0].task_name == "intake.message"
    assert too_long in letters[0].args and "77017000015" not in letters[0].args and "*0015" in letters[0].args


# -- what is no customer's message ---------------------------------------------------------------

def test_channels_broadcasts_and_status_updates_are_never_answered(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    wappi.channel_message(PROFILE_ID, "120363041234567890@newsletter", "Новости канала: скидки!")
    wappi.channel_message(PROFILE_ID, "77019990000123@broadcast", "Рассылка: привет всем")
    wappi.channel_message(PROFILE_ID, "status@broadcast", "Мой статус", sender="77019998877")
    customer_says(wappi, "77017000021", "Здравствуйте, сколько стоит торт?")
    assert len(answer_new(sessions)) == 1
    for _ in range(3):
        assert answer_new(sessions) == []
    assert [r["phone"] for r in wappi.sent_messages(PROFILE_ID)] == ["77017000021"]
    phones = {r.phone for r in rows_in(session, "SELECT phone FROM contacts")}
    assert phones == {"77017000021"}  # no channel id became a "phone"


def test_captions_are_answered_and_stickers_are_only_recorded(sessions: SessionFactory, session: Session,
                                                              wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    customer_says(wappi, "77200000004", "", type="image", caption="Хочу такой торт, сколько будет стоить?")
    customer_says(wappi, "77200000005", "", type="sticker")
    customer_says(wappi, "77200000005", "👍", type="reaction")
    customer_says(wappi, "77200000005", "", type="location")
    assert len(answer_new(sessions)) == 1
    assert answer_new(sessions) == []
    replies = replies_to(wappi, "77200000004")
    assert len(replies) == 1 and "Хочу такой торт" in replies[0]["body"]
    statuses = {row.type: row.status for row in rows_in(session, (
        "SELECT m.type, m.status FROM messages m JOIN contacts c ON c.id = m.contact_id "
        "WHERE c.phone = '77200000005'"))}
    assert statuses == {"sticker": "skipped", "reaction": "skipped", "location": "skipped"}
    assert replies_to(wappi, "77200000005") == []
    assert rows_in(session, "SELECT count(*) FROM dead_letters")[0][0] == 0


# -- webhook items one by one ----------------------------------------------------------------------

def webhook_item(phone: str, text: str, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "wh_type": "incoming_message", "profile_id": PROFILE_ID, "id": f"WH{phone}", "body": text,
        "type": "chat", "from": f"{phone}@c.us", "to": "77000000000@c.us", "senderName": "Клиент",
        "chatId": f"{phone}@c.us", "time": int(time.time()), "is_me": False, "chat_type": "dialog",
        "from_where": "phone"}
    item.update(fields)
    return item


def test_webhook_items_are_handled_one_by_one(sessions: SessionFactory, session: Session,
                                              wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    items: list[Any] = [
        webhook_item("77017000031", "Здравствуйте, есть ли торты?"),
        webhook_item("77017000032", "Хочу пирог", id=555000111),  # a numeric id
        webhook_item("77017000033", "Плохой", id={"nested": True}),  # an id that is no id
        webhook_item("77017000034", "Тоже плохой", time="вчера", is_me="нет", chatId=77017000034,
                     body=["list"]),
        "not an object",
        webhook_item("77017000035", "Доставка\x00 есть?", time=int(time.time() * 1000)),
        webhook_item("120363041234567890", "Канал", chatId="120363041234567890@newsletter",
                     **{"from": "120363041234567890@newsletter"}),
    ]
    to_answer = store_pushed(sessions, items)
    assert len(to_answer) == 3
    for message_id in to_answer:
        chain.answer(sessions, message_id)
    assert sorted(r["phone"] for r in wappi.sent_messages(PROFILE_ID)) == [
        "77017000031", "77017000032", "77017000035"]
    assert rows_in(session, "SELECT status FROM messages WHERE provider_message_id = '555000111'")[0][0] == "answered"
    assert rows_in(session, "SELECT text FROM messages WHERE provider_message_id = 'WH77017000035'")[0][0] == (
        "Доставка есть?")
    assert rows_in(session, "SELECT 1 FROM contacts WHERE phone LIKE '120363%'") == []


@pytest.mark.parametrize("first", ["webhook", "poll"])
def test_a_message_the_webhook_and_the_poll_both_show_is_stored_and_answered_once(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, first: str) -> None:
    assert chain.poll(sessions) == []  # the first start
    phone = "77017000041"
    with webhook_caught(wappi) as pushed:
        said = customer_says(wappi, phone, "Здравствуйте! Хочу заказать медовик")
        items = pushed.next_items()
    if first == "webhook":
        started = store_pushed(sessions, items)
        assert chain.poll(sessions) == []  # the poll sees the same message: deduplicated
    else:
        started = chain.poll(sessions)
        assert store_pushed(sessions, items) == []  # the webhook came late: deduplicated
    assert len(started) == 1
    chain.answer(sessions, started[0])
    assert answer_new(sessions) == [] and store_pushed(sessions, items) == []
    assert [reply["reply_to"] for reply in replies_to(wappi, phone)] == [said]
    assert rows_in(session, "SELECT count(*) FROM messages WHERE direction = 'in'")[0][0] == 1


# -- WHITELIST on every start --------------------------------------------------------------------

def test_whitelist_from_the_environment_applies_on_every_start(session: Session) -> None:
    ensure_profile(session, load_settings({**os.environ, "WHITELIST": "+7 701 555 00 01"}))
    # The next start: a number was added to WHITELIST.
    ensure_profile(session, load_settings({**os.environ, "WHITELIST": "+7 701 555 00 01, 8 701 555 00 02"}))
    assert sorted(r.phone for r in rows_in(session, "SELECT phone FROM whitelist")) == ["77015550001", "77015550002"]


# -- pure rules ----------------------------------------------------------------------------------

def test_channel_ids_are_not_phones() -> None:
    for chat_id in ("120363041234567890@newsletter", "77019990000123@broadcast", "status@broadcast",
                    "120363029426478403@g.us"):
        assert not is_person_chat(chat_id) and normalize_phone(chat_id) == chat_id
    for chat_id in ("77011234567@c.us", "77011234567@s.whatsapp.net", "77011234567"):
        assert is_person_chat(chat_id) and normalize_phone(chat_id) == "77011234567"
    dialog = parse_dialog({"id": "120363041234567890@newsletter", "last_message_id": "A", "last_time": 1})
    assert not dialog.is_person
    status = parse_message({"id": "S1", "chatId": "status@broadcast", "from": "77019998877@c.us", "body": "x"})
    assert not status.is_person


def test_lid_keeps_its_phone_where_wappi_gives_it() -> None:
    message = parse_message({"id": "L1", "chatId": "77011234567@c.us", "whatsapp_chat_id": "12345678901234@lid",
                             "from": "77011234567@c.us", "body": "x"})
    assert (message.phone, message.lid, message.is_person) == ("77011234567", "12345678901234@lid", True)
    bare = parse_message({"id": "L2", "chatId": "12345678901234@lid", "from": "12345678901234@lid",
                          "contact_phone": "+7 701 123 45 67", "body": "x"})
    assert (bare.phone, bare.lid) == ("77011234567", "12345678901234@lid")


def test_message_fields_of_the_wrong_shape_are_read_sensibly() -> None:
    message = parse_message({"id": 42, "chatId": "77011234567@c.us", "time": 1720780615123, "body": "x"})
    assert (message.id, message.time) == ("42", 1720780615)
    assert parse_message({"id": "A", "chatId": "77011234567@c.us", "time": 1720780615.5}).time == 1720780615
    dialog = parse_dialog({"id": "77011234567@c.us", "last_message_id": 7, "last_time": 1720780615123})
    assert (dialog.last_message_id, dialog.last_time) == ("7", 1720780615)


def test_clean_text_drops_control_characters_and_keeps_unicode() -> None:
    assert clean_text("a\x00b\x07c\x1b[0m\r\nd\te\u200f🎂\u2028") == "abc[0m\nd\te\u200f🎂\u2028"
    assert clean_text("\ufeffПривет\x7f") == "\ufeffПривет"
