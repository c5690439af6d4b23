"""Intake of what real Wappi sends: late messages, poison messages, channels, webhook items, WHITELIST.

Through real workers where the behaviour spans stages; the pure rules as unit tests at the end.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from clients.wappi import parse_dialog, parse_message
from emulators.wappi import WappiEmulator
from tests.conftest import PROFILE_ID, run_poll, wait_for
from tests.idle import wait_idle
from tests.test_operations import SECRET, web  # noqa: F401  # `web`: the web process fixture
from tests.test_pipeline import customer_says, first_start, replies_to, rows


def control(wappi: WappiEmulator, path: str, **body: Any) -> dict[str, Any]:
    response = requests.post(f"{wappi.url}/_emulator/{path}", json={"profile_id": PROFILE_ID, **body}, timeout=5)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def chat(wappi: WappiEmulator, phone: str) -> list[dict[str, Any]]:
    response = requests.get(f"{wappi.url}/_emulator/chat", params={"profile_id": PROFILE_ID, "phone": phone},
                            timeout=5)
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def dialog_of(wappi: WappiEmulator, chat_id: str) -> dict[str, Any]:
    body = requests.get(f"{wappi.url}/api/sync/chats/get", params={"profile_id": PROFILE_ID}, timeout=5,
                        headers={"Authorization": wappi.token}).json()
    found: dict[str, Any] = next(item for item in body["dialogs"] if item["id"] == chat_id)
    return found


def started_an_hour_ago() -> None:
    """The product's first start, an hour back: what was written since then is no history."""
    from db.session import get_engine

    first_start()
    with get_engine().begin() as connection:
        connection.execute(sa.text("UPDATE profiles SET history_boundary = history_boundary - 3600"))


def wait_reply(wappi: WappiEmulator, phone: str) -> None:
    wait_for(lambda: replies_to(wappi, phone), message=f"the reply to {phone}")


def poll_until_idle(polls: int = 3) -> None:
    for _ in range(polls):
        run_poll()
        wait_idle()


# -- item 4: late messages ---------------------------------------------------------------------

@pytest.mark.usefixtures("workers", "clean")
def test_a_late_message_after_our_reply_is_stored_once_and_answered_once(wappi: WappiEmulator) -> None:
    phone = "77017000001"
    started_an_hour_ago()
    customer_says(wappi, phone, "Здравствуйте, хочу заказать торт")
    run_poll()
    wait_for(lambda: replies_to(wappi, phone), message="the first reply")
    poll_until_idle(2)  # our reply is seen and stored as our own
    before = dialog_of(wappi, f"{phone}@c.us")
    # Written two minutes ago while the customer's phone was offline, delivered only now.
    late = control(wappi, "late_message", phone=phone, text="И ещё: есть ли доставка в субботу?",
                   written_ago=120)["message_id"]
    history = chat(wappi, phone)
    assert [m["id"] for m in history].index(late) < len(history) - 1  # it sorts before our reply
    after = dialog_of(wappi, f"{phone}@c.us")
    assert (after["last_message_id"], after["last_time"]) == (before["last_message_id"], before["last_time"])
    assert after["unread_count"] == before["unread_count"] + 1
    run_poll()
    replies = wait_for(lambda: [r for r in replies_to(wappi, phone) if r["reply_to"] == late],
                       message="the answer to the late message")
    poll_until_idle(3)
    assert len(replies) == 1 and "доставка в субботу" in replies[0]["body"]
    assert len(replies_to(wappi, phone)) == 2
    assert [tuple(r) for r in rows("SELECT status FROM messages WHERE provider_message_id = :id", id=late)] == [
        ("answered",)]


