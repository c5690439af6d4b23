"""Conversation behaviour in-process: bursts, a newer message superseding an answer, human takeover,
the whitelist, group, old and very long messages. End to end through the workers (and the operator's
CLI): tests/functional/test_behaviour.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from clients.gemini import get_client
from db.session import SessionFactory
from domain.clock import human_datetime
from domain.working_hours import WorkingHours
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline.classify import run_classify
from pipeline.contacts import add_to_whitelist
from pipeline.followup import sweep_once
from pipeline.respond import answer_customer, commit_reply, reply_context
from settings import get_settings
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.env import PROFILE_ID
from tests.support.intake import answer_new
from tests.support.model_calls import AGENT, MODERATOR, agent_answer, calls_to


def test_a_burst_gets_one_reply_and_a_later_burst_another(sessions: SessionFactory, wappi: WappiEmulator,
                                                           gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    phone = "77500000001"
    for text in ("Хочу записаться", "на торт машинкой", "завтра в 15:00"):
        customer_says(wappi, phone, text)
    burst = chain.poll(sessions)
    assert len(burst) == 3
    # Only the burst's newest message goes on; the older ones' chains stop at ingest.
    assert [chain.answer(sessions, message_id) is not None for message_id in burst] == [False, False, True]
    [first] = replies_to(wappi, phone)
    calls = calls_to(gemini, AGENT)
    assert len(calls) == 1
    # One turn with all three messages, in order.
    last_turn = calls[0]["contents"][-1]
    # (The first part is the contact data block, names as JSON: see pipeline.history.contact_data.)
    assert [part["text"] for part in last_turn["parts"]][-3:] == ["Хочу записаться", "на торт машинкой",
                                                                  "завтра в 15:00"]
    assert "завтра в 15:00" in first["body"]
    assert len(calls_to(gemini, MODERATOR)) == 1  # one classification per burst
    customer_says(wappi, phone, "А сколько стоит медовик?")
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 2


def test_a_message_during_the_answer_supersedes_it(sessions: SessionFactory, session: Session,
                                                   wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    settings = get_settings()
    hours = WorkingHours.from_settings(settings)
    assert chain.poll(sessions) == []
    phone = "77500000002"
    gemini.script([agent_answer("Первый ответ, который устарел")])
    customer_says(wappi, phone, "Хочу заказать торт")
    [first] = chain.poll(sessions)
    assert chain.ingest(sessions, first) == first
    assert run_classify(sessions, get_client(), first, settings) == first
    # The respond stage, step by step (run_respond's steps), so that the customer writes again
    # exactly while the model is answering: between reading the context and writing the answer.
    now = datetime.now(UTC)
    with sessions() as reader:
        context = reply_context(reader, first, history_limit=settings.history_limit,
                                business_name=settings.business_name,
                                current_datetime=human_datetime(now, settings.timezone),
                                working_hours=hours.describe(), kb_budget=settings.kb_token_budget)
    assert context is not None
    result = answer_customer(get_client(), context.contents, context.system_instruction, hours, now)
    assert result.reply == "Первый ответ, который устарел"
    customer_says(wappi, phone, "И ещё макаронс, пожалуйста")
    [second] = chain.poll(sessions)
    with sessions() as writer:
        assert commit_reply(writer, context, result.reply, result.answers) is None  # dropped
    assert chain.answer(sessions, second) is not None
    bodies = [reply["body"] for reply in replies_to(wappi, phone)]
    assert len(bodies) == 1 and "устарел" not in bodies[0] and "макаронс" in bodies[0]
    statuses = [row.status for row in rows_in(session, "SELECT status FROM messages WHERE direction = 'in' "
                                                       "ORDER BY id")]
    assert statuses == ["answered", "answered"]  # the newer answer answers both
    assert rows_in(session, "SELECT count(*) FROM outbox")[0][0] == 1


def test_a_human_reply_pauses_the_bot_and_stops_follow_ups(sessions: SessionFactory, session: Session,
                                                           wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []
    phone = "77500000003"
    customer_says(wappi, phone, "Сколько стоит наполеон?")
    answer_new(sessions)
    assert len(replies_to(wappi, phone)) == 1
    assert rows_in(session, "SELECT awaiting_follow_up FROM contacts")[0].awaiting_follow_up is True
    wappi.phone_message(PROFILE_ID, phone, "Здравствуйте, это Айдана, менеджер")
    assert chain.poll(sessions) == []
    contact = rows_in(session, "SELECT paused_until, awaiting_follow_up FROM contacts WHERE phone = :phone",
                      phone=phone)[0]
    assert contact.paused_until > datetime.now(UTC) + timedelta(hours=get_settings().human_pause_hours - 1)
    assert contact.awaiting_follow_up is False
    customer_says(wappi, phone, "А доставка есть?")
    answer_new(sessions)
    assert rows_in(session, "SELECT status FROM messages WHERE text = 'А доставка есть?'")[0].status == "paused"
    assert len(replies_to(wappi, phone)) == 1
    assert sweep_once(session, datetime.now(UTC) + timedelta(days=2), get_settings()) == []
    assert rows_in(session, "SELECT count(*) FROM follow_ups")[0][0] == 0


@pytest.mark.parametrize("notation", ["+7 701 555-00-04", "87015550004", "77015550004@c.us",
                                      "77015550004@s.whatsapp.net"])
def test_whitelisted_numbers_are_ignored_in_every_notation(sessions: SessionFactory, session: Session,
                                                           wappi: WappiEmulator, gemini: GeminiEmulator,
                                                           notation: str) -> None:
    assert chain.poll(sessions) == []
    profile_id = rows_in(session, "SELECT id FROM profiles WHERE profile_id = :id", id=PROFILE_ID)[0].id
    assert add_to_whitelist(session, profile_id, notation, note="owner's brother") is True
    session.flush()
    assert [tuple(row) for row in rows_in(session, "SELECT phone FROM whitelist")] == [("77015550004",)]
    customer_says(wappi, "77015550004", "Привет! Сколько стоит торт? Купить хочу")
    answer_new(sessions)
    assert rows_in(session, "SELECT status FROM messages WHERE direction = 'in'")[0].status == "ignored"
    assert replies_to(wappi, "77015550004") == []
    assert gemini.requests_log() == []  # not even classified


def test_group_and_old_messages_are_recorded_not_answered(sessions: SessionFactory, session: Session,
                                                          wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []
    customer_says(wappi, "77500000006", "Всем привет, сколько стоит торт?", group=True)
    customer_says(wappi, "77500000007", "Сколько стоит торт? (написал час назад)", time=int(time.time()) - 3600)
    long_text = "🎂" * 3 + "Хочу торт " + "очень " * 1700 + "🎉"  # 10,000+ characters
    customer_says(wappi, "77500000008", long_text)
    assert len(answer_new(sessions)) == 1  # the long message only
    assert replies_to(wappi, "77500000006") == [] and replies_to(wappi, "77500000007") == []
    old = rows_in(session, "SELECT status FROM messages m JOIN contacts c ON c.id = m.contact_id "
                           "WHERE c.phone = '77500000007'")
    assert [row.status for row in old] == ["history"]
    assert rows_in(session, "SELECT count(*) FROM contacts WHERE phone LIKE '%g.us'")[0][0] == 0
    stored = rows_in(session, "SELECT text FROM messages WHERE direction = 'in' AND text LIKE '🎂%'")[0].text
    assert stored.startswith("🎂🎂🎂Хочу торт") and stored.endswith("🎉") and len(stored) > 10_000
    [long_reply] = replies_to(wappi, "77500000008")
    assert long_reply["body"].startswith("Здравствуйте!")
    prompt_text = json.dumps(calls_to(gemini, AGENT)[-1], ensure_ascii=False)
    assert f"[сообщение обрезано: показаны первые 4000 из {len(long_text)} символов]" in prompt_text
    assert "🎂🎂🎂Хочу торт" in prompt_text
