"""Opt-out: a short exact STOP decides at once; a longer message that mentions stopping goes to the model.

The rule is a table; the model's part is the `opt_out` field of the sales agent's answer, checked
against the emulator over HTTP and through the pipeline's functions. A STOP gets one confirmation
and ends follow-ups for good. End to end through the workers: tests/functional/test_opt_out.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy.orm import Session

from db.session import SessionFactory
from domain.answers import is_opt_out
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline.followup import sweep_once
from pipeline.respond import AGENT_SCHEMA
from settings import get_settings
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.intake import answer_new
from tests.support.model_calls import AGENT, calls_to

OPT_OUT_AT_ONCE = [
    "стоп", "СТОП!!!", "Стоп.", "stop", "STOP 🛑", "Stop please", "unsubscribe", "Unsubscribe!",
    "Отпишитесь", "отпишитесь, пожалуйста 🙏", "Пожалуйста, отпишите меня", "Отписка",
    "Больше не пишите мне!", "Не пишите мне больше", "не пишите мне", "Хватит мне писать!!",
    "Перестаньте писать", "Удалите мой номер", "Уберите меня из рассылки", "отпишитись",  # a typo
    "атпишитесь", "Маған жазбаңыз", "жазбаңыз!", "Стоп, стоп", "не пешите мне",  # typo: пешите
    "do not text me", "stop messaging me", "Stop texting me pls", "ОТПИШИТЕСЬ ОТ РАССЫЛКИ",
    "больше нe пишите",  # a Latin "e" in "нe"
]
NOT_AT_ONCE = [
    "Стоп, а сколько стоит доставка?", "Не пишите адрес, я сам заберу", "Подождите, стоп, я перепутал размер",
    "Пожалуйста, больше никогда мне не пишите, мне это не интересно",  # long: the model decides
    "Стоп-кран не нужен, нужен торт", "стопка блинов есть?", "Can I stop my order?", "stop by tomorrow?",
    "Не пишите мне в воскресенье, я на работе", "Сколько стоит? Стоп, уже нашла", "Маған бағасын жазыңыз",
    "Маған жазбаңыз, қоңырау шалыңыз, торт керек",  # "don't write, call me, I need a cake"
    "Stop, how much is delivery?", "нет", "не надо", "Хватит, беру! 🎂", "До свидания",
    "отписаться можно потом, сначала скажите цену", "стоп 🛑 сколько стоит медовик?",
    "Остановка у вас какая?", "Сколько стоит торт?", "", "🛑", "не стоит беспокоиться",
    # A question never opts out at once, even a short one: the model decides.
    "Не присылаете?", "не беспокоите?", "Больше не пишите?", "Не пишите мне?", "Стоп?", "Отписаться?",
    "Отпишетесь?", "Не присылайте?", "мне больше не пишите？",
    # Not an imperative: "you don't send", "you are not bothering" (one й-letter off a form).
    "не присылаете", "не беспокоите", "не беспокоите меня", "не присылаете мне",
]


@pytest.mark.parametrize("text", OPT_OUT_AT_ONCE)
def test_short_exact_opt_outs_decide_at_once(text: str) -> None:
    assert is_opt_out(text), text


@pytest.mark.parametrize("text", NOT_AT_ONCE)
def test_other_messages_never_opt_out_at_once(text: str) -> None:
    assert not is_opt_out(text), text


def test_the_table_is_big_enough() -> None:
    assert len(OPT_OUT_AT_ONCE) >= 20 and len(NOT_AT_ONCE) >= 20


# -- the emulator's demo heuristic for the `opt_out` field, over HTTP -----------------------------

def agent_field(gemini: GeminiEmulator, text: str) -> Any:
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": AGENT_SCHEMA}}
    response = requests.post(f"{gemini.url}/v1beta/models/m:generateContent", json=body, timeout=5,
                             headers={"x-goog-api-key": gemini.api_key})
    response.raise_for_status()
    return json.loads(response.json()["candidates"][0]["content"]["parts"][0]["text"])


def test_the_emulator_tells_a_genuine_opt_out_from_a_question(gemini: GeminiEmulator) -> None:
    assert agent_field(gemini, "Пожалуйста, больше никогда мне не пишите, мне это не интересно")["opt_out"] is True
    assert agent_field(gemini, "Стоп, а сколько стоит доставка?")["opt_out"] is False
    assert agent_field(gemini, "Здравствуйте")["opt_out"] is False


# -- through the pipeline's functions ---------------------------------------------------------

def no_follow_up_ever(session: Session) -> None:
    """Two days on, the sweep starts no chain for the contact (it is opted out)."""
    assert sweep_once(session, datetime.now(UTC) + timedelta(days=2), get_settings()) == []
    assert rows_in(session, "SELECT count(*) FROM follow_ups")[0][0] == 0


def test_stop_inside_a_question_gets_an_answer_not_an_opt_out(sessions: SessionFactory, session: Session,
                                                              wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []
    phone = "77600000001"
    customer_says(wappi, phone, "Стоп, а сколько стоит доставка?")
    answer_new(sessions)
    replies = replies_to(wappi, phone)
    assert len(replies) == 1 and replies[0]["body"] != get_settings().opt_out_confirmation
    assert "сколько стоит доставка" in replies[0]["body"].lower()
    assert rows_in(session, "SELECT opted_out FROM contacts WHERE phone = :phone", phone=phone)[0].opted_out is False
    assert rows_in(session, "SELECT status FROM messages WHERE direction = 'in'")[0].status == "answered"


def test_a_long_genuine_opt_out_is_decided_by_the_model(sessions: SessionFactory, session: Session,
                                                        wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    phone = "77600000002"
    customer_says(wappi, phone, "Сколько стоит медовик?")
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 1
    customer_says(wappi, phone, "Пожалуйста, больше никогда мне не пишите, мне это не интересно")
    answer_new(sessions)
    replies = replies_to(wappi, phone)
    assert len(replies) == 2 and replies[1]["body"] == get_settings().opt_out_confirmation
    stored = rows_in(session, "SELECT opted_out, awaiting_follow_up FROM contacts WHERE phone = :phone",
                     phone=phone)[0]
    assert stored.opted_out is True and stored.awaiting_follow_up is False
    # The model was asked (the opt-out field is part of the sales agent's one answer, no extra call).
    agent_calls = calls_to(gemini, AGENT)
    assert len(agent_calls) == 2
    assert all("opt_out" in call["generationConfig"]["responseJsonSchema"]["properties"] for call in agent_calls)
    assert [tuple(row) for row in rows_in(session, "SELECT kind FROM outbox ORDER BY id")] == [("reply",),
                                                                                             ("notice",)]
    # A later question of their own is answered; no follow-up ever starts.
    customer_says(wappi, phone, "Хотя скажите, а наполеон есть?")
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 3
    no_follow_up_ever(session)


@pytest.mark.parametrize("stop_text", ["стоп", "STOP", "Отпишитесь, пожалуйста", "Не пишите мне больше!"])
def test_stop_confirms_once_and_ends_follow_ups_for_good(sessions: SessionFactory, session: Session,
                                                         wappi: WappiEmulator, gemini: GeminiEmulator,
                                                         stop_text: str) -> None:
    assert chain.poll(sessions) == []
    phone = "77500000005"
    customer_says(wappi, phone, stop_text)
    answer_new(sessions)
    confirmation = replies_to(wappi, phone)
    assert [reply["body"] for reply in confirmation] == [get_settings().opt_out_confirmation]
    assert rows_in(session, "SELECT opted_out FROM contacts WHERE phone = :phone", phone=phone)[0].opted_out is True
    assert gemini.requests_log() == []  # decided before any model saw it
    customer_says(wappi, phone, stop_text)  # a second STOP gets no second confirmation
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 1
    # A later question of their own is answered, but no follow-up chain ever starts.
    customer_says(wappi, phone, "Хотя скажите, сколько стоит медовик?")
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 2
    # Answering a later question does not undo the opt-out: no follow-up chain may start for it.
    assert rows_in(session, "SELECT opted_out FROM contacts WHERE phone = :phone", phone=phone)[0].opted_out is True
    no_follow_up_ever(session)
