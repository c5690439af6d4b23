"""Conversation behaviour through the workers: bursts, human takeover, whitelist, STOP, edges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from kombu import Connection

from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from settings import get_settings
from tests.conftest import PROFILE_ID, ROOT, run_poll, wait_for
from tests.idle import wait_idle
from tests.test_pipeline import customer_says, replies_to, rows

AGENT = "Рабочее время для созвонов"
MODERATOR = "модератор"


def agent_calls(gemini: GeminiEmulator) -> list[dict[str, object]]:
    return [call for call in gemini.requests_log() if AGENT in json.dumps(call["body"], ensure_ascii=False)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", *args], cwd=ROOT, env={**os.environ},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.usefixtures("workers", "clean")
def test_a_burst_gets_one_reply_and_a_later_burst_another(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    phone = "77500000001"
    for text in ("Хочу записаться", "на торт машинкой", "завтра в 15:00"):
        customer_says(wappi, phone, text)
    run_poll()
    first = wait_for(lambda: replies_to(wappi, phone), message="the burst's reply")
    wait_idle()
    assert len(replies_to(wappi, phone)) == 1
    calls = agent_calls(gemini)
    assert len(calls) == 1
    # One turn with all three messages, in order.
    last_turn = calls[0]["body"]["contents"][-1]  # type: ignore[index]
    # (The first part is the contact data block, names as JSON: see pipeline.history.contact_data.)
    assert [part["text"] for part in last_turn["parts"]][-3:] == ["Хочу записаться", "на торт машинкой",
                                                                  "завтра в 15:00"]
    assert "завтра в 15:00" in first[0]["body"]
    moderator = [call for call in gemini.requests_log() if MODERATOR in json.dumps(call["body"], ensure_ascii=False)]
    assert len(moderator) == 1  # one classification per burst
    customer_says(wappi, phone, "А сколько стоит медовик?")
    run_poll()
    wait_for(lambda: len(replies_to(wappi, phone)) == 2, message="the second burst's reply")


@pytest.mark.usefixtures("workers", "clean")
def test_a_message_during_the_answer_supersedes_it(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    phone = "77500000002"
    # The model takes 4 s over the first answer; meanwhile the customer writes again.
    gemini.script([{"delay": 4.0, "json": {"reply": "Первый ответ, который устарел", "call": None}, "match": AGENT}])
    customer_says(wappi, phone, "Хочу заказать торт")
    run_poll()
    wait_for(lambda: agent_calls(gemini), message="the model to start answering")
    customer_says(wappi, phone, "И ещё макаронс, пожалуйста")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, phone), timeout=40, message="the newer answer")
    wait_idle()
    bodies = [reply["body"] for reply in replies_to(wappi, phone)]
    assert bodies == [replies[0]["body"]] and "устарел" not in bodies[0]
    assert "макаронс" in bodies[0]


@pytest.mark.usefixtures("workers", "clean")
def test_a_human_reply_pauses_the_bot_and_stops_follow_ups(wappi: WappiEmulator) -> None:
    run_poll()
    phone = "77500000003"
    customer_says(wappi, phone, "Сколько стоит наполеон?")
    run_poll()
    wait_for(lambda: replies_to(wappi, phone), message="the bot's reply")
    requests.post(f"{wappi.url}/_emulator/phone_message", json={"profile_id": PROFILE_ID, "phone": phone,
                                                                  "text": "Здравствуйте, это Айдана, менеджер"},
                  timeout=5).raise_for_status()
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
    listed = cli("contacts", "paused")
    assert listed.returncode == 0 and phone in listed.stdout
    assert cli("contacts", "resume", f"+{phone}").stdout.strip() == f"resumed +{phone}"
    assert "no paused contacts" in cli("contacts", "paused").stdout


@pytest.mark.usefixtures("workers", "clean")
@pytest.mark.parametrize("notation", ["+7 701 555-00-04", "87015550004", "77015550004@c.us",
                                      "77015550004@s.whatsapp.net"])
def test_whitelisted_numbers_are_ignored_in_every_notation(wappi: WappiEmulator, gemini: GeminiEmulator,
                                                           notation: str) -> None:
    run_poll()
    added = cli("whitelist", "add", notation, "--note", "owner's brother")
    assert added.returncode == 0 and "+77015550004" in added.stdout
    customer_says(wappi, "77015550004", "Привет! Сколько стоит торт? Купить хочу")
    run_poll()
    wait_for(lambda: rows("SELECT 1 FROM messages WHERE status = 'ignored'"), message="the message to be ignored")
    wait_idle()
    assert replies_to(wappi, "77015550004") == []
    assert gemini.requests_log() == []  # not even classified
    assert "+77015550004" in cli("whitelist", "list").stdout


@pytest.mark.usefixtures("workers", "clean")
@pytest.mark.parametrize("stop_text", ["стоп", "STOP", "Отпишитесь, пожалуйста", "Не пишите мне больше!"])
def test_stop_confirms_once_and_ends_follow_ups_for_good(wappi: WappiEmulator, stop_text: str) -> None:
    run_poll()
    phone = "77500000005"
    customer_says(wappi, phone, stop_text)
    run_poll()
    confirmation = wait_for(lambda: replies_to(wappi, phone), message="the confirmation")
    assert confirmation[0]["body"] == get_settings().opt_out_confirmation
    assert rows("SELECT opted_out FROM contacts WHERE phone = :phone", phone=phone)[0].opted_out is True
    customer_says(wappi, phone, stop_text)  # a second STOP gets no second confirmation
    run_poll()
    wait_idle()
    assert len(replies_to(wappi, phone)) == 1
    # A later question of their own is answered, but no follow-up chain ever starts.
    customer_says(wappi, phone, "Хотя скажите, сколько стоит медовик?")
    run_poll()
    wait_for(lambda: len(replies_to(wappi, phone)) == 2, message="the answer to the question")
    wait_for(lambda: not rows("SELECT 1 FROM outbox WHERE status IN ('pending', 'sending')"),
             message="the answer's delivery to be recorded")
    # Answering a later question does not undo the opt-out: no follow-up chain may start for it.
    assert rows("SELECT opted_out FROM contacts WHERE phone = :phone", phone=phone)[0].opted_out is True
    from datetime import UTC, datetime, timedelta

    from tests.support.followup import sweep as sweep_once

    assert sweep_once(datetime.now(UTC) + timedelta(days=2)) == []
    assert rows("SELECT count(*) FROM follow_ups")[0][0] == 0


@pytest.mark.usefixtures("workers", "clean")
def test_group_and_old_messages_are_recorded_not_answered(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    customer_says(wappi, "77500000006", "Всем привет, сколько стоит торт?", group=True)
    customer_says(wappi, "77500000007", "Сколько стоит торт? (написал час назад)", time=int(time.time()) - 3600)
    long_text = "🎂" * 3 + "Хочу торт " + "очень " * 1700 + "🎉"  # 10,000+ characters
    customer_says(wappi, "77500000008", long_text)
    run_poll()
    long_reply = wait_for(lambda: replies_to(wappi, "77500000008"), message="the reply to the long message")
    wait_idle()
    assert replies_to(wappi, "77500000006") == [] and replies_to(wappi, "77500000007") == []
    old = rows("SELECT status FROM messages m JOIN contacts c ON c.id = m.contact_id WHERE c.phone = '77500000007'")
    assert [row.status for row in old] == ["history"]
    assert rows("SELECT count(*) FROM contacts WHERE phone LIKE '%g.us'")[0][0] == 0
    stored = rows("SELECT text FROM messages WHERE direction = 'in' AND text LIKE '🎂%'")[0].text
    assert stored.startswith("🎂🎂🎂Хочу торт") and stored.endswith("🎉") and len(stored) > 10_000
    assert long_reply[0]["body"].startswith("Здравствуйте!")
    prompt_text = json.dumps(agent_calls(gemini)[-1]["body"], ensure_ascii=False)
    assert f"[сообщение обрезано: показаны первые 4000 из {len(long_text)} символов]" in prompt_text
    assert "🎂🎂🎂Хочу торт" in prompt_text


def test_a_worker_killed_mid_window_still_answers_once(clean: None, wappi: WappiEmulator, tmp_path: Path) -> None:
    from tests.test_faults import Stack

    stack = Stack(tmp_path, BATCH_WINDOW="6")
    try:
        stack.workers.start("all", concurrency=2)
        stack.send_task("pipeline.poll", "poll")
        wait_for(lambda: rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL"), message="first start")
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
