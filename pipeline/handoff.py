"""Hand-off to an external agent: for a profile with `REPLY_AGENT=agno` the reply (and, with
`FOLLOW_UP_AGENT=external`, the follow-up touch) is written by an agent on an agent platform (Agno
AgentOS), not by our sales agent. Everything around it stays ours: intake, bursts, STOP, the
whitelist, human pause, the outbox, the send limit and the follow-up schedule.

The platform keeps the conversation: each chat has one session id, derived from (profile, chat),
stable across the chat's messages and different between chats and profiles. Each turn sends the
customer's words since our last message. The platform's answer is used only when its run completed
with text; anything else (an ERROR run whose `content` is the provider's error text, an empty
answer) is an `AgentRunError`: a dead letter that keeps the response, never a message to a customer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable

import requests
from sqlalchemy.orm import Session

from clients.agent_platform import AgentPlatformClient, AgentReply
from db.models import Contact, Profile
from db.session import SessionFactory
from pipeline.history import conversation_turns
from prompts import render
from settings import Settings, SettingsError

log = logging.getLogger(__name__)

SESSION_PREFIX = "assistant"


class HandoffConfigError(SettingsError):
    """A profile hands off its replies but its agent settings are incomplete; names the setting."""


def agent_session_id(profile_id: str, chat: str) -> str:
    """The platform's session for one chat of one profile: stable for the chat, distinct between
    chats and profiles. The chat's key is hashed, so no phone number is written into the
    platform's session tables."""
    digest = hashlib.sha256(f"{profile_id}\0{chat}".encode()).hexdigest()[:24]
    return f"{SESSION_PREFIX}:{profile_id}:{digest}"


def customer_turn(session: Session, contact_id: int, *, history_limit: int, max_chars: int) -> str:
    """What the customer wrote since our last message (a burst: several messages, voice notes as
    their transcripts), as one turn for the agent."""
    turns = conversation_turns(session, contact_id, history_limit, max_chars)
    burst: list[str] = []
    for turn in reversed(turns):
        if turn.role != "user":
            break
        burst.append(turn.text)
    return "\n".join(reversed(burst))


class AgentDirectory:
    """This process's platform clients, one per (URL, key, timeout, path): a profile's settings say
    which it uses."""

    def __init__(self) -> None:
        self._clients: dict[str, AgentPlatformClient] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __call__(self, settings: Settings) -> AgentPlatformClient:
        if not settings.agent_base_url:
            raise HandoffConfigError("REPLY_AGENT=agno needs AGENT_BASE_URL (the agent platform's URL): "
                                     "celery -A tasks profiles set <profile> AGENT_BASE_URL=https://...")
        fingerprint = hashlib.sha256("\0".join((settings.agent_base_url, settings.agent_api_key,
                                                str(settings.agent_timeout), settings.agent_run_path))
                                     .encode()).hexdigest()
        with self._lock:
            if self._pid != os.getpid():
                self._clients.clear()
                self._pid = os.getpid()
            client = self._clients.get(fingerprint)
            if client is None:
                client = AgentPlatformClient(requests.Session(), settings.agent_base_url,
                                             settings.agent_api_key or None, timeout=settings.agent_timeout,
                                             path_template=settings.agent_run_path)
                self._clients[fingerprint] = client
            return client


agent_for = AgentDirectory()


def chat_of(session: Session, contact_id: int) -> tuple[str, str]:
    """(the profile's provider id, the contact's key): what the session id is derived from."""
    contact = session.get(Contact, contact_id)
    assert contact is not None
    profile = session.get(Profile, contact.profile_id)
    assert profile is not None
    return profile.profile_id, contact.phone


def touch_from_agent(sessions: SessionFactory, contact_id: int, touch_number: int, touch_total: int,
                     hours_since: int, settings: Settings,
                     agents: Callable[[Settings], AgentPlatformClient] = agent_for) -> AgentReply:
    """A follow-up touch written by the external agent, asked in the chat's own session. The ask is
    our text (no customer words); the agent has the conversation in its session."""
    client = agents(settings)
    with sessions() as session:
        profile_id, chat = chat_of(session, contact_id)
    session_id = agent_session_id(profile_id, chat)
    ask = render("follow_up_external", touch_number=str(touch_number), touch_total=str(touch_total),
                 hours_since=str(hours_since))
    return client.run(settings.agent_id, ask, session_id=session_id, user_id=session_id)
