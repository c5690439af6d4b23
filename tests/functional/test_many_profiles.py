"""Three profiles served by one worker pool, through real workers: two WhatsApp numbers of two
businesses (a bakery on the environment's profile, a florist with its own knowledge base) and a
Telegram bot. Each customer is answered once, through their own channel, with their own business's
facts; one profile refused by its provider costs only itself; a webhook for one profile never lands
in another; a customer who blocked the bot is never retried; a restart of the bot's poller neither
loses nor repeats an update."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import delete

from db.models import KnowledgeFile, Profile
from db.session import session_scope
from devstack import wait_for
from domain.states import Provider
from emulators.gemini import GeminiEmulator
from emulators.telegram import TelegramEmulator
from emulators.wappi import WappiEmulator
from infra.redis import key
from kb.index import build_index, kb_base
from pipeline.credentials import encrypt
from settings import ROOT, get_settings
from tests.support.db import rows
from tests.support.env import BOT_TOKEN, PROFILE_ID, WEBHOOK_SECRET
from tests.support.idle import wait_idle
from tests.support.model_calls import AGENT, system_texts
from tests.support.polling import first_start, run_poll
from tests.support.stack import Stack

FLORIST = "b2c3d4e5-f6a7"
FLORIST_SECRET = "florist-webhook-secret"
FLORIST_NAME = "Цветы «Астра» на Туран"
BOT = "astra_bot"
FLOWERS_KB = str(ROOT / "kb" / "examples" / "flowers")
PHONE = "77090000001"  # writes to both WhatsApp numbers: two contacts


@pytest.fixture()
def three_profiles(clean: None, wappi: WappiEmulator, bot: TelegramEmulator) -> Iterator[None]:
    """The environment's bakery number, a florist's number with its own knowledge base and webhook
    secret, and the florist's Telegram bot; each profile's first start done."""
    if FLORIST not in wappi.profile_ids:
        wappi.add_profile(FLORIST)
    settings = get_settings()
    with session_scope() as session:
        session.execute(delete(KnowledgeFile).where(KnowledgeFile.base == kb_base(FLOWERS_KB, settings.kb_dir)))
        build_index(session, Path(FLOWERS_KB), base=kb_base(FLOWERS_KB, settings.kb_dir))
        session.add(Profile(provider=Provider.WAPPI, profile_id=FLORIST, name="Астра", active=True,
                            settings={"BUSINESS_NAME": FLORIST_NAME, "KB_DIR": FLOWERS_KB,
                                      "WEBHOOK_SECRET": FLORIST_SECRET}))
        session.add(Profile(provider=Provider.TELEGRAM_BOT, profile_id=BOT, name="Астра бот", active=True,
                            credentials=encrypt(BOT_TOKEN, settings),
                            settings={"BUSINESS_NAME": FLORIST_NAME, "KB_DIR": FLOWERS_KB}))
    first_start()
    wait_for(lambda: len(rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL")) == 3,
             message="every profile's first poll")
    yield


def replies(wappi: WappiEmulator, profile_id: str, phone: str) -> list[str]:
    return [item["body"] for item in wappi.sent_messages(profile_id) if item["phone"] == phone]


@pytest.mark.usefixtures("workers", "three_profiles")
def test_three_profiles_each_answer_their_own_customers_with_their_own_facts(
        wappi: WappiEmulator, gemini: GeminiEmulator, bot: TelegramEmulator) -> None:
    bot.set_flood_limits(True)  # Telegram's own limits: 1 message a second a chat, 30 a second
    wappi.customer_message(PROFILE_ID, PHONE, "Сколько стоит торт Медовик?")
    wappi.customer_message(FLORIST, PHONE, "Сколько стоит букет Весна?")
    bot.user_writes(7001, "/start")
    run_poll()
    wait_for(lambda: replies(wappi, PROFILE_ID, PHONE) and replies(wappi, FLORIST, PHONE)
             and bot.sent_messages(7001), timeout=60, message="every channel's reply")
    bot.user_writes(7001, "А букет Весна есть?")
    run_poll()
    wait_for(lambda: len(bot.sent_messages(7001)) == 2, timeout=60, message="the bot's second reply")
    wait_idle()
    assert len(replies(wappi, PROFILE_ID, PHONE)) == 1 and len(replies(wappi, FLORIST, PHONE)) == 1
    assert len(bot.sent_messages(7001)) == 2
    assert bot.flood_refusals() == [], "the bot kept within Telegram's flood limits"
    instructions = system_texts(gemini, AGENT)
    florist = [text for text in instructions if FLORIST_NAME in text]
    bakery = [text for text in instructions if FLORIST_NAME not in text]
    assert len(florist) == 3 and len(bakery) == 1, "two florist channels (3 answers), one bakery answer"
    assert all("18 500" in text and "Медовик" not in text for text in florist)
    assert "Медовик" in bakery[0] and "18 500" not in bakery[0]
    # One phone writing to two numbers is two contacts, each with its own conversation.
    assert rows("SELECT count(*) FROM contacts WHERE phone = :phone", phone=PHONE)[0][0] == 2


@pytest.mark.usefixtures("workers", "three_profiles")
def test_a_refused_profile_costs_only_itself(wappi: WappiEmulator, bot: TelegramEmulator, redis_client: Any) -> None:
    wappi.set_profile(FLORIST, authorized=False)
    wappi.customer_message(PROFILE_ID, "77090000002", "Хочу заказать торт")
    wappi.customer_message(FLORIST, "77090000003", "Хочу заказать букет")
    bot.user_writes(7002, "Здравствуйте, есть доставка?")
    for _ in range(3):
        run_poll()
    wait_for(lambda: replies(wappi, PROFILE_ID, "77090000002") and bot.sent_messages(7002),
             timeout=60, message="the two working profiles' replies")
    wait_idle()
    assert replies(wappi, FLORIST, "77090000003") == []
    assert rows("SELECT down_reason FROM profiles WHERE profile_id = :id", id=FLORIST)[0].down_reason \
        == "not authorized"
    # Back: the florist's customer is answered too.
    wappi.set_profile(FLORIST, authorized=True)
    redis_client.delete(key("poll-backoff", FLORIST))  # its backoff has run its course
    run_poll()
    wait_for(lambda: replies(wappi, FLORIST, "77090000003"), timeout=60, message="the florist's reply")


@pytest.mark.usefixtures("three_profiles")
def test_a_webhook_for_one_profile_never_lands_in_another(web: str, wappi: WappiEmulator) -> None:
    url = f"{web}/webhooks/wappi"
    item = {"wh_type": "incoming_message", "profile_id": FLORIST, "id": "WH-1", "type": "chat",
            "body": "Букет на завтра можно?", "from": "77090000004@c.us", "chatId": "77090000004@c.us",
            "senderName": "Айгерим", "time": 1767225600, "fromMe": False}
    # The bakery's secret does not open the florist's profile; an unknown profile is refused.
    assert requests.post(url, json={"messages": [item]}, headers={"Authorization": WEBHOOK_SECRET},
                         timeout=5).status_code == 401
    unknown = requests.post(url, json={"messages": [{**item, "profile_id": "ffffffff-0000"}]},
                            headers={"Authorization": WEBHOOK_SECRET}, timeout=5)
    assert unknown.status_code == 404 and "unknown or disabled profile" in unknown.json()["error"]
    assert rows("SELECT 1 FROM messages WHERE provider_message_id = 'WH-1'") == []
    # Wappi's own push for the florist: stored under the florist only.
    wappi.set_webhook(FLORIST, url, FLORIST_SECRET)
    try:
        wappi.customer_message(FLORIST, "77090000005", "Есть белые розы?")
        stored = wait_for(lambda: rows("SELECT p.profile_id FROM messages m JOIN profiles p ON p.id = m.profile_id "
                                       "JOIN contacts c ON c.id = m.contact_id WHERE c.phone = '77090000005'"),
                          message="the webhook to store the florist's message")
        assert [row.profile_id for row in stored] == [FLORIST]
        wait_for(lambda: replies(wappi, FLORIST, "77090000005"), timeout=60, message="the florist's reply")
    finally:
        wappi.set_webhook(FLORIST, "", "")
    wait_idle()
    assert replies(wappi, PROFILE_ID, "77090000005") == []
    assert len(replies(wappi, FLORIST, "77090000005")) == 1


@pytest.mark.usefixtures("workers", "three_profiles")
def test_a_customer_who_blocked_the_bot_is_not_retried(bot: TelegramEmulator) -> None:
    bot.user_writes(7003, "Здравствуйте")
    bot.user_blocks(7003, notify=False)  # the send finds out: 403 Forbidden: bot was blocked by the user
    run_poll()
    wait_for(lambda: rows("SELECT 1 FROM outbox WHERE status = 'cancelled'"), timeout=60,
             message="the reply to settle")
    wait_idle()
    outbox = rows("SELECT status, attempts, error FROM outbox")
    assert [(row.status, row.attempts) for row in outbox] == [("cancelled", 1)]
    assert "blocked" in outbox[0].error
    assert rows("SELECT unreachable_reason FROM contacts WHERE phone = '7003'")[0].unreachable_reason
    assert rows("SELECT count(*) FROM dead_letters")[0][0] == 0
    assert bot.sent_messages(7003) == []


def test_a_restart_of_the_bots_poller_neither_loses_nor_repeats_an_update(
        clean: None, wappi: WappiEmulator, bot: TelegramEmulator, tmp_path: Path) -> None:
    stack = Stack(tmp_path, BATCH_WINDOW="0")
    try:
        with session_scope() as session:
            session.add(Profile(provider=Provider.TELEGRAM_BOT, profile_id=BOT, name="бот", active=True,
                                credentials=encrypt(BOT_TOKEN, get_settings())))
        stack.workers.start("first", concurrency=2)
        bot.user_writes(7101, "Первый вопрос")
        stack.send_task("pipeline.poll_dispatch", "poll")
        wait_for(lambda: bot.sent_messages(7101), timeout=60, message="the first reply")
        wait_idle(stack.env["REDIS_URL"])
        # The poller dies hard (no warm shutdown); new updates wait at Telegram meanwhile.
        process = stack.workers.processes.pop("first")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        bot.user_writes(7102, "Второй вопрос")
        bot.user_writes(7101, "И ещё вопрос")
        stack.workers.start("second", concurrency=2)
        stack.send_task("pipeline.poll_dispatch", "poll")
        wait_for(lambda: bot.sent_messages(7102) and len(bot.sent_messages(7101)) == 2, timeout=90,
                 message="the replies after the restart")
        stack.send_task("pipeline.poll_dispatch", "poll")
        wait_idle(stack.env["REDIS_URL"])
        assert len(bot.sent_messages(7101)) == 2 and len(bot.sent_messages(7102)) == 1
        inbound = rows("SELECT provider_message_id FROM messages WHERE direction = 'in' ORDER BY id")
        assert len(inbound) == 3 and len({row.provider_message_id for row in inbound}) == 3
    finally:
        stack.close()
