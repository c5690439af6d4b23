"""The brain through real workers: classification paths, call booking, isolation, token usage."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline.classify import InvalidVerdict, Verdict, decide, parse_verdict
from tests.conftest import run_poll, wait_for
from tests.idle import wait_idle
from tests.test_pipeline import customer_says, replies_to, rows

MODERATOR = "модератор"  # a word only the moderator prompt has
AGENT = "Рабочее время для созвонов"  # a line only the sales agent prompt has
CLARIFY = "Пока непонятно, чего хочет собеседник"  # only in the undecided mode's instruction
ALMATY = ZoneInfo("Asia/Almaty")


# -- validation, without Celery --------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "not json", "[]", '{"is_client": "yes", "confidence": 0.9, "reasoning": ""}',
    '{"is_client": true, "confidence": 1.5, "reasoning": ""}',
    '{"is_client": true, "confidence": -0.1, "reasoning": ""}',
    '{"is_client": true, "confidence": "high", "reasoning": ""}',
    '{"is_client": true, "reasoning": ""}',
])
def test_invalid_verdicts_are_rejected(text: str) -> None:
    with pytest.raises(InvalidVerdict):
        parse_verdict(text)


def test_the_three_message_rule_and_the_early_confident_verdict() -> None:
    unsure = Verdict(is_client=True, confidence=0.6, reasoning="")
    sure = Verdict(is_client=True, confidence=0.85, reasoning="")
    assert decide(unsure, 1, min_messages=3, min_confidence=0.8) is None
    assert decide(unsure, 3, min_messages=3, min_confidence=0.8) is True
    assert decide(sure, 1, min_messages=3, min_confidence=0.8) is True
    assert decide(Verdict(None, 0.9, ""), 5, min_messages=3, min_confidence=0.8) is None
    assert decide(None, 5, min_messages=3, min_confidence=0.8) is None


# -- through the workers ---------------------------------------------------------------------

pytestmark_workers = pytest.mark.usefixtures("workers", "clean")


def verdict(is_client: bool | None, confidence: float) -> dict[str, Any]:
    return {"json": {"is_client": is_client, "confidence": confidence, "reasoning": "проверка"}, "match": MODERATOR}


def contact(phone: str) -> Any:
    return wait_for(lambda: rows("SELECT is_client, classification_confidence, classification_reasoning "
                                 "FROM contacts WHERE phone = :phone AND classified_at IS NOT NULL", phone=phone),
                    message=f"contact {phone} classified")[0]


@pytestmark_workers
def test_a_lead_is_answered(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    gemini.script([verdict(True, 0.95)])
    customer_says(wappi, "77100000001", "Добрый день! Хочу заказать медовик")
    run_poll()
    wait_for(lambda: replies_to(wappi, "77100000001"), message="a reply to the lead")
    stored = contact("77100000001")
    assert stored.is_client is True and stored.classification_reasoning == "проверка"


@pytestmark_workers
def test_not_a_lead_is_stored_and_not_answered(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    gemini.script([verdict(False, 0.9)])
    customer_says(wappi, "77100000002", "Предлагаем размещение рекламы в вашем аккаунте")
    run_poll()
    assert contact("77100000002").is_client is False
    wait_idle()
    assert replies_to(wappi, "77100000002") == []
    assert rows("SELECT status FROM messages WHERE direction = 'in'")[0].status == "ignored"
    # A later message from the same contact is not classified again and not answered.
    customer_says(wappi, "77100000002", "Ну что, обсудим сотрудничество?")
    run_poll()
    wait_for(lambda: len(rows("SELECT 1 FROM messages WHERE status = 'ignored'")) == 2, message="second ignored")
    assert sum(1 for call in gemini.requests_log() if MODERATOR in json.dumps(call["body"], ensure_ascii=False)) == 1


@pytestmark_workers
def test_undecided_is_answered_neutrally_and_classified_again(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    # Not confident: each message is answered in the clarifying tone and classified again. At the
    # third message the unsure lead counts (CLASSIFY_MIN_MESSAGES), and the sales approach returns.
    gemini.script([verdict(True, 0.6), verdict(True, 0.6), verdict(True, 0.6)])
    phone = "77100000003"
    for count, text in enumerate(("Здравствуйте", "Подскажите кое-что", "Сколько стоит наполеон?"), start=1):
        customer_says(wappi, phone, text)
        run_poll()
        def replied(count: int = count) -> bool:
            return len(replies_to(wappi, phone)) == count

        wait_for(replied, message=f"reply {count}")
        wait_idle()
    replies = replies_to(wappi, phone)
    assert len(replies) == 3 and "наполеон" in replies[2]["body"].lower()
    assert contact(phone).is_client is True
    agent_prompts = [call["body"]["systemInstruction"]["parts"][0]["text"] for call in gemini.requests_log()
                     if AGENT in json.dumps(call["body"], ensure_ascii=False)]
    assert [CLARIFY in prompt for prompt in agent_prompts] == [True, True, False]
    assert sum(1 for call in gemini.requests_log() if MODERATOR in json.dumps(call["body"], ensure_ascii=False)) == 3
    statuses = [row.status for row in rows("SELECT status FROM messages WHERE direction = 'in' ORDER BY id")]
    assert statuses == ["answered", "answered", "answered"]


@pytestmark_workers
@pytest.mark.parametrize("bad", [
    {"raw": {"candidates": [{"content": {"role": "model", "parts": [{"text": "{not json"}]}}]}},
    {"blocked": True},
    {"finish_reason": "SAFETY"},
    {"json": {"is_client": True, "confidence": 7, "reasoning": "вне диапазона"}},
])
def test_invalid_answers_are_asked_again_then_leave_the_contact_undecided(
        wappi: WappiEmulator, gemini: GeminiEmulator, bad: dict[str, Any]) -> None:
    run_poll()
    gemini.script([{**bad, "match": MODERATOR}, {**bad, "match": MODERATOR}])
    customer_says(wappi, "77100000004", "Сколько стоит доставка?")
    run_poll()
    stored = contact("77100000004")
    assert stored.is_client is None
    moderator_calls = [call for call in gemini.requests_log()
                       if MODERATOR in json.dumps(call["body"], ensure_ascii=False)]
    assert len(moderator_calls) == 2  # asked once more, no more
    # Undecided, so answered in the clarifying tone (ANSWER_UNDECIDED, the default).
    wait_for(lambda: replies_to(wappi, "77100000004"), message="the neutral answer")
    wait_idle()
    assert len(replies_to(wappi, "77100000004")) == 1
    assert contact("77100000004").is_client is None
    assert rows("SELECT status FROM messages WHERE direction = 'in'")[0].status == "answered"
    assert rows("SELECT count(*) FROM dead_letters")[0][0] == 0  # nothing crashed


def agent_answer(reply: str, call_at: str | None) -> dict[str, Any]:
    return {"json": {"reply": reply, "call": {"at": call_at} if call_at else None}, "match": AGENT}


def next_weekday(hour: int, minute: int = 0, *, weekday: int = 1) -> datetime:
    """The next given weekday (Tuesday by default) at that local time, at least a day ahead."""
    day = datetime.now(ALMATY).date() + timedelta(days=1)
    while day.weekday() != weekday:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ALMATY)


@pytestmark_workers
def test_a_call_inside_working_hours_is_booked(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    when = next_weekday(15)
    gemini.script([verdict(True, 0.95), agent_answer("Отлично, созвонимся!", when.isoformat())])
    customer_says(wappi, "77100000005", f"Хочу заказать свадебный торт, позвоните {when:%d.%m} в 15:00")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, "77100000005"), message="the confirmation")
    assert replies[0]["body"] == "Отлично, созвонимся!"
    calls = rows("SELECT scheduled_at, timezone, status FROM scheduled_calls")
    assert len(calls) == 1 and calls[0].scheduled_at == when and calls[0].timezone == "Asia/Almaty"


@pytestmark_workers
@pytest.mark.parametrize("case", ["at_18", "weekend", "past", "moscow_evening"])
def test_a_call_outside_working_hours_is_refused_and_slots_offered(
        wappi: WappiEmulator, gemini: GeminiEmulator, case: str) -> None:
    requested = {
        "at_18": next_weekday(18).isoformat(),
        "weekend": next_weekday(12, weekday=5).isoformat(),
        "past": (datetime.now(ALMATY) - timedelta(hours=3)).isoformat(),
        "moscow_evening": next_weekday(16).astimezone(ZoneInfo("Europe/Moscow")).replace(hour=16).isoformat(),
    }[case]
    run_poll()
    gemini.script([verdict(True, 0.95), agent_answer("Да, подтверждаю это время!", requested)])
    customer_says(wappi, "77100000006", "Хочу заказать торт, позвоните мне")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, "77100000006"), message="the re-offer")
    assert rows("SELECT count(*) FROM scheduled_calls")[0][0] == 0
    body = replies[0]["body"]
    assert "подтверждаю" not in body and "могу предложить созвон" in body  # the second answer offers slots
    agent_calls = [call for call in gemini.requests_log() if AGENT in json.dumps(call["body"], ensure_ascii=False)]
    assert len(agent_calls) == 2
    offered = agent_calls[1]["body"]["systemInstruction"]["parts"][0]["text"]
    assert "СВОБОДНОЕ ВРЕМЯ:" in offered
    # Every offered slot is a weekday between 10:00 and 17:30 local time.
    slot_line = offered.split("СВОБОДНОЕ ВРЕМЯ:")[1].strip()
    assert all(day not in slot_line for day in ("суббота", "воскресенье"))
    usage = rows("SELECT purpose, count(*) AS calls, sum(total_tokens) AS tokens FROM model_usage GROUP BY purpose")
    assert {row.purpose: row.calls for row in usage} == {"classify": 1, "reply": 2}
    assert all(row.tokens > 0 for row in usage)


@pytestmark_workers
def test_two_contacts_never_see_each_other(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    customer_says(wappi, "77100000007", "Секретное слово АЙСБЕРГ. Хочу заказать торт")
    customer_says(wappi, "77100000008", "Секретное слово ВУЛКАН. Сколько стоит доставка?")
    run_poll()
    wait_for(lambda: replies_to(wappi, "77100000007") and replies_to(wappi, "77100000008"), message="both replies")
    for call in gemini.requests_log():
        text = json.dumps(call["body"], ensure_ascii=False)
        assert not ("АЙСБЕРГ" in text and "ВУЛКАН" in text), "one prompt holds both contacts' messages"
    assert "ВУЛКАН" not in replies_to(wappi, "77100000007")[0]["body"]
    assert "АЙСБЕРГ" not in replies_to(wappi, "77100000008")[0]["body"]
