"""The recovery sweep's choices at an injected time: a customer message that nothing holds is
restarted within minutes, once per period; one a stage stamped waits until that stage's run is
overdue; a chain that is merely deferred is left alone (issue 11 item 7, review finding 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.session import SessionFactory
from domain.states import MessageStatus
from emulators.wappi import WappiEmulator
from pipeline.inbound import mark_burst_due, park_message
from pipeline.profile_settings import message_settings
from pipeline.recover import MARGIN, message_stage_limit, stranded_messages, stranded_outbox
from settings import get_settings
from tasks.base import STAGE_START_SLACK, stamp_stage_start
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.intake import answer_new

PHONE = "77055550101"


def first_conversation(sessions: SessionFactory, wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    customer_says(wappi, PHONE, "Здравствуйте! Сколько стоит торт?")
    assert len(answer_new(sessions)) == 1


def store_lost_message(session: Session, provider_id: str, now: datetime, age: timedelta,
                       next_attempt_in: timedelta | None = None) -> int:
    """A customer message stored as intake does, whose task was then lost (never in any queue)."""
    contact = rows_in(session, "SELECT id, profile_id FROM contacts")[0]
    return int(session.execute(sa.text(
        "INSERT INTO messages (profile_id, contact_id, provider_message_id, direction, author, type, text,"
        " is_voice, status, sent_at, created_at, next_attempt_at) VALUES (:profile, :contact, :provider,"
        " 'in', 'customer', 'chat', :text, false, 'received', :at, :at, :due) RETURNING id"),
        {"profile": contact.profile_id, "contact": contact.id, "provider": provider_id,
         "text": "А доставка есть?", "at": now - age,
         "due": None if next_attempt_in is None else now + next_attempt_in}).scalar_one())


def test_a_message_whose_task_was_lost_is_restarted_within_minutes(sessions: SessionFactory, session: Session,
                                                                   wappi: WappiEmulator) -> None:
    first_conversation(sessions, wappi)
    lost = customer_says(wappi, PHONE, "А доставка есть?")
    now = datetime.now(UTC)
    message_id = store_lost_message(session, lost, now, age=timedelta(minutes=6))  # the queue lost its task
    settings = get_settings()
    sweep_at = now + timedelta(seconds=1)  # the next minute's sweep
    assert stranded_messages(session, sweep_at, settings) == [message_id]  # restarted after minutes, not hours
    assert stranded_messages(session, sweep_at, settings) == []  # at most once per period
    assert stranded_outbox(session, sweep_at, settings) == []
    chain.answer(sessions, message_id)  # what the restarted chain does
    assert answer_new(sessions) == []
    assert rows_in(session, "SELECT status FROM messages WHERE id = :id", id=message_id)[0].status == "answered"
    assert len(replies_to(wappi, PHONE)) == 2


def test_a_chain_stamped_by_a_stage_is_restarted_once_its_run_is_overdue(sessions: SessionFactory, session: Session,
                                                                          wappi: WappiEmulator) -> None:
    first_conversation(sessions, wappi)
    lost = customer_says(wappi, PHONE, "А доставка есть?")
    now = datetime.now(UTC)
    # The last stage started 10 s ago (the stamp of a stage start is "now") and then its worker
    # and its queue vanished.
    message_id = store_lost_message(session, lost, now, age=timedelta(minutes=1),
                                    next_attempt_in=timedelta(seconds=-10))
    settings = get_settings()
    assert stranded_messages(session, now, settings) == []  # the stage may still be running
    assert stranded_messages(session, now + message_stage_limit(), settings) == [message_id]
    assert stranded_messages(session, now + message_stage_limit() + timedelta(seconds=1), settings) == []  # once


def test_a_deferred_chain_is_not_restarted(sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    first_conversation(sessions, wappi)
    lost = customer_says(wappi, PHONE, "А доставка есть?")
    now = datetime.now(UTC)
    # Hours of a Gemini outage: the chain retries, and each retry stamps its countdown.
    store_lost_message(session, lost, now, age=timedelta(hours=5), next_attempt_in=timedelta(minutes=5))
    settings = get_settings()
    for moment in (now, now + timedelta(minutes=6)):  # due at +5 min: its run may still go on
        assert stranded_messages(session, moment, settings) == []
        assert stranded_outbox(session, moment, settings) == []


def test_a_stage_start_keeps_a_stamp_moments_old(sessions: SessionFactory, session: Session,
                                                  wappi: WappiEmulator) -> None:
    """The next stage starts moments after the previous one stamped the burst: no rows are rewritten,
    and the sweep's margin still covers that stage's whole run."""
    first_conversation(sessions, wappi)
    lost = customer_says(wappi, PHONE, "А доставка есть?")
    now = datetime.now(UTC)
    message_id = store_lost_message(session, lost, now, age=timedelta(minutes=1),
                                    next_attempt_in=timedelta(seconds=-10))

    def stamp() -> datetime:
        return rows_in(session, "SELECT next_attempt_at FROM messages WHERE id = :id", id=message_id)[0][0]

    mark_burst_due(session, message_id, now, slack=STAGE_START_SLACK)
    assert stamp() == now - timedelta(seconds=10)  # kept
    assert STAGE_START_SLACK < MARGIN
    later = now + STAGE_START_SLACK + timedelta(seconds=1)
    mark_burst_due(session, message_id, later, slack=STAGE_START_SLACK)
    assert stamp() == later  # too old to keep
    mark_burst_due(session, message_id, now, slack=STAGE_START_SLACK)
    assert stamp() == now  # a stamp in the future (a countdown) is replaced by the start


def test_a_stage_start_that_read_a_fresh_stamp_leaves_the_burst_as_it_is(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    """The stage read its message in its first transaction: a stamp under the slack old stands (no
    statement), one older is renewed for the whole burst; either way every message of the burst is
    held for at most twice the slack, inside the sweep's margin."""
    first_conversation(sessions, wappi)
    now = datetime.now(UTC)
    older = store_lost_message(session, customer_says(wappi, PHONE, "А доставка есть?"), now,
                               age=timedelta(minutes=1), next_attempt_in=timedelta(seconds=-25))
    newest = store_lost_message(session, customer_says(wappi, PHONE, "И оплата картой?"), now,
                                age=timedelta(minutes=1), next_attempt_in=timedelta(seconds=-5))

    def stamps() -> list[datetime]:
        return [row[0] for row in rows_in(session, "SELECT next_attempt_at FROM messages WHERE id IN (:a, :b) "
                                                   "ORDER BY id", a=older, b=newest)]

    with sessions() as stage:
        message_settings(stage, newest)  # what the stage read first, and holds
        stamp_stage_start(stage, newest, now)
    assert stamps() == [now - timedelta(seconds=25), now - timedelta(seconds=5)]  # both kept
    assert all(now - stamp < 2 * STAGE_START_SLACK < MARGIN for stamp in stamps())

    later = now + STAGE_START_SLACK
    with sessions() as stage:
        message_settings(stage, newest)
        stamp_stage_start(stage, newest, later)
    assert stamps() == [later, later]  # the newest's stamp was too old: the burst is stamped again

    with sessions() as stage:  # a stage that did not read the message stamps as before
        stamp_stage_start(stage, older, later + STAGE_START_SLACK * 2)
    assert stamps() == [later + STAGE_START_SLACK * 2] * 2


