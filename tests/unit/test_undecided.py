"""The gate: only a confident "not a lead" is left unanswered; an undecided contact is answered
neutrally and classified again. End to end through the workers: tests/functional/test_undecided.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from db.session import SessionFactory
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline.classify import Verdict, decide, gate
from pipeline.followup import sweep_once
from settings import SettingsError, get_settings, load_settings
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.intake import answer_new
from tests.support.model_calls import AGENT, CLARIFY, MODERATOR, system_texts, verdict


@pytest.mark.parametrize(("is_client", "confidence", "messages", "answer_undecided", "expected"), [
    (False, 0.9, 1, True, "ignore"),    # a confident "not a lead": no reply
    (False, 0.6, 1, True, "clarify"),   # an unsure "not a lead": answered neutrally
    (False, 0.6, 5, True, "clarify"),   # ... even after many messages
    (None, 0.9, 1, True, "clarify"),
    (True, 0.6, 1, True, "clarify"),
    (True, 0.9, 1, True, "answer"),
    (True, 0.6, 3, True, "answer"),     # enough messages make an unsure lead a lead
    # ANSWER_UNDECIDED=false: today's strict behaviour, waiting up to CLASSIFY_MIN_MESSAGES
    (False, 0.6, 1, False, "wait"),
    (False, 0.6, 3, False, "ignore"),
    (None, 0.9, 5, False, "wait"),
    (True, 0.6, 1, False, "wait"),
    (True, 0.6, 3, False, "answer"),
    (True, 0.9, 1, False, "answer"),
    (False, 0.9, 1, False, "ignore"),
])
def test_the_gate(is_client: bool | None, confidence: float, messages: int, answer_undecided: bool,
                  expected: str) -> None:
    decided = decide(Verdict(is_client, confidence, ""), messages, min_messages=3, min_confidence=0.8,
                     answer_undecided=answer_undecided)
    assert gate(decided, answer_undecided=answer_undecided) == expected


def test_no_valid_verdict_is_undecided() -> None:
    assert gate(decide(None, 1, min_messages=3, min_confidence=0.8, answer_undecided=True),
                answer_undecided=True) == "clarify"
    assert gate(decide(None, 9, min_messages=3, min_confidence=0.8, answer_undecided=False),
                answer_undecided=False) == "wait"


def test_answer_undecided_is_on_by_default_and_can_be_turned_off() -> None:
    valid = {"WAPPI_TOKEN": "t" * 40, "WAPPI_PROFILE_ID": "71ad40e9-b023", "GEMINI_API_KEY": "key"}
    assert load_settings(valid).answer_undecided is True
    assert load_settings({**valid, "ANSWER_UNDECIDED": "false"}).answer_undecided is False
    assert load_settings({**valid, "ANSWER_UNDECIDED": " TRUE "}).answer_undecided is True
    with pytest.raises(SettingsError, match="ANSWER_UNDECIDED"):
        load_settings({**valid, "ANSWER_UNDECIDED": "maybe"})


def test_a_first_hello_is_answered_neutrally(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                                             gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    phone = "77700000001"
    customer_says(wappi, phone, "Здравствуйте")
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 1
    stored = rows_in(session, "SELECT is_client, classified_at FROM contacts WHERE phone = :phone", phone=phone)[0]
    assert stored.is_client is None and stored.classified_at is not None  # still undecided
    prompts = system_texts(gemini, AGENT)
    assert len(prompts) == 1 and CLARIFY in prompts[0] and "SPIN" not in prompts[0]
    # An undecided contact gets no follow-ups.
    assert sweep_once(session, datetime.now(UTC) + timedelta(days=2), get_settings()) == []
    assert rows_in(session, "SELECT count(*) FROM follow_ups")[0][0] == 0


def test_a_suppliers_offer_is_not_answered(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                                           gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    phone = "77700000002"
    customer_says(wappi, phone, "Добрый день, мы поставщик муки, предлагаем сотрудничество")
    answer_new(sessions)
    assert replies_to(wappi, phone) == []
    assert rows_in(session, "SELECT status FROM messages WHERE direction = 'in'")[0].status == "ignored"
    assert rows_in(session, "SELECT is_client FROM contacts WHERE phone = :phone", phone=phone)[0].is_client is False
    assert system_texts(gemini, AGENT) == []


def test_undecided_then_not_a_lead_gets_no_more_replies(sessions: SessionFactory, session: Session,
                                                        wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    phone = "77700000003"
    gemini.script([verdict(None, 0.4), verdict(False, 0.95)])
    customer_says(wappi, phone, "Добрый день")
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 1
    customer_says(wappi, phone, "Это Марат, по поводу аренды помещения")
    answer_new(sessions)  # classification is asked again on the next message
    assert rows_in(session, "SELECT is_client FROM contacts WHERE phone = :phone", phone=phone)[0].is_client is False
    customer_says(wappi, phone, "Ответьте, пожалуйста")
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 1
    assert len(system_texts(gemini, MODERATOR)) == 2  # a decided contact is not classified again
    statuses = [row.status for row in rows_in(session, "SELECT status FROM messages WHERE direction = 'in' "
                                                       "ORDER BY id")]
    assert statuses == ["answered", "ignored", "ignored"]