@pytest.mark.usefixtures("workers", "clean")
def test_a_late_message_written_long_ago_is_answered_when_we_were_up(wappi: WappiEmulator) -> None:
    """Written half an hour ago, before our previous poll, and delivered to Wappi only now: the
    phone was offline, not we; it is answered (STALE_AFTER is for messages that came while we were down)."""
    phone = "77017000002"
    started_an_hour_ago()
    customer_says(wappi, phone, "Сколько стоит торт?")
    run_poll()
    wait_for(lambda: replies_to(wappi, phone), message="the first reply")
    poll_until_idle(2)
    late = control(wappi, "late_message", phone=phone, text="А с доставкой?", written_ago=1800)["message_id"]
    run_poll()
    replies = wait_for(lambda: [r for r in replies_to(wappi, phone) if r["reply_to"] == late],
                       message="the answer to the late message")
    poll_until_idle(2)
    assert len(replies) == 1 and len(replies_to(wappi, phone)) == 2
    assert [tuple(r) for r in rows("SELECT status FROM messages WHERE provider_message_id = :id", id=late)] == [
        ("answered",)]


@pytest.mark.usefixtures("workers", "clean")
def test_a_message_that_came_while_we_were_down_is_recorded_not_answered(wappi: WappiEmulator) -> None:
    """Newer than our previous poll and older than STALE_AFTER: we were down; an answer that late
    does more harm than good."""
    from db.session import get_engine

    phone = "77017000003"
    started_an_hour_ago()
    run_poll()
    with get_engine().begin() as connection:  # our previous poll was 50 minutes ago: we were down since
        connection.execute(sa.text("UPDATE profiles SET last_poll_at = now() - interval '50 minutes'"))
    late = control(wappi, "late_message", phone=phone, text="А с доставкой?", written_ago=1800)["message_id"]
    poll_until_idle(2)
    assert [tuple(r) for r in rows("SELECT status FROM messages WHERE provider_message_id = :id", id=late)] == [
        ("history",)]
    assert replies_to(wappi, phone) == []


def test_the_late_message_rule() -> None:
    from pipeline.inbound import LATE_CAP
    from pipeline.inbound import is_history as _is_history

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


# -- item 5: poison messages -------------------------------------------------------------------

@pytest.mark.usefixtures("workers", "clean")
def test_bad_messages_never_stop_the_poll(wappi: WappiEmulator) -> None:
    first_start()
    nul = customer_says(wappi, "77017000011", "Здравствуйте\x00, торт\x07 на завтра \u200fשלום\u200f 🎂\nспасибо")
    now_ms = int(time.time() * 1000)
    ms = customer_says(wappi, "77017000012", "Есть ли доставка?", overrides={"time": now_ms})
    customer_says(wappi, "77017000013", "Хочу заказать пирог", overrides={"id": 987654321012})
    customer_says(wappi, "77017000014", "странное", overrides={
        "type": ["chat"], "fromMe": "no", "body": {"unexpected": 1}, "senderName": 42})
    too_long = "F" * 300  # longer than any provider id column: this one cannot be stored
    customer_says(wappi, "77017000015", "Этот не сохранится", overrides={"id": too_long})
    customer_says(wappi, "77017000016", "Какие торты есть?")
    run_poll()
    for phone in ("77017000011", "77017000012", "77017000013", "77017000016"):
        wait_reply(wappi, phone)
    poll_until_idle(3)
    assert rows("SELECT 1 FROM dead_letters WHERE task_name = 'pipeline.poll'") == []
    assert {r["phone"] for r in wappi.sent_messages(PROFILE_ID)} == {
        "77017000011", "77017000012", "77017000013", "77017000016"}
    assert all(len(replies_to(wappi, phone)) == 1
               for phone in ("77017000011", "77017000012", "77017000013", "77017000016"))
    # The NUL and the bell are gone; line breaks, RTL marks and emoji are intact.
    stored = rows("SELECT text FROM messages WHERE provider_message_id = :id", id=nul)[0][0]
    assert stored == "Здравствуйте, торт на завтра \u200fשלום\u200f 🎂\nспасибо"
    # The ms time is read as seconds: the message is from now, not from the year 56000.
    sent_at = rows("SELECT extract(epoch FROM sent_at) FROM messages WHERE provider_message_id = :id", id=ms)[0][0]
    assert abs(float(sent_at) - now_ms / 1000) < 5
    assert replies_to(wappi, "77017000013")[0]["reply_to"] == "987654321012"
    assert rows("SELECT status FROM messages WHERE contact_id = (SELECT id FROM contacts "
                "WHERE phone = '77017000014')")[0][0] == "skipped"
    # The one that could not be stored is a dead letter with its payload, phone masked.
    letters = rows("SELECT task_name, args::text, exception FROM dead_letters")
    assert len(letters) == 1 and letters[0].task_name == "intake.message"
    assert too_long in letters[0].args and "77017000015" not in letters[0].args and "*0015" in letters[0].args


