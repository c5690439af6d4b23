"""The follow-up ladder with an injected clock: 720 hours in seconds, stops, weekends, concurrency.

The sweep and the touch are plain functions (what the Celery tasks call), run here against the
real PostgreSQL and the Gemini emulator, with `now` given.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from db.models import Contact, FollowUp, Message, Profile
from db.session import session_scope
from domain.answers import is_opt_out, short_answer
from domain.states import Author
from emulators.gemini import GeminiEmulator
from pipeline.contacts import note_message
from pipeline.followup import answer_meaning, claim_due
from tests.support.followup import sweep as sweep_once
from tests.support.followup import touch as run_touch
from tests.test_pipeline import rows

ALMATY = ZoneInfo("Asia/Almaty")
T0 = datetime(2025, 10, 2, 15, 0, tzinfo=ALMATY)  # a Thursday afternoon: our reply, then silence

pytestmark = pytest.mark.usefixtures("clean")


def lead_went_silent(phone: str = "77300000001", *, client_text: str = "Спасибо, я подумаю") -> int:
    """A lead who wrote, got our reply at T0, and said nothing since. Returns the contact id."""
    with session_scope() as session:
        profile = session.scalar(sa.select(Profile)) or Profile(profile_id="a1b2c3d4-e5f6", name="Main")
        session.add(profile)
        session.flush()
        contact = Contact(profile_id=profile.id, phone=phone, chat_id=f"{phone}@c.us", push_name="Алия",
                          is_client=True)
        session.add(contact)
        session.flush()
        for offset, author, text in ((-60, "customer", client_text), (0, "bot", "Будем рады помочь!")):
            sent_at = T0 + timedelta(minutes=offset)
            session.add(Message(profile_id=profile.id, contact_id=contact.id, provider_message_id=f"{phone}{offset}",
                                direction="in" if author == "customer" else "out", author=author, text=text,
                                status="answered" if author == "customer" else "sent", sent_at=sent_at))
            note_message(session, contact, Author(author), sent_at, text=text)
        contact.awaiting_follow_up = True  # what `send` sets after our reply went out
        return contact.id


def run_ladder_until(now: datetime) -> list[int]:
    """One sweep at `now` and every touch it claims; returns the outbox ids written."""
    written = []
    for chain_id, touch_number in sweep_once(now):
        outbox_id = run_touch(chain_id, touch_number, now)
        if outbox_id is not None:
            written.append(outbox_id)
    return written


def test_the_whole_ladder_runs_at_the_right_times(gemini: GeminiEmulator) -> None:
    lead_went_silent()
    expected = [  # 24, 72, 168, 336, 720 h after T0, moved out of weekends to Monday 10:00
        datetime(2025, 10, 3, 15, 0, tzinfo=ALMATY),   # +24 h: Friday 15:00
        datetime(2025, 10, 6, 10, 0, tzinfo=ALMATY),   # +72 h: Sunday 15:00 -> Monday 10:00
        datetime(2025, 10, 9, 15, 0, tzinfo=ALMATY),   # +168 h: Thursday
        datetime(2025, 10, 16, 15, 0, tzinfo=ALMATY),  # +336 h: Thursday
        datetime(2025, 11, 3, 10, 0, tzinfo=ALMATY),   # +720 h: Saturday 1 Nov -> Monday 10:00
    ]
    assert run_ladder_until(expected[0] - timedelta(minutes=1)) == []  # not yet
    for number, due in enumerate(expected, start=1):
        assert run_ladder_until(due - timedelta(seconds=30)) == [], f"touch {number} came early"
        written = run_ladder_until(due)
        assert len(written) == 1, f"touch {number} was not sent at {due}"
        assert run_ladder_until(due + timedelta(seconds=30)) == []  # claimed once
    chain = rows("SELECT status, stop_reason, touch_number FROM follow_ups")[0]
    assert (chain.status, chain.stop_reason, chain.touch_number) == ("completed", "completed_5_touches", 5)
    touches = rows("SELECT idempotency_key, body, kind FROM outbox ORDER BY id")
    assert [row.idempotency_key.rsplit(":", 1)[1] for row in touches] == ["1", "2", "3", "4", "5"]
    # Each touch was written by the model from the follow-up prompt with its own number.
    prompts = [call["body"]["systemInstruction"]["parts"][0]["text"] for call in gemini.requests_log()
               if "касание номер" in json.dumps(call["body"], ensure_ascii=False)]
    assert len(prompts) == 5
    assert all(f"Это касание номер {number} из 5." in prompt for number, prompt in enumerate(prompts, start=1))
    assert all(row.kind == "follow_up" and row.body for row in touches)
    assert run_ladder_until(expected[-1] + timedelta(days=60)) == []  # no second ladder for the same silence


@pytest.mark.parametrize(("text", "reason"), [
    ("Да", "client_said_yes"),
    ("нет, спасибо", "client_said_no"),
    ("А какие есть начинки?", "client_responded"),
])
def test_a_client_message_between_touches_stops_the_chain(text: str, reason: str) -> None:
    contact_id = lead_went_silent()
    assert len(run_ladder_until(T0 + timedelta(hours=24))) == 1
    with session_scope() as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        note_message(session, contact, Author.CUSTOMER, T0 + timedelta(hours=30), text=text)
    assert rows("SELECT status, stop_reason FROM follow_ups")[0] == ("stopped", reason)
    assert run_ladder_until(T0 + timedelta(days=40)) == []
    assert rows("SELECT count(*) FROM outbox")[0][0] == 1


def test_opt_out_stops_the_chain_for_good() -> None:
    contact_id = lead_went_silent()
    assert len(run_ladder_until(T0 + timedelta(hours=24))) == 1
    with session_scope() as session:
        session.execute(sa.update(Contact).where(Contact.id == contact_id).values(opted_out=True))
    assert run_ladder_until(T0 + timedelta(hours=100)) == []
    assert rows("SELECT status, stop_reason FROM follow_ups")[0] == ("stopped", "opted_out")


@pytest.mark.parametrize(("client_text", "started"), [
    ("Спасибо, я подумаю", True), ("посмотрю", True), ("возможно", True),
    ("да", False), ("Нет.", False),
    ("нет проблем, давайте", False),  # longer or mixed: the model decides (yes)
    ("да нет, не надо", False),       # (no)
])
def test_a_chain_follows_silence_or_hesitation_never_a_clear_answer(client_text: str, started: bool) -> None:
    lead_went_silent(client_text=client_text)
    written = run_ladder_until(T0 + timedelta(hours=24))
    assert bool(written) == started
    if not started:
        assert rows("SELECT stop_reason FROM follow_ups")[0].stop_reason in ("client_said_yes", "client_said_no")


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
    from clients.gemini import get_client

    assert answer_meaning(get_client(), "нет проблем, давайте", "m")[0] == "yes"
    assert answer_meaning(get_client(), "да нет, не надо", "m")[0] == "no"
    assert answer_meaning(get_client(), "да", "m") == ("yes", None)  # no model call for a short one


def test_two_concurrent_sweeps_never_claim_a_touch_twice() -> None:
    with session_scope() as session:
        profile = Profile(profile_id="a1b2c3d4-e5f6", name="Main")
        session.add(profile)
        session.flush()
        contacts = [Contact(profile_id=profile.id, phone=f"7740{index:07d}", chat_id=f"7740{index:07d}@c.us",
                            is_client=True) for index in range(300)]
        session.add_all(contacts)
        session.flush()
        session.add_all(FollowUp(contact_id=contact.id, status="active", anchor_at=T0,
                                 next_touch_at=T0 + timedelta(hours=24)) for contact in contacts)
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
    assert len(everything) == 300 and len(set(everything)) == 300  # each touch claimed exactly once




@pytest.mark.usefixtures("workers")
def test_the_sweep_task_sends_a_due_touch_through_the_workers(wappi: Any) -> None:
    from datetime import UTC

    from tasks import app
    from tests.conftest import wait_for
    from tests.test_pipeline import replies_to

    # A moment inside working hours more than a day ago, so the first touch is already due.
    moment = datetime.now(ALMATY).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    while moment.weekday() > 4:
        moment -= timedelta(days=1)
    contact_id = lead_went_silent("77300000099")
    with session_scope() as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        contact.last_message_at = (moment - timedelta(hours=24)).astimezone(UTC)
    app.send_task("pipeline.followup_sweep", queue="followup")
    touches = wait_for(lambda: replies_to(wappi, "77300000099"), message="the first touch to reach the chat")
    assert len(touches) == 1 and touches[0]["body"]
    outbox = wait_for(lambda: [row for row in rows("SELECT kind, status FROM outbox") if row.status == "sent"],
                      message="the touch marked sent")
    assert [(row.kind, row.status) for row in outbox] == [("follow_up", "sent")]
    assert rows("SELECT touch_number, status FROM follow_ups")[0] == (1, "active")


@pytest.mark.usefixtures("workers")
@pytest.mark.parametrize(("change", "reason"), [("customer", "client_responded"), ("phone", "human_replied"),
                                                ("opt_out", "opted_out")])
def test_a_touch_is_rechecked_at_send_time(wappi: Any, change: str, reason: str) -> None:
    """Written, then the customer wrote / a human answered / the contact opted out before it went
    out: it is not sent, and its chain stops with that reason."""
    from datetime import UTC

    from db.models import Outbox
    from tasks import app
    from tests.conftest import wait_for
    from tests.idle import wait_idle
    from tests.test_pipeline import replies_to

    phone = "77300000077"
    contact_id = lead_went_silent(phone)
    with session_scope() as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        chain = FollowUp(contact_id=contact_id, status="active", touch_number=1, anchor_at=T0,
                         next_touch_at=T0 + timedelta(hours=72))
        session.add(chain)
        session.flush()
        touch = Outbox(profile_id=contact.profile_id, contact_id=contact_id, kind="follow_up",
                       idempotency_key=f"follow_up:{chain.id}:1", body="Алия, вы ещё думаете?", status="pending")
        session.add(touch)
        session.flush()
        touch_id = touch.id
        # After the touch was written, before it went out:
        if change == "opt_out":
            contact.opted_out = True
        else:
            note_message(session, contact, Author(change), datetime.now(UTC), text="Уже неактуально")
    app.send_task("pipeline.send", args=[touch_id], queue="followup")
    wait_for(lambda: rows("SELECT 1 FROM outbox WHERE status != 'pending'"), message="the touch to be decided")
    wait_idle()
    assert replies_to(wappi, phone) == []
    assert rows("SELECT status FROM outbox")[0].status == "cancelled"
    assert tuple(rows("SELECT status, stop_reason FROM follow_ups")[0]) == ("stopped", reason)
