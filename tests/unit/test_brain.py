"""The brain in-process: the verdict's validation, the classification paths, call booking against an
injected clock, isolation between contacts, token usage. End to end through the workers:
tests/functional/test_brain.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from db.session import SessionFactory
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline.classify import InvalidVerdict, Verdict, decide, parse_verdict
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.intake import answer_new
from tests.support.model_calls import AGENT, CLARIFY, MODERATOR, agent_answer, calls_to, system_of, verdict

ALMATY = ZoneInfo("Asia/Almaty")
NOW = datetime(2025, 10, 2, 11, 0, tzinfo=ALMATY)  # a Thursday morning, when the agent answers
TUESDAY = datetime(2025, 10, 7, tzinfo=ALMATY)  # the next Tuesday


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


def classified(session: Session, phone: str) -> Any:
    found = rows_in(session, "SELECT is_client, classification_confidence, classification_reasoning "
                             "FROM contacts WHERE phone = :phone AND classified_at IS NOT NULL", phone=phone)
    assert len(found) == 1, f"contact {phone} not classified"
    return found[0]


def test_a_lead_is_answered(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                            gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    gemini.script([verdict(True, 0.95)])
    customer_says(wappi, "77100000001", "Добрый день! Хочу заказать медовик")
    answer_new(sessions)
    assert len(replies_to(wappi, "77100000001")) == 1
    stored = classified(session, "77100000001")
    assert stored.is_client is True and stored.classification_reasoning == "проверка"
    assert stored.classification_confidence == 0.95


def test_not_a_lead_is_stored_and_not_answered(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                                               gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    gemini.script([verdict(False, 0.9)])
    customer_says(wappi, "77100000002", "Предлагаем размещение рекламы в вашем аккаунте")
    answer_new(sessions)
    assert classified(session, "77100000002").is_client is False
    assert replies_to(wappi, "77100000002") == []
    assert rows_in(session, "SELECT status FROM messages WHERE direction = 'in'")[0].status == "ignored"
    # A later message from the same contact is not classified again and not answered.
    customer_says(wappi, "77100000002", "Ну что, обсудим сотрудничество?")
    answer_new(sessions)
    assert [row.status for row in rows_in(session, "SELECT status FROM messages ORDER BY id")] == ["ignored"] * 2
    assert replies_to(wappi, "77100000002") == []
    assert len(calls_to(gemini, MODERATOR)) == 1
    assert calls_to(gemini, AGENT) == []


def test_undecided_is_answered_neutrally_and_classified_again(sessions: SessionFactory, session: Session,
                                                              wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    # Not confident: each message is answered in the clarifying tone and classified again. At the
    # third message the unsure lead counts (CLASSIFY_MIN_MESSAGES), and the sales approach returns.
    gemini.script([verdict(True, 0.6), verdict(True, 0.6), verdict(True, 0.6)])
    phone = "77100000003"
    for count, text in enumerate(("Здравствуйте", "Подскажите кое-что", "Сколько стоит наполеон?"), start=1):
        customer_says(wappi, phone, text)
        answer_new(sessions)
        assert len(replies_to(wappi, phone)) == count
    replies = replies_to(wappi, phone)
    assert "наполеон" in replies[2]["body"].lower()
    assert classified(session, phone).is_client is True
    assert [CLARIFY in system_of(body) for body in calls_to(gemini, AGENT)] == [True, True, False]
    assert len(calls_to(gemini, MODERATOR)) == 3
    statuses = [row.status for row in rows_in(session, "SELECT status FROM messages WHERE direction = 'in' "
                                                       "ORDER BY id")]
    assert statuses == ["answered", "answered", "answered"]


@pytest.mark.parametrize("bad", [
    {"raw": {"candidates": [{"content": {"role": "model", "parts": [{"text": "{not json"}]}}]}},
    {"blocked": True},
    {"finish_reason": "SAFETY"},
    {"json": {"is_client": True, "confidence": 7, "reasoning": "вне диапазона"}},
])
def test_invalid_answers_are_asked_again_then_leave_the_contact_undecided(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, gemini: GeminiEmulator,
        bad: dict[str, Any]) -> None:
    assert chain.poll(sessions) == []
    gemini.script([{**bad, "match": MODERATOR}, {**bad, "match": MODERATOR}])
    customer_says(wappi, "77100000004", "Сколько стоит доставка?")
    [message_id] = chain.poll(sessions)
    # Nothing raises: undecided, so answered in the clarifying tone (ANSWER_UNDECIDED, the default).
    assert chain.answer(sessions, message_id) is not None
    stored = classified(session, "77100000004")
    assert stored.is_client is None
    assert len(calls_to(gemini, MODERATOR)) == 2  # asked once more, no more
    assert len(replies_to(wappi, "77100000004")) == 1
    assert CLARIFY in system_of(calls_to(gemini, AGENT)[0])
    assert rows_in(session, "SELECT status FROM messages WHERE direction = 'in'")[0].status == "answered"


def test_a_call_inside_working_hours_is_booked(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                                               gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    when = TUESDAY.replace(hour=15)
    gemini.script([verdict(True, 0.95), agent_answer("Отлично, созвонимся!", when.isoformat())])
    customer_says(wappi, "77100000005", f"Хочу заказать свадебный торт, позвоните {when:%d.%m} в 15:00")
    [message_id] = chain.poll(sessions)
    assert chain.answer(sessions, message_id, reply_at=NOW) is not None
    replies = replies_to(wappi, "77100000005")
    assert [reply["body"] for reply in replies] == ["Отлично, созвонимся!"]
    calls = rows_in(session, "SELECT scheduled_at, timezone, status, source_message_id FROM scheduled_calls")
    assert [(call.scheduled_at, call.timezone, call.status, call.source_message_id) for call in calls] == [
        (when, "Asia/Almaty", "booked", message_id)]
    assert len(calls_to(gemini, AGENT)) == 1


@pytest.mark.parametrize(("case", "requested"), [
    ("at_18", TUESDAY.replace(hour=18)),
    ("weekend", datetime(2025, 10, 4, 12, 0, tzinfo=ALMATY)),  # a Saturday
    ("past", NOW - timedelta(hours=3)),
    ("moscow_evening", TUESDAY.replace(hour=16, tzinfo=ZoneInfo("Europe/Moscow"))),  # 18:00 in Almaty
])
def test_a_call_outside_working_hours_is_refused_and_slots_offered(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, gemini: GeminiEmulator,
        case: str, requested: datetime) -> None:
    assert chain.poll(sessions) == []
    gemini.script([verdict(True, 0.95), agent_answer("Да, подтверждаю это время!", requested.isoformat())])
    customer_says(wappi, "77100000006", "Хочу заказать торт, позвоните мне")
    [message_id] = chain.poll(sessions)
    assert chain.answer(sessions, message_id, reply_at=NOW) is not None
    assert rows_in(session, "SELECT count(*) FROM scheduled_calls")[0][0] == 0
    [reply] = replies_to(wappi, "77100000006")
    assert "подтверждаю" not in reply["body"] and "могу предложить созвон" in reply["body"]  # the second answer
    agent_calls = calls_to(gemini, AGENT)
    assert len(agent_calls) == 2
    offered = system_of(agent_calls[1])
    assert "СВОБОДНОЕ ВРЕМЯ:" in offered
    # Every offered slot is a weekday.
    slot_line = offered.split("СВОБОДНОЕ ВРЕМЯ:")[1].strip()
    assert all(day not in slot_line for day in ("суббота", "воскресенье"))
    usage = rows_in(session, "SELECT purpose, count(*) AS calls, sum(total_tokens) AS tokens FROM model_usage "
                             "GROUP BY purpose")
    assert {row.purpose: row.calls for row in usage} == {"classify": 1, "reply": 2}
    assert all(row.tokens > 0 for row in usage)


def test_two_contacts_never_see_each_other(sessions: SessionFactory, wappi: WappiEmulator,
                                           gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    customer_says(wappi, "77100000007", "Секретное слово АЙСБЕРГ. Хочу заказать торт")
    customer_says(wappi, "77100000008", "Секретное слово ВУЛКАН. Сколько стоит доставка?")
    assert len(answer_new(sessions)) == 2
    assert len(gemini.requests_log()) == 4  # each contact classified and answered
    for call in gemini.requests_log():
        text = json.dumps(call["body"], ensure_ascii=False)
        assert not ("АЙСБЕРГ" in text and "ВУЛКАН" in text), "one prompt holds both contacts' messages"
    [first] = replies_to(wappi, "77100000007")
    [second] = replies_to(wappi, "77100000008")
    assert "ВУЛКАН" not in first["body"] and "АЙСБЕРГ" not in second["body"]