# -- item 7: channels, broadcasts, status updates ---------------------------------------------

@pytest.mark.usefixtures("workers", "clean")
def test_channels_broadcasts_and_status_updates_are_never_answered(wappi: WappiEmulator) -> None:
    first_start()
    control(wappi, "channel_message", chat_id="120363041234567890@newsletter", text="Новости канала: скидки!")
    control(wappi, "channel_message", chat_id="77019990000123@broadcast", text="Рассылка: привет всем")
    control(wappi, "channel_message", chat_id="status@broadcast", text="Мой статус", sender="77019998877")
    customer_says(wappi, "77017000021", "Здравствуйте, сколько стоит торт?")
    run_poll()
    wait_for(lambda: replies_to(wappi, "77017000021"), message="the customer's reply")
    poll_until_idle(3)
    assert [r["phone"] for r in wappi.sent_messages(PROFILE_ID)] == ["77017000021"]
    phones = {r.phone for r in rows("SELECT phone FROM contacts")}
    assert phones == {"77017000021"}  # no channel id became a "phone"


# -- item 11: webhook items one by one ---------------------------------------------------------

def webhook_item(phone: str, text: str, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "wh_type": "incoming_message", "profile_id": PROFILE_ID, "id": f"WH{phone}", "body": text,
        "type": "chat", "from": f"{phone}@c.us", "to": "77000000000@c.us", "senderName": "Клиент",
        "chatId": f"{phone}@c.us", "time": int(time.time()), "is_me": False, "chat_type": "dialog",
        "from_where": "phone"}
    item.update(fields)
    return item


@pytest.mark.usefixtures("workers", "clean")
def test_webhook_items_are_handled_one_by_one(web: str, wappi: WappiEmulator) -> None:  # noqa: F811
    first_start()
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
    response = requests.post(f"{web}/webhooks/wappi", json={"messages": items},
                             headers={"Authorization": SECRET}, timeout=10)
    assert response.status_code == 200, response.text
    for phone in ("77017000031", "77017000032", "77017000035"):
        wait_reply(wappi, phone)
    wait_idle()
    assert sorted(r["phone"] for r in wappi.sent_messages(PROFILE_ID)) == [
        "77017000031", "77017000032", "77017000035"]
    assert rows("SELECT status FROM messages WHERE provider_message_id = '555000111'")[0][0] == "answered"
    assert rows("SELECT text FROM messages WHERE provider_message_id = 'WH77017000035'")[0][0] == "Доставка есть?"
    assert rows("SELECT 1 FROM contacts WHERE phone LIKE '120363%'") == []


# -- item 12: WHITELIST on every start ---------------------------------------------------------

@pytest.mark.usefixtures("clean")
def test_whitelist_from_the_environment_applies_on_every_start() -> None:
    from db.session import session_scope
    from pipeline.profiles import ensure_profile
    from settings import load_settings

    with session_scope() as session:
        ensure_profile(session, load_settings({**os.environ, "WHITELIST": "+7 701 555 00 01"}))
    with session_scope() as session:  # the next start: a number was added to WHITELIST
        ensure_profile(session, load_settings({**os.environ, "WHITELIST": "+7 701 555 00 01, 8 701 555 00 02"}))
    assert sorted(r.phone for r in rows("SELECT phone FROM whitelist")) == ["77015550001", "77015550002"]


# -- unit rules ----------------------------------------------------------------------------------

def test_channel_ids_are_not_phones() -> None:
    from domain.phones import is_person_chat, normalize_phone

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
    from domain.text import clean_text

    assert clean_text("a\x00b\x07c\x1b[0m\r\nd\te\u200f🎂\u2028") == "abc[0m\nd\te\u200f🎂\u2028"
    assert clean_text("\ufeffПривет\x7f") == "\ufeffПривет"
