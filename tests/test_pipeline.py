"""End to end on real Redis, PostgreSQL and worker processes: a customer writes, the reply arrives once."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from db.session import get_engine
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.conftest import PROFILE_ID, run_poll, wait_for

pytestmark = pytest.mark.usefixtures("workers", "clean")


def customer_says(wappi: WappiEmulator, phone: str, text: str, **extra: Any) -> str:
    response = requests.post(f"{wappi.url}/_emulator/customer_message", timeout=5,
                             json={"profile_id": PROFILE_ID, "phone": phone, "text": text, **extra})
    response.raise_for_status()
    return str(response.json()["message_id"])


def replies_to(wappi: WappiEmulator, phone: str) -> list[dict[str, Any]]:
    return [item for item in wappi.sent_messages(PROFILE_ID) if item["phone"] == phone]


def rows(query: str, **params: Any) -> list[Any]:
    with get_engine().connect() as connection:
        return list(connection.execute(sa.text(query), params).all())


def first_start() -> None:
    """The product's first poll: whatever is in the chats now is history."""
    run_poll()


def test_customer_message_is_answered_once(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    first_start()
    message_id = customer_says(wappi, "77011234567", "Здравствуйте, сколько стоит доставка?")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, "77011234567"), message="the reply to reach the chat")
    assert len(replies) == 1
    reply = replies[0]
    assert reply["reply_to"] == message_id  # answered as a reply to the customer's message
    assert "сколько стоит доставка" in reply["body"].lower()  # the model saw the customer's words
    # The reply is in the chat the customer sees, and in `messages` as our own outbound message.
    chat = requests.get(f"{wappi.url}/_emulator/chat", params={"profile_id": PROFILE_ID,
                                                                "phone": "77011234567"}, timeout=5).json()
    assert chat["messages"][-1]["body"] == reply["body"] and chat["messages"][-1]["fromMe"]
    # The reply reaches the chat a moment before `send` records it as our outbound message.
    stored = wait_for(lambda: len(found := rows("SELECT direction, author, text, status FROM messages "
                                                "ORDER BY sent_at, id")) == 2 and found,
                      message="both messages stored")
    assert [(r.direction, r.author, r.status) for r in stored] == [("in", "customer", "answered"),
                                                                   ("out", "bot", "sent")]
    assert stored[1].text == reply["body"]
    outbox = rows("SELECT status, provider_message_id FROM outbox")
    assert [(r.status, r.provider_message_id) for r in outbox] == [("sent", reply["message_id"])]
    # The model was called with the configured model name and the customer's text.
    # The contact was classified with the classification model, then answered with the chat model.
    assert [call["model"] for call in gemini.requests_log()] == ["gemini-3.5-flash-lite", "gemini-3.8-flash"]

    # Polling again sends nothing more, and sees our own reply without answering it.
    from tests.idle import wait_idle  # here: tests.idle imports this module

    for _ in range(3):
        run_poll()
    wait_idle()
    assert len(replies_to(wappi, "77011234567")) == 1
    assert len(gemini.requests_log()) == 2
    assert rows("SELECT count(*) FROM messages")[0][0] == 2


def test_two_customers_in_parallel_get_their_own_replies(wappi: WappiEmulator) -> None:
    first_start()
    customer_says(wappi, "77011111111", "Хочу заказать торт на субботу")
    customer_says(wappi, "77022222222", "Есть ли доставка в Астану?")
    run_poll()
    wait_for(lambda: len(wappi.sent_messages(PROFILE_ID)) == 2, message="both replies")
    first = replies_to(wappi, "77011111111")
    second = replies_to(wappi, "77022222222")
    assert len(first) == 1 and "Хочу заказать торт на субботу" in first[0]["body"]
    assert len(second) == 1 and "Есть ли доставка в Астану?" in second[0]["body"]
    # The knowledge base answered the question that was asked (see kb/docs/sweet_almaty.pdf).
    assert "в Астану, торты не доставляем" in second[0]["body"]
    assert "Хочу заказать торт" not in second[0]["body"] and "Астану?" not in first[0]["body"]


def test_messages_already_there_at_first_start_are_recorded_not_answered(
        wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    old = customer_says(wappi, "77033333333", "Старое сообщение до запуска",
                        time=int(time.time()) - 3600)
    recent = customer_says(wappi, "77044444444", "Написал прямо перед запуском")
    first_start()
    recorded = rows("SELECT provider_message_id, status FROM messages ORDER BY id")
    assert sorted((r.provider_message_id, r.status) for r in recorded) == sorted(
        [(old, "history"), (recent, "history")])
    # The same customer writes again after the start: only the new message is answered.
    customer_says(wappi, "77044444444", "А теперь ответьте, пожалуйста: сколько стоит торт?")
    run_poll()
    wait_for(lambda: replies_to(wappi, "77044444444"), message="the reply to the new message")
    from tests.idle import wait_idle  # here: tests.idle imports this module

    wait_idle()
    replies = replies_to(wappi, "77044444444")
    assert len(replies) == 1 and "ответьте" in replies[0]["body"]
    assert replies_to(wappi, "77033333333") == []
    assert len(gemini.requests_log()) == 2  # classify and respond, for the new message only


def test_the_model_sees_this_contacts_history(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    first_start()
    customer_says(wappi, "77055555555", "Привет! Меня зовут Дана, хочу заказать торт")
    run_poll()
    wait_for(lambda: replies_to(wappi, "77055555555"), message="the first reply")
    customer_says(wappi, "77055555555", "Какие у вас цены?")
    run_poll()
    wait_for(lambda: len(replies_to(wappi, "77055555555")) == 2, message="the second reply")
    contents = gemini.requests_log()[-1]["body"]["contents"]
    assert [content["role"] for content in contents] == ["user", "model", "user"]
    # The first part is the contact data block (names as JSON data, see pipeline.history.contact_data).
    assert contents[0]["parts"][0]["text"].startswith("=== ДАННЫЕ КОНТАКТА")
    assert contents[0]["parts"][1]["text"] == "Привет! Меня зовут Дана, хочу заказать торт"
    assert contents[-1]["parts"][0]["text"] == "Какие у вас цены?"
