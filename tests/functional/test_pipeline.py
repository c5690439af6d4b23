"""End to end on real Redis, PostgreSQL and worker processes: a customer writes, the reply arrives once;
two customers at once each get their own. (What is stored, history at first start and the history
the model sees: tests/unit/test_pipeline.py.)"""

from __future__ import annotations

import pytest
import requests

from devstack import wait_for
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.env import PROFILE_ID
from tests.support.idle import wait_idle
from tests.support.polling import first_start, run_poll

pytestmark = pytest.mark.usefixtures("workers", "clean")


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
