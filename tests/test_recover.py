"""The recovery sweep restarts a customer message that nothing holds within minutes, and leaves a
chain that is merely deferred alone (issue 11 item 7, review finding 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emulators.wappi import WappiEmulator
from settings import Settings, get_settings
from tests.conftest import run_poll, wait_for
from tests.idle import wait_idle
from tests.test_pipeline import customer_says, replies_to, rows

pytestmark = pytest.mark.usefixtures("workers", "clean")
PHONE = "77055550101"


def _store_lost_message(provider_id: str, age: timedelta, next_attempt_in: timedelta | None = None) -> int:
    """A customer message stored as intake does, whose task was then lost (never in any queue)."""
    from sqlalchemy import text

    from db.session import session_scope

    contact = rows("SELECT id, profile_id FROM contacts")[0]
    now = datetime.now(UTC)
    with session_scope() as session:
        return int(session.execute(text(
            "INSERT INTO messages (profile_id, contact_id, provider_message_id, direction, author, type, text,"
            " is_voice, status, sent_at, created_at, next_attempt_at) VALUES (:profile, :contact, :provider,"
            " 'in', 'customer', 'chat', :text, false, 'received', :at, :at, :due) RETURNING id"),
            {"profile": contact.profile_id, "contact": contact.id, "provider": provider_id,
             "text": "А доставка есть?", "at": now - age,
             "due": None if next_attempt_in is None else now + next_attempt_in}).scalar_one())


def _first_conversation(wappi: WappiEmulator) -> None:
    run_poll()
    customer_says(wappi, PHONE, "Здравствуйте! Сколько стоит торт?")
    run_poll()
    wait_for(lambda: replies_to(wappi, PHONE), message="the first reply")
    wait_idle()


def test_a_message_whose_task_was_lost_is_answered_within_minutes(wappi: WappiEmulator) -> None:
    from tasks.recover import recover

    _first_conversation(wappi)
    lost = customer_says(wappi, PHONE, "А доставка есть?")
    message_id = _store_lost_message(lost, age=timedelta(minutes=6))  # the queue lost its task

    assert recover() == 1  # restarted after minutes, not after hours
    assert recover() == 0  # at most once per period
    wait_idle()
    assert rows("SELECT status FROM messages WHERE id = :id", id=message_id)[0].status == "answered"
    assert len(replies_to(wappi, PHONE)) == 2


def test_a_chain_stamped_by_a_stage_is_restarted_once_its_run_is_overdue(wappi: WappiEmulator) -> None:
    from db.session import session_scope
    from pipeline.recover import message_stage_limit, stranded_messages

    def stranded(now: datetime, settings: Settings) -> list[int]:
        with session_scope() as session:
            return stranded_messages(session, now, settings)

    _first_conversation(wappi)
    lost = customer_says(wappi, PHONE, "А доставка есть?")
    # The last stage started 10 s ago (the stamp of a stage start is "now") and then its worker
    # and its queue vanished.
    message_id = _store_lost_message(lost, age=timedelta(minutes=1), next_attempt_in=timedelta(seconds=-10))
    now = datetime.now(UTC)
    settings = get_settings()
    assert stranded(now, settings) == []  # the stage may still be running
    assert stranded(now + message_stage_limit(), settings) == [message_id]
    assert stranded(now + message_stage_limit() + timedelta(seconds=1), settings) == []  # once a period


def test_a_deferred_chain_is_not_restarted(wappi: WappiEmulator) -> None:
    from tasks.recover import recover

    _first_conversation(wappi)
    lost = customer_says(wappi, PHONE, "А доставка есть?")
    # Hours of a Gemini outage: the chain retries, and each retry stamps its countdown.
    _store_lost_message(lost, age=timedelta(hours=5), next_attempt_in=timedelta(minutes=5))
    assert recover() == 0
    assert recover(now=datetime.now(UTC) + timedelta(minutes=6)) == 0  # due, its run may still go on
