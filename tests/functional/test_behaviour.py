"""Conversation behaviour through the workers: a burst gets one reply, a human reply from the phone
pauses the bot (and the operator resumes it), a whitelisted number is ignored, and a worker killed
mid-window still answers once. The rules behind them: tests/unit/test_behaviour.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis
from kombu import Connection

from devstack import wait_for
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support.cli import celery
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.env import PROFILE_ID
from tests.support.idle import wait_idle
from tests.support.model_calls import AGENT, MODERATOR, calls_to
from tests.support.polling import first_start, run_poll
from tests.support.stack import Stack


@pytest.mark.usefixtures("workers", "clean")
def test_a_burst_gets_one_reply_and_a_later_burst_another(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    first_start()
    phone = "77500000001"
    for text in ("Хочу записаться", "на торт машинкой", "завтра в 15:00"):
        customer_says(wappi, phone, text)
    run_poll()
    first = wait_for(lambda: replies_to(wappi, phone), message="the burst's reply")
    wait_idle()
    assert len(replies_to(wappi, phone)) == 1
    calls = calls_to(gemini, AGENT)
    assert len(calls) == 1
    # One turn with all three messages, in order (after the contact data block).
    assert [part["text"] for part in calls[0]["contents"][-1]["parts"]][-3:] == [
        "Хочу записаться", "на торт машинкой", "завтра в 15:00"]
    assert "завтра в 15:00" in first[0]["body"]
    assert len(calls_to(gemini, MODERATOR)) == 1  # one classification per burst
    customer_says(wappi, phone, "А сколько стоит медовик?")
    run_poll()
    wait_for(lambda: len(replies_to(wappi, phone)) == 2, message="the second burst's reply")
    wait_idle()
    assert len(replies_to(wappi, phone)) == 2


@pytest.mark.usefixtures("workers", "clean")
def test_a_human_reply_pauses_the_bot_until_the_operator_resumes_it(wappi: WappiEmulator) -> None:
    first_start()
    phone = "77500000003"
    customer_says(wappi, phone, "Сколько стоит наполеон?")
    run_poll()
    wait_for(lambda: replies_to(wappi, phone), message="the bot's reply")
    wappi.phone_message(PROFILE_ID, phone, "Здравствуйте, это Айдана, менеджер")
    run_poll()
    contact = wait_for(lambda: rows("SELECT paused_until, awaiting_follow_up FROM contacts "
                                    "WHERE phone = :phone AND paused_until IS NOT NULL", phone=phone),
                       message="the pause")[0]
    assert contact.awaiting_follow_up is False
    customer_says(wappi, phone, "А доставка есть?")
    run_poll()
    wait_for(lambda: rows("SELECT 1 FROM messages WHERE status = 'paused'"), message="the message to be held")
    wait_idle()
    assert len(replies_to(wappi, phone)) == 1
    listed = celery("contacts", "paused")
    assert listed.returncode == 0 and phone in listed.stdout
    assert celery("contacts", "resume", f"+{phone}").stdout.strip() == f"resumed +{phone}"
    assert "no paused contacts" in celery("contacts", "paused").stdout
    # Resumed: the bot answers the contact's next message again.
    customer_says(wappi, phone, "А наполеон сегодня есть?")
    run_poll()
    wait_for(lambda: len(replies_to(wappi, phone)) == 2, message="the answer after the resume")
    wait_idle()
    assert len(replies_to(wappi, phone)) == 2


@pytest.mark.usefixtures("workers", "clean")
def test_a_whitelisted_number_is_ignored(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    first_start()
    added = celery("whitelist", "add", "+7 701 555-00-04", "--note", "owner's brother")  # every notation: unit tier
    assert added.returncode == 0 and "+77015550004" in added.stdout
    customer_says(wappi, "77015550004", "Привет! Сколько стоит торт? Купить хочу")
    run_poll()
    wait_for(lambda: rows("SELECT 1 FROM messages WHERE status = 'ignored'"), message="the message to be ignored")
    wait_idle()
    assert replies_to(wappi, "77015550004") == []
    assert gemini.requests_log() == []  # not even classified
    assert "+77015550004" in celery("whitelist", "list").stdout


def test_a_worker_killed_mid_window_still_answers_once(clean: None, wappi: WappiEmulator, tmp_path: Path) -> None:
    stack = Stack(tmp_path, BATCH_WINDOW="6")
    try:
        stack.workers.start("all", concurrency=2)
        stack.first_start()
        customer_says(wappi, "77500000009", "Хочу заказать торт на субботу")
        stack.send_task("pipeline.poll", "poll")
        wait_for(lambda: rows("SELECT 1 FROM contacts WHERE batch_due_at IS NOT NULL"), message="the window to open")
        process = stack.workers.processes["all"]
        for child in stack.workers.children("all"):
            os.kill(child, signal.SIGKILL)
        process.send_signal(signal.SIGKILL)
        process.wait()
        stack.workers.processes.pop("all")
        with redis.Redis.from_url(stack.redis.url, decode_responses=True) as client:
            held_by_the_dead = [str(tag) for tag in client.hkeys("unacked")]
        stack.workers.start("all2", concurrency=2)

        def answered() -> bool:
            stack.send_task("pipeline.poll", "poll")  # what beat does; the poll restarts the dead timer
            return bool(replies_to(wappi, "77500000009"))

        wait_for(answered, timeout=120, interval=2.0, message="the answer after the restart")
        # The dead worker's tasks come back only after the broker's visibility timeout (an hour):
        # hand them back now, as the broker would, and let them run before counting.
        with Connection(stack.redis.url) as connection:
            qos = connection.default_channel.qos
            for tag in held_by_the_dead:
                qos.restore_by_tag(tag, leftmost=True)
        wait_idle(stack.redis.url)
        assert len(replies_to(wappi, "77500000009")) == 1
    finally:
        stack.close()
