"""The poll under a Wappi fault, end to end: a chat whose history always fails costs only that chat.
(Crossed history answers, the backoff, the watermark, /health and errors outside one message:
tests/unit/test_poll.py.)"""

from __future__ import annotations

import pytest

from db.session import get_engine
from devstack import wait_for
from emulators.wappi import WappiEmulator
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.idle import wait_idle
from tests.support.polling import first_start, run_poll

pytestmark = pytest.mark.usefixtures("workers", "clean")


def test_a_poll_that_keeps_failing_on_one_chat_still_answers_the_others(wappi: WappiEmulator) -> None:
    first_start()
    failing = "77018000099"
    failing_message = customer_says(wappi, failing, "Мой чат всегда падает")
    wappi.set_chat_faults({"fail_chats": [failing]})
    customers = ["77018100000", "77018100001"]
    said = [customer_says(wappi, phone, f"Здравствуйте, вопрос от {phone}") for phone in customers]
    for _ in range(3):
        run_poll()
    wait_for(lambda: all(replies_to(wappi, phone) for phone in customers), message="the other chats' replies")
    wait_idle()
    assert [[r["reply_to"] for r in replies_to(wappi, phone)] for phone in customers] == [[said[0]], [said[1]]]
    assert replies_to(wappi, failing) == []
    assert rows("SELECT chat_id FROM chat_poll_failures") == [(f"{failing}@c.us",)]
    # Once Wappi answers again, the chat is read at its next retry (made due now) and its customer answered.
    wappi.set_chat_faults({})
    with get_engine().begin() as connection:
        connection.exec_driver_sql("UPDATE chat_poll_failures SET next_retry_at = now()")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, failing), message="the failing chat's reply")
    wait_idle()
    assert [r["reply_to"] for r in replies] == [failing_message] == [r["reply_to"] for r in replies_to(wappi, failing)]
    assert rows("SELECT count(*) FROM chat_poll_failures")[0][0] == 0
