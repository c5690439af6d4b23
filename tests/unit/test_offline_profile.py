"""A number that goes offline, in the pipeline's own functions (no workers): sends are held while
Wappi says the profile is not authorized or not paid, with one status check per interval for the
whole profile, and go out once and in order when it is back; a reply held longer than HOLD_MAX_AGE
is given up with a clear reason; the poll of a refused profile backs off and resumes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from db.session import SessionFactory
from emulators.wappi import WappiEmulator
from infra.redis import key
from pipeline.locks import Defer
from pipeline.send import HeldTooLong
from settings import get_settings
from tasks.base import TRANSIENT
from tests.support import chain
from tests.support.db import add_contact, add_outbox_row, rows_in
from tests.support.delivery import written_ago
from tests.support.env import PROFILE_ID

DOWN_STATES = [({"authorized": False}, {"authorized": True}, "not authorized"),
               ({"paid": False}, {"paid": True}, "not paid")]


def status_checks(wappi: WappiEmulator) -> int:
    return sum(1 for entry in wappi.requests_log() if entry["path"].endswith("get/status"))


def check_interval_over(redis_client: Any) -> None:
    """HOLD_CHECK_INTERVAL has passed since the last status check (its mark in Redis is gone)."""
    redis_client.delete(key("profile-check", PROFILE_ID))


@pytest.mark.parametrize(("down", "up", "reason"), DOWN_STATES, ids=["unauthorized", "unpaid"])
def test_sends_are_held_while_the_profile_is_down_and_go_out_once_in_order(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, redis_client: Any,
        caplog: pytest.LogCaptureFixture, down: dict[str, Any], up: dict[str, Any], reason: str) -> None:
    contact_id, profile_id = add_contact(session, "77040000001")
    wappi.set_profile(PROFILE_ID, **down)
    bodies = [f"Ответ номер {index}" for index in range(3)]
    outbox = [add_outbox_row(session, contact_id, profile_id, f"test:{index}", body)
              for index, body in enumerate(bodies)]
    with caplog.at_level("INFO", logger="pipeline.profiles"):
        # The first send is refused: the profile is marked down with the reason, the row held.
        with pytest.raises(Defer, match=f"cannot send \\({reason}\\); held"):
            chain.send(sessions, outbox[0])
        assert rows_in(session, "SELECT down_reason FROM profiles")[0].down_reason == reason
        # The later rows of the chat wait behind it, in order.
        for later in outbox[1:]:
            with pytest.raises(Defer, match="an older message"):
                chain.send(sessions, later)
        # Held: one status check per interval, however often the row is tried.
        checks = status_checks(wappi)
        for _ in range(3):
            with pytest.raises(Defer, match="held"):
                chain.send(sessions, outbox[0])
        assert status_checks(wappi) == checks + 1
        check_interval_over(redis_client)
        with pytest.raises(Defer, match="held"):
            chain.send(sessions, outbox[0])
        assert status_checks(wappi) == checks + 2
        assert wappi.sent_messages(PROFILE_ID) == []
        assert {row.status for row in rows_in(session, "SELECT status FROM outbox")} == {"pending"}

        wappi.set_profile(PROFILE_ID, **up)
        with pytest.raises(Defer, match="held"):  # not asked again before the interval is over
            chain.send(sessions, outbox[0])
        check_interval_over(redis_client)
        assert [chain.send(sessions, outbox_id) for outbox_id in outbox] == outbox
    assert [item["body"] for item in wappi.sent_messages(PROFILE_ID)] == bodies
    assert rows_in(session, "SELECT down_reason FROM profiles")[0].down_reason is None
    logged = [record.getMessage() for record in caplog.records]
    assert sum(f"cannot send ({reason}): sends are held" in line for line in logged) == 1, \
        "the outage is logged once, not every retry"
    assert sum("can send again" in line for line in logged) == 1


def test_a_reply_held_longer_than_hold_max_age_is_given_up(sessions: SessionFactory, session: Session,
                                                           wappi: WappiEmulator) -> None:
    contact_id, profile_id = add_contact(session, "77040000002")
    wappi.set_profile(PROFILE_ID, authorized=False)
    old = add_outbox_row(session, contact_id, profile_id, "test:old", "Ответ, которому уже два часа")
    written_ago(session, old, get_settings().hold_max_age + 60)
    with pytest.raises(Defer):  # the first try finds the profile down
        chain.send(sessions, old)
    with pytest.raises(HeldTooLong) as given_up:
        chain.send(sessions, old)
    assert "HOLD_MAX_AGE" in str(given_up.value) and "not authorized" in str(given_up.value)
    # Not a transient failure: tasks.base dead-letters it at once instead of retrying.
    assert not isinstance(given_up.value, TRANSIENT)
    wappi.set_profile(PROFILE_ID, authorized=True)
    assert wappi.sent_messages(PROFILE_ID) == []


def test_the_poll_of_a_refused_profile_backs_off_and_resumes_when_it_is_back(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, redis_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """Wappi refuses an unauthorized profile: the poll does not hammer it every tick, marks it down
    with the reason (so /health says why), logs the outage once, and polls again once it is back."""
    def chats_calls() -> int:
        return sum(1 for entry in wappi.requests_log() if entry["path"].endswith("chats/get"))

    chain.poll(sessions)  # first start: the profile is created and its history recorded
    wappi.set_profile(PROFILE_ID, authorized=False)
    before = chats_calls()
    with caplog.at_level("DEBUG", logger="pipeline.poll"):
        for _ in range(6):
            chain.poll(sessions)
    assert chats_calls() == before + 1, "a refused profile is asked once, then backed off"
    assert rows_in(session, "SELECT down_reason FROM profiles")[0].down_reason == "not authorized"
    assert sum("refused by the provider" in record.getMessage() for record in caplog.records) == 1

    wappi.set_profile(PROFILE_ID, authorized=True)
    chain.poll(sessions)
    assert chats_calls() == before + 1, "the backoff runs its course"
    # The backoff is over (its deadline, kept in Redis, has passed): the next poll asks again.
    redis_client.hset(key("poll-backoff", PROFILE_ID), "until", "0")
    chain.poll(sessions)
    assert chats_calls() == before + 2
    assert rows_in(session, "SELECT down_reason FROM profiles")[0].down_reason is None
