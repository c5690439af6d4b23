"""The follow-up ladder with an injected clock: 720 hours in seconds, stops, weekends, the send-time
recheck, concurrency.

The sweep and the touch are plain functions (what the Celery tasks call), run here in the test's
rolled-back transaction against the Gemini emulator, with `now` given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from clients.gemini import get_client
from db.models import Contact, FollowUp, Outbox, Profile
from db.session import SessionFactory, session_scope
from domain.answers import is_opt_out, short_answer
from domain.states import Author
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline.contacts import note_bot_message, note_message
from pipeline.followup import answer_meaning, claim_due
from tests.support import chain
from tests.support.db import add_contact, rows_in
from tests.support.emulators import replies_to
from tests.support.env import PROFILE_ID
from tests.support.followup import ALMATY, T0, lead_went_silent, run_ladder_until
from tests.support.model_calls import TOUCH, system_texts


def test_the_whole_ladder_runs_at_the_right_times(sessions: SessionFactory, session: Session,
                                                  gemini: GeminiEmulator) -> None:
    lead_went_silent(session)
    expected = [  # 24, 72, 168, 336, 720 h after T0, moved out of weekends to Monday 10:00
        datetime(2025, 10, 3, 15, 0, tzinfo=ALMATY),   # +24 h: Friday 15:00
        datetime(2025, 10, 6, 10, 0, tzinfo=ALMATY),   # +72 h: Sunday 15:00 -> Monday 10:00
        datetime(2025, 10, 9, 15, 0, tzinfo=ALMATY),   # +168 h: Thursday
        datetime(2025, 10, 16, 15, 0, tzinfo=ALMATY),  # +336 h: Thursday
        datetime(2025, 11, 3, 10, 0, tzinfo=ALMATY),   # +720 h: Saturday 1 Nov -> Monday 10:00
    ]
    assert run_ladder_until(sessions, expected[0] - timedelta(minutes=1)) == []  # not yet
    for number, due in enumerate(expected, start=1):
        assert run_ladder_until(sessions, due - timedelta(seconds=30)) == [], f"touch {number} came early"
        written = run_ladder_until(sessions, due)
        assert len(written) == 1, f"touch {number} was not sent at {due}"
        assert run_ladder_until(sessions, due + timedelta(seconds=30)) == []  # claimed once
    follow_up = rows_in(session, "SELECT status, stop_reason, touch_number FROM follow_ups")[0]
    assert (follow_up.status, follow_up.stop_reason, follow_up.touch_number) == ("completed", "completed_5_touches", 5)
    touches = rows_in(session, "SELECT idempotency_key, body, kind FROM outbox ORDER BY id")
    assert [row.idempotency_key.rsplit(":", 1)[1] for row in touches] == ["1", "2", "3", "4", "5"]
    # Each touch was written by the model from the follow-up prompt with its own number.
    prompts = system_texts(gemini, TOUCH)
    assert len(prompts) == 5
    assert all(f"Это касание номер {number} из 5." in prompt for number, prompt in enumerate(prompts, start=1))
    assert all(row.kind == "follow_up" and row.body for row in touches)
    assert run_ladder_until(sessions, expected[-1] + timedelta(days=60)) == []  # no second ladder for one silence


@pytest.mark.parametrize(("text", "reason"), [
    ("Да", "client_said_yes"),
    ("нет, спасибо", "client_said_no"),
    ("А какие есть начинки?", "client_responded"),
])
def test_a_client_message_between_touches_stops_the_chain(sessions: SessionFactory, session: Session, text: str,
                                                          reason: str) -> None:
    contact_id = lead_went_silent(session)
    assert len(run_ladder_until(sessions, T0 + timedelta(hours=24))) == 1
    with sessions() as writer:
        contact = writer.get(Contact, contact_id)
        assert contact is not None
        note_message(writer, contact, Author.CUSTOMER, T0 + timedelta(hours=30), text=text)
    assert tuple(rows_in(session, "SELECT status, stop_reason FROM follow_ups")[0]) == ("stopped", reason)
    assert run_ladder_until(sessions, T0 + timedelta(days=40)) == []
    assert rows_in(session, "SELECT count(*) FROM outbox")[0][0] == 1


def test_opt_out_stops_the_chain_for_good(sessions: SessionFactory, session: Session) -> None:
    contact_id = lead_went_silent(session)
    assert len(run_ladder_until(sessions, T0 + timedelta(hours=24))) == 1
    session.execute(sa.update(Contact).where(Contact.id == contact_id).values(opted_out=True))
    assert run_ladder_until(sessions, T0 + timedelta(hours=100)) == []
    assert tuple(rows_in(session, "SELECT status, stop_reason FROM follow_ups")[0]) == ("stopped", "opted_out")


@pytest.mark.parametrize(("client_text", "started"), [
    ("Спасибо, я подумаю", True), ("посмотрю", True), ("возможно", True),
    ("да", False), ("Нет.", False),
    ("нет проблем, давайте", False),  # longer or mixed: the model decides (yes)
    ("да нет, не надо", False),       # (no)
])
def test_a_chain_follows_silence_or_hesitation_never_a_clear_answer(sessions: SessionFactory, session: Session,
                                                                    client_text: str, started: bool) -> None:
    lead_went_silent(session, client_text=client_text)
    written = run_ladder_until(sessions, T0 + timedelta(hours=24))
    assert bool(written) == started
    if not started:
        assert rows_in(session, "SELECT stop_reason FROM follow_ups")[0].stop_reason in ("client_said_yes",
                                                                                       "client_said_no")


def test_yes_no_and_opt_out_words() -> None:
    assert short_answer("Да!") == "yes" and short_answer("ДАВАЙТЕ") == "yes" and short_answer("Ок 👍") == "yes"
    assert short_answer("Нет.") == "no" and short_answer("не надо") == "no"
    assert short_answer("Подумаю") == "maybe" and short_answer("ещё подумаю над этим") is None
    assert short_answer("нет проблем, давайте") is None and short_answer("да нет, не надо") is None
    assert short_answer("данные") is None  # whole words only
    for text in ("стоп", "STOP", "Stop!", "отпишитесь", "Не пишите мне больше", "unsubscribe", "Стоп."):
        assert is_opt_out(text), text
    for text in ("стопка тарелок", "Сколько стоит торт?", "не стоит беспокоиться"):
        assert not is_opt_out(text), text


def test_long_answers_go_to_the_model(gemini: GeminiEmulator) -> None:
    asked_before = len(gemini.requests_log())
    assert answer_meaning(get_client(), "нет проблем, давайте", "m")[0] == "yes"
    assert answer_meaning(get_client(), "да нет, не надо", "m")[0] == "no"
    assert answer_meaning(get_client(), "да", "m") == ("yes", None)  # no model call for a short one
    assert len(gemini.requests_log()) == asked_before + 2


@pytest.mark.parametrize(("change", "reason"), [("customer", "client_responded"), ("phone", "human_replied"),
                                                ("opt_out", "opted_out")])
def test_a_touch_is_rechecked_at_send_time(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                                           change: str, reason: str) -> None:
    """Written, then the customer wrote / a human answered / the contact opted out before it went
    out: it is not sent, and its chain stops with that reason."""
    phone = "77300000077"
    contact_id = lead_went_silent(session, phone)
    contact = session.get(Contact, contact_id)
    assert contact is not None
    follow_up = FollowUp(contact_id=contact_id, status="active", touch_number=1, anchor_at=T0,
                         next_touch_at=T0 + timedelta(hours=72))
    session.add(follow_up)
    session.flush()
    touch = Outbox(profile_id=contact.profile_id, contact_id=contact_id, kind="follow_up",
                   idempotency_key=f"follow_up:{follow_up.id}:1", body="Алия, вы ещё думаете?", status="pending")
    session.add(touch)
    session.flush()
    # After the touch was written, before it went out:
    if change == "opt_out":
        contact.opted_out = True
    else:
        note_message(session, contact, Author(change), datetime.now(UTC), text="Уже неактуально")
    session.flush()
    assert chain.send(sessions, touch.id) is None
    assert replies_to(wappi, phone) == []
    assert rows_in(session, "SELECT status FROM outbox")[0].status == "cancelled"
    assert tuple(rows_in(session, "SELECT status, stop_reason FROM follow_ups")[0]) == ("stopped", reason)


# -- two sweeps at once: two real connections, so the rows are committed (and removed after) --------

@pytest.fixture()
def due_chains(database: str) -> Iterator[set[int]]:
    """300 active chains with a touch due at T0 + 24 h, committed; removed again at the end."""
    phones = [f"7740{index:07d}" for index in range(300)]
    with session_scope() as session:
        profile = session.scalar(sa.select(Profile).where(Profile.profile_id == PROFILE_ID))
        created_profile = profile is None
        if profile is None:
            profile = Profile(profile_id=PROFILE_ID, name="Main")
            session.add(profile)
            session.flush()
        contacts = [Contact(profile_id=profile.id, phone=phone, chat_id=f"{phone}@c.us", is_client=True)
                    for phone in phones]
        session.add_all(contacts)
        session.flush()
        chains = [FollowUp(contact_id=contact.id, status="active", anchor_at=T0,
                           next_touch_at=T0 + timedelta(hours=24)) for contact in contacts]
        session.add_all(chains)
        session.flush()
        chain_ids = {follow_up.id for follow_up in chains}
        profile_id = profile.id
    try:
        yield chain_ids
    finally:
        with session_scope() as session:
            contact_ids = sa.select(Contact.id).where(Contact.profile_id == profile_id, Contact.phone.in_(phones))
            session.execute(sa.delete(FollowUp).where(FollowUp.contact_id.in_(contact_ids)))
            session.execute(sa.delete(Contact).where(Contact.id.in_(contact_ids)))
            if created_profile:
                session.execute(sa.delete(Profile).where(Profile.id == profile_id))


def test_two_concurrent_sweeps_never_claim_a_touch_twice(due_chains: set[int]) -> None:
    claims: list[list[tuple[int, int]]] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        barrier.wait()
        with session_scope() as session:
            claims.append(claim_due(session, T0 + timedelta(hours=25), lease_for=timedelta(minutes=15)))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = claims[0] + claims[1]
    assert len(everything) == len(set(everything))  # no touch claimed twice
    assert sorted(chain_id for chain_id, _ in everything if chain_id in due_chains) == sorted(due_chains)


@pytest.mark.parametrize(("before", "reply_at", "kind_reply", "after"), [
    # (last author, last message at (hours after T0), awaiting) before; the bot's message at; a reply?;
    # the summary after, as the follow-up sweep reads it
    ((None, None, False), 1, True, ("bot", 1, True)),                  # the first message of the chat
    (("customer", 0, False), 1, True, ("bot", 1, True)),               # the bot answers: silence starts
    (("customer", 2, False), 1, True, ("customer", 2, False)),         # the customer wrote after it
    (("bot", 2, False), 1, True, ("bot", 2, True)),                    # an older reply; the bot still last
    (("customer", 0, False), 1, False, ("bot", 1, False)),             # a touch or a notice: no new silence
])
def test_a_sent_message_moves_the_chat_summary_as_note_message_would(
        session: Session, before: tuple[str | None, int | None, bool], reply_at: int, kind_reply: bool,
        after: tuple[str, int, bool]) -> None:
    author, at, awaiting = before
    contact_id, _profile = add_contact(session, "77001230000", last_author=author, awaiting_follow_up=awaiting,
                                       last_message_at=None if at is None else T0 + timedelta(hours=at))
    note_bot_message(session, contact_id, T0 + timedelta(hours=reply_at), starts_silence=kind_reply)
    row = rows_in(session, "SELECT last_author, last_message_at, awaiting_follow_up FROM contacts WHERE id = :id",
                  id=contact_id)[0]
    assert (row.last_author, row.last_message_at, row.awaiting_follow_up) == (
        after[0], T0 + timedelta(hours=after[1]), after[2])
