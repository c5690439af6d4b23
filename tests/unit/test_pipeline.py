"""A customer's conversation through the pipeline's own functions, no workers: the message answered
once, what the first start keeps as history, and the history the model sees."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from db.session import SessionFactory
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.env import PROFILE_ID


def test_a_customer_message_is_answered_once(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                                             gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    phone = "77011234567"
    message_id = customer_says(wappi, phone, "Здравствуйте, сколько стоит доставка?")
    started = chain.poll(sessions)
    assert len(started) == 1
    assert chain.answer(sessions, started[0]) is not None
    replies = replies_to(wappi, phone)
    assert len(replies) == 1
    reply = replies[0]
    assert reply["reply_to"] == message_id  # answered as a reply to the customer's message
    assert "сколько стоит доставка" in reply["body"].lower()  # the model saw the customer's words
    # The reply is in the chat the customer sees, and in `messages` as our own outbound message.
    chat = wappi.chat_messages(PROFILE_ID, phone)
    assert chat[-1]["body"] == reply["body"] and chat[-1]["fromMe"]
    stored = rows_in(session, "SELECT direction, author, text, status FROM messages ORDER BY sent_at, id")
    assert [(r.direction, r.author, r.status) for r in stored] == [("in", "customer", "answered"),
                                                                   ("out", "bot", "sent")]
    assert stored[1].text == reply["body"]
    outbox = rows_in(session, "SELECT status, provider_message_id FROM outbox")
    assert [(r.status, r.provider_message_id) for r in outbox] == [("sent", reply["message_id"])]
    # The contact was classified with the classification model, then answered with the chat model.
    assert [call["model"] for call in gemini.requests_log()] == ["gemini-3.5-flash-lite", "gemini-3.8-flash"]
    # Polling again starts nothing, and sees our own reply without answering it.
    for _ in range(3):
        assert chain.poll(sessions) == []
    assert len(replies_to(wappi, phone)) == 1
    assert len(gemini.requests_log()) == 2
    assert rows_in(session, "SELECT count(*) FROM messages")[0][0] == 2


def test_messages_already_there_at_first_start_are_recorded_not_answered(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    old = customer_says(wappi, "77033333333", "Старое сообщение до запуска", time=int(time.time()) - 3600)
    recent = customer_says(wappi, "77044444444", "Написал прямо перед запуском")
    assert chain.poll(sessions) == []  # the first start
    recorded = rows_in(session, "SELECT provider_message_id, status FROM messages ORDER BY id")
    assert sorted((r.provider_message_id, r.status) for r in recorded) == sorted(
        [(old, "history"), (recent, "history")])
    # The same customer writes again after the start: only the new message is answered.
    customer_says(wappi, "77044444444", "А теперь ответьте, пожалуйста: сколько стоит торт?")
    started = chain.poll(sessions)
    assert len(started) == 1
    chain.answer(sessions, started[0])
    assert chain.poll(sessions) == []
    replies = replies_to(wappi, "77044444444")
    assert len(replies) == 1 and "ответьте" in replies[0]["body"]
    assert replies_to(wappi, "77033333333") == []
    assert len(gemini.requests_log()) == 2  # classify and respond, for the new message only


def test_the_model_sees_this_contacts_history(sessions: SessionFactory, wappi: WappiEmulator,
                                              gemini: GeminiEmulator) -> None:
    chain.poll(sessions)  # the first start
    phone = "77055555555"
    customer_says(wappi, phone, "Привет! Меня зовут Дана, хочу заказать торт")
    for started in chain.poll(sessions):
        chain.answer(sessions, started)
    assert len(replies_to(wappi, phone)) == 1
    customer_says(wappi, phone, "Какие у вас цены?")
    for started in chain.poll(sessions):
        chain.answer(sessions, started)
    assert len(replies_to(wappi, phone)) == 2
    contents = gemini.requests_log()[-1]["body"]["contents"]
    assert [content["role"] for content in contents] == ["user", "model", "user"]
    # The first part is the contact data block (names as JSON data, see pipeline.history.contact_data).
    assert contents[0]["parts"][0]["text"].startswith("=== ДАННЫЕ КОНТАКТА")
    assert contents[0]["parts"][1]["text"] == "Привет! Меня зовут Дана, хочу заказать торт"
    assert contents[-1]["parts"][0]["text"] == "Какие у вас цены?"
