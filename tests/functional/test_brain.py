"""The brain through real workers: a lead is answered and a call booked, a non-lead is not answered.
The rules behind them (validation, every classification path, refused times, isolation, usage):
tests/unit/test_brain.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from devstack import wait_for
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.idle import wait_idle
from tests.support.model_calls import AGENT, MODERATOR, agent_answer, calls_to, verdict
from tests.support.polling import first_start, run_poll

ALMATY = ZoneInfo("Asia/Almaty")


def next_tuesday(hour: int) -> datetime:
    """The next Tuesday at least a day ahead, at that local time."""
    day = datetime.now(ALMATY).date() + timedelta(days=1)
    while day.weekday() != 1:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=ALMATY)


@pytest.mark.usefixtures("workers", "clean")
def test_a_lead_is_answered_and_a_call_inside_working_hours_is_booked(wappi: WappiEmulator,
                                                                      gemini: GeminiEmulator) -> None:
    first_start()
    phone = "77100000005"
    when = next_tuesday(15)
    gemini.script([verdict(True, 0.95), agent_answer("Отлично, созвонимся!", when.isoformat())])
    customer_says(wappi, phone, f"Хочу заказать свадебный торт, позвоните {when:%d.%m} в 15:00")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, phone), message="the confirmation")
    wait_idle()
    assert [reply["body"] for reply in replies_to(wappi, phone)] == ["Отлично, созвонимся!"]
    contact = rows("SELECT is_client, classification_reasoning FROM contacts WHERE phone = :phone", phone=phone)[0]
    assert contact.is_client is True and contact.classification_reasoning == "проверка"
    calls = rows("SELECT scheduled_at, timezone, status FROM scheduled_calls")
    assert [(call.scheduled_at, call.timezone, call.status) for call in calls] == [(when, "Asia/Almaty", "booked")]
    assert replies[0]["reply_to"]  # answered as a reply to the customer's message
    assert rows("SELECT status FROM messages WHERE direction = 'in'")[0].status == "answered"


@pytest.mark.usefixtures("workers", "clean")
def test_a_non_lead_is_not_answered(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    first_start()
    phone = "77700000002"
    customer_says(wappi, phone, "Добрый день, мы поставщик муки, предлагаем сотрудничество")
    run_poll()
    wait_for(lambda: rows("SELECT 1 FROM messages WHERE status = 'ignored'"), message="the offer ignored")
    wait_idle()
    assert rows("SELECT is_client FROM contacts WHERE phone = :phone", phone=phone)[0].is_client is False
    # A later message from the same contact is not classified again and not answered.
    customer_says(wappi, phone, "Ну что, обсудим сотрудничество?")
    run_poll()
    wait_for(lambda: len(rows("SELECT 1 FROM messages WHERE status = 'ignored'")) == 2, message="second ignored")
    wait_idle()
    assert replies_to(wappi, phone) == []
    assert len(calls_to(gemini, MODERATOR)) == 1
    assert calls_to(gemini, AGENT) == []
