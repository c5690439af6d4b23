"""The recovery sweep, end to end: a customer message whose task no queue holds any more (Redis lost
it) is restarted within minutes and answered once. (Which messages the sweep picks, and when:
tests/unit/test_recover.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from db.session import session_scope
from devstack import wait_for
from emulators.wappi import WappiEmulator
from tasks.recover import recover
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.idle import wait_idle
from tests.support.polling import run_poll

pytestmark = pytest.mark.usefixtures("workers", "clean")
PHONE = "77055550101"


def _store_lost_message(provider_id: str, age: timedelta) -> int:
    """A customer message stored as intake does, whose task was then lost (never in any queue)."""
    contact = rows("SELECT id, profile_id FROM contacts")[0]
    with session_scope() as session:
        return int(session.execute(text(
            "INSERT INTO messages (profile_id, contact_id, provider_message_id, direction, author, type, text,"
            " is_voice, status, sent_at, created_at) VALUES (:profile, :contact, :provider,"
            " 'in', 'customer', 'chat', :text, false, 'received', :at, :at) RETURNING id"),
            {"profile": contact.profile_id, "contact": contact.id, "provider": provider_id,
             "text": "А доставка есть?", "at": datetime.now(UTC) - age}).scalar_one())


def _first_conversation(wappi: WappiEmulator) -> None:
    run_poll()
    customer_says(wappi, PHONE, "Здравствуйте! Сколько стоит торт?")
    run_poll()
    wait_for(lambda: replies_to(wappi, PHONE), message="the first reply")
    wait_idle()


def test_a_message_whose_task_was_lost_is_answered_within_minutes(wappi: WappiEmulator) -> None:
    _first_conversation(wappi)
    lost = customer_says(wappi, PHONE, "А доставка есть?")
    message_id = _store_lost_message(lost, age=timedelta(minutes=6))  # the queue lost its task

    assert recover() == 1  # restarted after minutes, not after hours
    assert recover() == 0  # at most once per period
    wait_idle()
    assert rows("SELECT status FROM messages WHERE id = :id", id=message_id)[0].status == "answered"
    assert len(replies_to(wappi, PHONE)) == 2
