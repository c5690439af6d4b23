"""Hand-off to an external agent (Agno AgentOS, its emulator over HTTP), in the pipeline's own
functions: a handed-off profile's replies are the agent's, in one platform session per chat (stable
across the chat's messages, different between chats and profiles); a run that failed on the
platform never reaches the customer; the agent may also write the follow-up touches."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from clients.agent_platform import AgentRunError, AgentTransientError
from db.models import Message, Outbox, Profile
from db.session import SessionFactory
from domain.states import MessageStatus, OutboxKind, Provider
from emulators.agentos import AgentOSEmulator
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline.handoff import agent_session_id
from tests.support import chain
from tests.support.env import PROFILE_ID
from tests.support.followup import T0, lead_went_silent, run_ladder_until
from tests.support.model_calls import AGENT, calls_to

AGENT_KEY = "agent-os-security-key"
SECOND = "b2c3d4e5-0c01"  # an id of its own: the shared emulator keeps profiles across tests


@pytest.fixture()
def agentos() -> Iterator[AgentOSEmulator]:
    with AgentOSEmulator(api_key=AGENT_KEY) as emulator:
        yield emulator


def hand_off(session: Session, agentos: AgentOSEmulator, profile_id: str = PROFILE_ID, **extra: str) -> Profile:
    profile = session.scalars(select(Profile).where(Profile.profile_id == profile_id)).one_or_none()
    if profile is None:
        profile = Profile(provider=Provider.WAPPI, profile_id=profile_id, name="handed off", active=True)
        session.add(profile)
    profile.settings = {"REPLY_AGENT": "agno", "AGENT_BASE_URL": agentos.url, "AGENT_API_KEY": AGENT_KEY, **extra}
    session.flush()
    return profile


def sent_bodies(wappi: WappiEmulator, profile_id: str, phone: str) -> list[str]:
    return [item["body"] for item in wappi.sent_messages(profile_id) if item["phone"] == phone]


def test_a_handed_off_profile_answers_through_the_external_agent_one_session_per_chat(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, gemini: GeminiEmulator,
        agentos: AgentOSEmulator) -> None:
    chain.poll(sessions)  # first start: the environment's profile exists
    hand_off(session, agentos)
    if SECOND not in wappi.profile_ids:
        wappi.add_profile(SECOND)
    hand_off(session, agentos, SECOND)
    chain.poll(sessions)  # the second number's first start
    for text in ("Здравствуйте! Есть торт Медовик?", "А доставка сегодня возможна?"):
        wappi.customer_message(PROFILE_ID, "77110000001", text)
        [message_id] = chain.poll(sessions)
        chain.answer(sessions, message_id)
    wappi.customer_message(PROFILE_ID, "77110000002", "Добрый день")
    wappi.customer_message(SECOND, "77110000001", "Здравствуйте")
    for message_id in chain.poll(sessions):
        chain.answer(sessions, message_id)

    runs = agentos.runs()
    assert [run["form"]["message"] for run in runs] == [
        "Здравствуйте! Есть торт Медовик?", "А доставка сегодня возможна?", "Добрый день", "Здравствуйте"]
    assert all(run["form"]["stream"] == "false" and run["form"]["user_id"] == run["form"]["session_id"]
               for run in runs)
    first_chat = {runs[0]["form"]["session_id"], runs[1]["form"]["session_id"]}
    assert first_chat == {agent_session_id(PROFILE_ID, "77110000001")}, "one session for the chat's messages"
    assert runs[2]["form"]["session_id"] not in first_chat, "another chat, another session"
    assert runs[3]["form"]["session_id"] not in first_chat, "the same phone on another number, another session"
    assert "77110000001" not in runs[0]["form"]["session_id"], "no phone number in the platform's sessions"
    # The replies are the agent's, the second one continuing the chat's session.
    replies = sent_bodies(wappi, PROFILE_ID, "77110000001")
    assert len(replies) == 2 and "сообщение №2 в сессии" in replies[1] and "доставка" in replies[1]
    assert len(sent_bodies(wappi, PROFILE_ID, "77110000002")) == 1
    assert len(sent_bodies(wappi, SECOND, "77110000001")) == 1
    assert calls_to(gemini, AGENT) == [], "our own sales agent wrote nothing"


def test_a_failed_run_never_reaches_the_customer(sessions: SessionFactory, session: Session,
                                                 wappi: WappiEmulator, agentos: AgentOSEmulator) -> None:
    chain.poll(sessions)
    hand_off(session, agentos)
    agentos.set_faults({"error_next": 1, "error_text": "Rate limit reached for gpt-5 in organization org-x"})
    wappi.customer_message(PROFILE_ID, "77110000003", "Сколько стоит доставка?")
    [message_id] = chain.poll(sessions)
    with pytest.raises(AgentRunError) as failed:
        chain.answer(sessions, message_id)
    assert "Rate limit reached" in failed.value.response_excerpt, "the response is kept for the dead letter"
    assert wappi.sent_messages(PROFILE_ID) == []
    assert session.get(Message, message_id).status == MessageStatus.RECEIVED  # type: ignore[union-attr]
    # An outage is transient (retried by the task); the same message is answered once it is over.
    agentos.set_faults({"fail_next": 1})
    with pytest.raises(AgentTransientError):
        chain.answer(sessions, message_id)
    chain.answer(sessions, message_id)
    assert len(sent_bodies(wappi, PROFILE_ID, "77110000003")) == 1
    assert "Rate limit" not in sent_bodies(wappi, PROFILE_ID, "77110000003")[0]


def test_without_a_platform_url_the_profile_is_refused_with_the_setting_named(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, agentos: AgentOSEmulator) -> None:
    chain.poll(sessions)
    profile = hand_off(session, agentos)
    profile.settings = {"REPLY_AGENT": "agno"}
    session.flush()
    wappi.customer_message(PROFILE_ID, "77110000004", "Здравствуйте")
    [message_id] = chain.poll(sessions)
    with pytest.raises(Exception, match="AGENT_BASE_URL"):
        chain.answer(sessions, message_id)
    assert wappi.sent_messages(PROFILE_ID) == []


def test_the_external_agent_writes_the_follow_up_in_the_chats_session(
        sessions: SessionFactory, session: Session, agentos: AgentOSEmulator) -> None:
    contact_id = lead_went_silent(session)
    hand_off(session, agentos, FOLLOW_UP_AGENT="external")
    [outbox_id] = run_ladder_until(sessions, T0 + timedelta(hours=25))
    touch = session.get(Outbox, outbox_id)
    assert touch is not None and touch.kind == OutboxKind.FOLLOW_UP
    [run] = agentos.runs()
    assert run["form"]["session_id"] == agent_session_id(PROFILE_ID, "77300000001")
    assert "касание номер 1 из 5" in run["form"]["message"] and "не от клиента" in run["form"]["message"]
    assert touch.body.startswith("Ответ агента") and touch.contact_id == contact_id
