"""Hand-off to an external agent through real workers: a handed-off profile is answered by the agent
(its session id stable across a chat's messages); an outage of the platform is retried, then
dead-lettered with the response kept; the operator's replay delivers the reply once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Profile
from db.session import session_scope
from devstack import wait_for
from emulators.agentos import AgentOSEmulator
from emulators.wappi import WappiEmulator
from pipeline.handoff import agent_session_id
from tests.support.cli import dlq
from tests.support.db import rows
from tests.support.emulators import replies_to
from tests.support.env import PROFILE_ID
from tests.support.idle import wait_idle
from tests.support.stack import Stack

AGENT_KEY = "agent-os-security-key"


@pytest.fixture()
def agentos() -> Iterator[AgentOSEmulator]:
    with AgentOSEmulator(api_key=AGENT_KEY) as emulator:
        yield emulator


def hand_off(agentos: AgentOSEmulator) -> None:
    with session_scope() as session:
        profile = session.scalars(select(Profile).where(Profile.profile_id == PROFILE_ID)).one()
        profile.settings = {"REPLY_AGENT": "agno", "AGENT_BASE_URL": agentos.url, "AGENT_API_KEY": AGENT_KEY}


def test_an_outage_is_retried_then_dead_lettered_and_the_replay_delivers_once(
        clean: None, wappi: WappiEmulator, agentos: AgentOSEmulator, tmp_path: Path) -> None:
    # Two attempts before a dead letter, so the test sees the whole path in seconds.
    stack = Stack(tmp_path, TASK_MAX_ATTEMPTS="2", BATCH_WINDOW="0")
    try:
        stack.workers.start("all", concurrency=2)
        stack.first_start()
        hand_off(agentos)
        wappi.customer_message(PROFILE_ID, "77120000001", "Здравствуйте! Сколько стоит торт?")
        stack.send_task("pipeline.poll_dispatch", "poll")
        first = wait_for(lambda: replies_to(wappi, "77120000001"), timeout=60, message="the agent's reply")
        assert first[0]["body"].startswith("Ответ агента sales-assistant (сообщение №1 в сессии)")

        agentos.set_faults({"fail_next": 100})  # the platform is down: 500 on every run
        wappi.customer_message(PROFILE_ID, "77120000001", "А доставка есть?")
        stack.send_task("pipeline.poll_dispatch", "poll")
        letter = wait_for(lambda: rows("SELECT id, task_name, attempts, exception FROM dead_letters"), timeout=90,
                          message="the dead letter")[0]
        assert letter.task_name == "pipeline.respond" and letter.attempts == 2
        assert "AgentTransientError" in letter.exception and "response:" in letter.exception
        assert len([run for run in agentos.runs() if run["http_status"] == 500]) == 2, "retried once, then given up"
        wait_idle(stack.env["REDIS_URL"])
        assert len(replies_to(wappi, "77120000001")) == 1

        agentos.set_faults({})  # back
        replayed = dlq("replay", str(letter.id), env=stack.env)
        assert replayed.returncode == 0, replayed.stderr
        wait_for(lambda: len(replies_to(wappi, "77120000001")) == 2, timeout=60, message="the replayed reply")
        assert dlq("replay", str(letter.id), env=stack.env).returncode == 0  # a second replay sends nothing
        wait_idle(stack.env["REDIS_URL"])
        replies = replies_to(wappi, "77120000001")
        assert len(replies) == 2 and "сообщение №2 в сессии" in replies[1]["body"]
        sessions = {run["form"]["session_id"] for run in agentos.runs()}
        assert sessions == {agent_session_id(PROFILE_ID, "77120000001")}
    finally:
        stack.close()