def test_a_stored_message_carries_its_first_stamp_and_an_older_one_restarted_gets_no_second_reply(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    """A message to answer is stored stamped "due now" (its chain starts as the intake commits), so its
    first stage finds a fresh stamp and sends none, and the sweep leaves it alone for a stage run. That
    stamp covers only the new message: an earlier one of the burst keeps its older stamp, and when the
    sweep restarts it, the newer message answers the burst: the customer gets one reply."""
    first_conversation(sessions, wappi)
    now = datetime.now(UTC)
    older = store_lost_message(session, customer_says(wappi, PHONE, "А доставка есть?"), now,
                               age=timedelta(minutes=10), next_attempt_in=-timedelta(minutes=9))
    customer_says(wappi, PHONE, "И оплата картой?")
    before = datetime.now(UTC)
    [newest] = chain.poll(sessions)
    after = datetime.now(UTC)

    def stamp(message_id: int) -> datetime:
        return rows_in(session, "SELECT next_attempt_at FROM messages WHERE id = :id", id=message_id)[0][0]

    assert before <= stamp(newest) <= after
    first_stamp = stamp(newest)
    with sessions() as stage:  # the ingest stage's start: it read (and holds) its message first
        message_settings(stage, newest)
        stamp_stage_start(stage, newest, datetime.now(UTC))
    assert stamp(newest) == first_stamp and stamp(older) == now - timedelta(minutes=9)  # no statement
    settings = get_settings()
    assert stranded_messages(session, datetime.now(UTC), settings) == [older]
    assert chain.answer(sessions, older) is None  # a newer message answers the burst
    assert chain.answer(sessions, newest) is not None
    assert len(replies_to(wappi, PHONE)) == 2  # the first conversation's, and one for both questions
    assert rows_in(session, "SELECT status FROM messages WHERE id IN (:a, :b)", a=older, b=newest) == \
        [("answered",), ("answered",)]
    assert stranded_messages(session, datetime.now(UTC) + message_stage_limit() * 2, settings) == []


def test_a_stage_that_parks_its_message_still_stamps_the_rest_of_the_burst(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    """The stage read its message fresh, then took it out of the answering path (a human is
    answering): that message's stamp no longer speaks for the burst, whose other waiting message
    is stamped as the stage starts."""
    first_conversation(sessions, wappi)
    now = datetime.now(UTC)
    older = store_lost_message(session, customer_says(wappi, PHONE, "А доставка есть?"), now,
                               age=timedelta(minutes=10), next_attempt_in=-timedelta(minutes=9))
    newest = store_lost_message(session, customer_says(wappi, PHONE, "И оплата картой?"), now,
                                age=timedelta(seconds=1), next_attempt_in=-timedelta(seconds=1))
    with sessions() as stage:
        message_settings(stage, newest)
        park_message(stage, newest, MessageStatus.PAUSED)
        stamp_stage_start(stage, newest, now)
    assert rows_in(session, "SELECT next_attempt_at FROM messages WHERE id = :id", id=older)[0][0] == now
