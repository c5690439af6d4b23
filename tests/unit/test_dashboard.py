"""The dashboard's figures (pipeline.dashboard) against known rows, at an injected time: periods in
the business's time zone, the funnel, the median time to first reply, per-period comparisons, the
follow-ups, health samples, model usage and cost, and an empty install. The page itself is tested
in a real browser: tests/functional/test_dashboard_browser.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session

from db.models import (
    Contact,
    DeadLetter,
    FollowUp,
    HealthSample,
    Message,
    ModelUsage,
    Outbox,
    Profile,
    ScheduledCall,
)
from db.session import SessionFactory
from domain.states import (
    Author,
    Direction,
    FollowUpStatus,
    MessageStatus,
    OutboxKind,
    OutboxStatus,
    StopReason,
    UsagePurpose,
)
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline import dashboard
from pipeline.dashboard import dashboard_data, window
from pipeline.health_samples import take_sample
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says
from tests.support.model_calls import agent_answer, verdict

ALMATY = ZoneInfo("Asia/Almaty")
# A Wednesday afternoon years away from any row another test writes at the real time.
NOW = datetime(2031, 3, 12, 15, 30, tzinfo=ALMATY)
QUEUES = ("poll", "send")
INTERVALS = (24, 72, 168, 336, 720)
PRICES = (("lite", 0.10, 0.40), ("flash", 0.30, 2.50))
_ids = count(1)


def at(days_before: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A local time `days_before` days before NOW's day, in UTC."""
    day = NOW - timedelta(days=days_before)
    return day.replace(hour=hour, minute=minute, second=second).astimezone(UTC)


def a_profile(session: Session, profile_id: str, **fields: Any) -> Profile:
    profile = Profile(profile_id=profile_id, name=f"shop {profile_id}", **fields)
    session.add(profile)
    session.flush()
    return profile


def a_contact(session: Session, profile: Profile, is_client: bool | None) -> Contact:
    phone = f"7701{next(_ids):07d}"
    contact = Contact(profile_id=profile.id, phone=phone, chat_id=f"{phone}@c.us", is_client=is_client)
    session.add(contact)
    session.flush()
    return contact


def writes(session: Session, contact: Contact, when: datetime, *, status: MessageStatus = MessageStatus.ANSWERED,
           call_requested_at: datetime | None = None) -> Message:
    message = Message(profile_id=contact.profile_id, contact_id=contact.id, provider_message_id=f"m{next(_ids)}",
                      direction=Direction.IN, author=Author.CUSTOMER, text="Здравствуйте", status=status,
                      sent_at=when, created_at=when, call_requested_at=call_requested_at)
    session.add(message)
    session.flush()
    return message


def sends(session: Session, contact: Contact, when: datetime | None, *, kind: OutboxKind = OutboxKind.REPLY,
          status: OutboxStatus = OutboxStatus.SENT, key: str | None = None) -> None:
    session.add(Outbox(profile_id=contact.profile_id, contact_id=contact.id, idempotency_key=key or f"k{next(_ids)}",
                       kind=kind, body="Ответ", status=status, sent_at=when, created_at=when or NOW))
    session.flush()


@pytest.fixture()
def shop(session: Session) -> dict[str, Any]:
    """A day of one profile's traffic (and one of another profile), NOW being 15:30:

    - A, a lead: writes at 10:00, answered 30 s later, asks for a call that is booked; writes again at 14:00.
    - B, a lead: writes at 11:00, answered a minute later, asks for a call at a time that is refused.
    - C, a lead: writes at 12:00; the reply is still pending.
    - D, not a lead: writes at 12:00, never answered. E, undecided: writes at 12:00, answered at 12:05.
    - G: a message from before the product started (history): not counted.
    - F, a lead, wrote yesterday at 09:00 and was answered two minutes later.
    - H, a lead of another profile, writes at 10:30 and is answered.
    """
    main, other = a_profile(session, "d0000000-0001"), a_profile(session, "d0000000-0002")
    people = {name: a_contact(session, main, is_client) for name, is_client in
              [("A", True), ("B", True), ("C", True), ("D", False), ("E", None), ("F", True), ("G", True)]}
    people["H"] = a_contact(session, other, True)
    first = writes(session, people["A"], at(0, 10), call_requested_at=at(0, 10, 0, 20))
    sends(session, people["A"], at(0, 10, 0, 30))
    session.add(ScheduledCall(contact_id=people["A"].id, scheduled_at=at(-1, 15), timezone="Asia/Almaty",
                              source_message_id=first.id, created_at=at(0, 10, 0, 20)))
    writes(session, people["A"], at(0, 14))
    sends(session, people["A"], at(0, 14, 0, 5))
    writes(session, people["B"], at(0, 11), call_requested_at=at(0, 11, 0, 50))
    sends(session, people["B"], at(0, 11, 1))
    writes(session, people["C"], at(0, 12), status=MessageStatus.RECEIVED)
    sends(session, people["C"], None, status=OutboxStatus.PENDING)
    writes(session, people["D"], at(0, 12), status=MessageStatus.IGNORED)
    writes(session, people["E"], at(0, 12))
    sends(session, people["E"], at(0, 12, 5))
    writes(session, people["G"], at(0, 9), status=MessageStatus.HISTORY)
    writes(session, people["F"], at(1, 9))
    sends(session, people["F"], at(1, 9, 2))
    writes(session, people["H"], at(0, 10, 30))
    sends(session, people["H"], at(0, 10, 31))
    return {"main": main, "other": other, **people}


def data(session: Session, *, period: str = "today", profile: Profile | None = None,
         now: datetime = NOW) -> dict[str, Any]:
    return dashboard_data(session, now, period=period, timezone="Asia/Almaty",
                          profile_id=profile.id if profile else None,
                          profile_key=profile.profile_id if profile else "all", queues=QUEUES, intervals=INTERVALS,
                          prices=PRICES)


def section(figures: dict[str, Any], key: str) -> dict[str, Any]:
    return next(item for item in figures["sections"] if item["key"] == key)


def figure(figures: dict[str, Any], section_key: str, key: str) -> tuple[Any, Any]:
    found = next(item for item in section(figures, section_key)["figures"] if item["key"] == key)
    return found["current"], found["previous"]


def dataset(figures: dict[str, Any], section_key: str, label: str) -> list[Any]:
    return next(item["data"] for item in section(figures, section_key)["chart"]["datasets"] if item["label"] == label)


def test_periods_are_whole_days_in_the_business_time_zone() -> None:
    today = window("today", NOW, "Asia/Almaty")
    assert today.current.start == datetime(2031, 3, 12, tzinfo=ALMATY)
    assert today.current.end == datetime(2031, 3, 13, tzinfo=ALMATY)
    assert (today.previous.start, today.previous.end) == (datetime(2031, 3, 11, tzinfo=ALMATY), today.current.start)
    assert len(today.buckets(today.current)) == 24 and today.bucket == "hour"
    assert today.previous_buckets()[9] == datetime(2031, 3, 11, 9, 0)
    week = window("7d", NOW, "Asia/Almaty")
    assert week.current.start == datetime(2031, 3, 6, tzinfo=ALMATY) and week.current.end == today.current.end
    assert week.previous.start == datetime(2031, 2, 27, tzinfo=ALMATY) and week.previous.end == week.current.start
    assert [bucket.day for bucket in week.buckets(week.current)] == [6, 7, 8, 9, 10, 11, 12]
    month = window("30d", NOW, "Asia/Almaty")
    assert len(month.buckets(month.current)) == 30 and month.previous.end == month.current.start
    # Just after midnight in Almaty it is still the previous day in UTC: the period is Almaty's.
    early = window("today", datetime(2031, 3, 12, 0, 30, tzinfo=ALMATY), "Asia/Almaty")
    assert early.current.start == datetime(2031, 3, 12, tzinfo=ALMATY)


def test_funnel_counts_each_step_of_the_contacts_who_wrote(session: Session, shop: dict[str, Any]) -> None:
    today = dashboard.window("today", NOW, "Asia/Almaty")
    of_main = dashboard.funnel(session, today.current, shop["main"].id)
    assert of_main == {"wrote": 5, "leads": 3, "answered": 2, "asked_call": 2, "call_booked": 1}
    assert dashboard.funnel(session, today.previous, shop["main"].id) == {
        "wrote": 1, "leads": 1, "answered": 1, "asked_call": 0, "call_booked": 0}
    # Every profile: H of the other shop too.
    assert dashboard.funnel(session, today.current) == {
        "wrote": 6, "leads": 4, "answered": 3, "asked_call": 2, "call_booked": 1}
    # The page's figures, each beside the previous period's.
    figures = data(session, profile=shop["main"])
    assert [(step["key"], step["current"], step["previous"]) for step in section(figures, "funnel")["figures"]] == [
        ("wrote", 5, 1), ("leads", 3, 1), ("answered", 2, 1), ("asked_call", 2, 0), ("call_booked", 1, 0)]
    assert section(figures, "funnel")["table"]["rows"][0] == ["Contacts who wrote", 5, 1]
    assert dataset(figures, "funnel", "This period") == [5, 3, 2, 2, 1]
    assert dataset(figures, "funnel", "Previous period") == [1, 1, 1, 0, 0]


def test_median_time_to_first_reply(session: Session, shop: dict[str, Any]) -> None:
    """A: 30 s (its 14:00 message is not its first), B: 60 s, E: 300 s; C and D got no reply."""
    today = dashboard.window("today", NOW, "Asia/Almaty")
    assert dashboard.median_first_reply(session, today.current, shop["main"].id) == 60.0
    assert dashboard.median_first_reply(session, today.previous, shop["main"].id) == 120.0
    # H (60 s) joins with every profile: the median of 30, 60, 60, 300.
    assert dashboard.median_first_reply(session, today.current) == 60.0
    sends(session, shop["D"], at(0, 12, 20))  # D answered after 20 minutes: 30, 60, 300, 1200
    assert dashboard.median_first_reply(session, today.current, shop["main"].id) == 180.0
    assert figure(data(session, profile=shop["main"]), "activity", "median_first_reply") == (180.0, 120.0)


def test_inbound_and_replies_per_hour_beside_the_previous_day(session: Session, shop: dict[str, Any]) -> None:
    figures = data(session, profile=shop["main"])
    chart = section(figures, "activity")["chart"]
    assert chart["labels"][:3] == ["00:00", "01:00", "02:00"] and len(chart["labels"]) == 24
    inbound, replies = dataset(figures, "activity", "Inbound messages"), dataset(figures, "activity", "Replies sent")
    assert inbound[10:16] == [1, 1, 3, 0, 1, 0] and replies[10:16] == [1, 1, 1, 0, 1, 0]
    # The hours still to come have no figure (not zero); yesterday's are all there.
    assert inbound[16:] == [None] * 8 and replies[16:] == [None] * 8
    assert dataset(figures, "activity", "Inbound, previous period")[9] == 1
    assert dataset(figures, "activity", "Replies, previous period")[9] == 1
    assert figure(figures, "activity", "inbound") == (6, 1) and figure(figures, "activity", "replies") == (4, 1)
    assert section(figures, "activity")["table"]["rows"][12] == ["12:00", 3, 1, 0, 0]
    # Seven days: one bucket a day, the same figures in today's.
    week = data(session, period="7d", profile=shop["main"])
    assert section(week, "activity")["chart"]["labels"][-1] == "Wed 12 Mar"
    assert dataset(week, "activity", "Inbound messages")[-2:] == [1, 6]
    assert figure(week, "activity", "inbound") == (7, 0)


def test_follow_ups_by_step_their_stops_and_the_replies_they_won(session: Session, shop: dict[str, Any]) -> None:
    def chain_of(name: str, touches: int, status: FollowUpStatus, reason: StopReason, ended: datetime) -> int:
        chain_row = FollowUp(contact_id=shop[name].id, status=status, touch_number=touches, anchor_at=at(20, 10),
                             stop_reason=reason, created_at=at(20, 10), updated_at=ended)
        session.add(chain_row)
        session.flush()
        return chain_row.id

    answered_after_two = chain_of("A", 2, FollowUpStatus.STOPPED, StopReason.CLIENT_RESPONDED, at(0, 10))
    said_no = chain_of("B", 1, FollowUpStatus.STOPPED, StopReason.CLIENT_SAID_NO, at(0, 11))
    completed = chain_of("C", 5, FollowUpStatus.COMPLETED, StopReason.COMPLETED, at(0, 9))
    chain_of("E", 0, FollowUpStatus.STOPPED, StopReason.CLIENT_RESPONDED, at(0, 12))  # wrote before any touch
    yesterday = chain_of("F", 1, FollowUpStatus.STOPPED, StopReason.OPTED_OUT, at(1, 9))
    for chain_id, touch, when in [(answered_after_two, 1, at(2, 10)), (answered_after_two, 2, at(0, 8)),
                                  (said_no, 1, at(0, 9)), (completed, 5, at(0, 8, 30)), (yesterday, 1, at(1, 8))]:
        sends(session, shop["A"], when, kind=OutboxKind.FOLLOW_UP, key=f"follow_up:{chain_id}:{touch}")
    sends(session, shop["A"], None, kind=OutboxKind.FOLLOW_UP, status=OutboxStatus.PENDING,
          key=f"follow_up:{said_no}:2")
    today = dashboard.window("today", NOW, "Asia/Almaty")
    assert dashboard.touches_sent(session, today.current, shop["main"].id) == {1: 1, 2: 1, 5: 1}
    assert dashboard.touches_sent(session, today.previous, shop["main"].id) == {1: 1}
    assert dashboard.replies_won(session, today.current, shop["main"].id) == {1: 1, 2: 1}
    assert dashboard.chains_stopped(session, today.current, shop["main"].id) == {
        "client_responded": 2, "client_said_no": 1, "completed_5_touches": 1}
    assert dashboard.chains_stopped(session, today.previous) == {"opted_out": 1}
    assert dashboard.touches_sent(session, today.current, shop["other"].id) == {}
    figures = data(session, profile=shop["main"])
    touches = section(figures, "follow_ups")
    assert touches["chart"]["labels"] == ["24 h", "72 h", "168 h", "336 h", "720 h"]
    assert dataset(figures, "follow_ups", "Touches sent") == [1, 1, 0, 0, 1]
    assert dataset(figures, "follow_ups", "Touches sent, previous") == [1, 0, 0, 0, 0]
    assert dataset(figures, "follow_ups", "Replies won") == [1, 1, 0, 0, 0]
    assert figure(figures, "follow_ups", "replies_won") == (2, 0)
    stops = section(figures, "stops")
    assert stops["table"]["rows"] == [["customer wrote back", 2, 0], ["customer said no", 1, 0],
                                      ["opted out (STOP)", 0, 1], ["all touches sent", 1, 0]]


def test_model_tokens_by_purpose_and_the_estimated_cost(session: Session, shop: dict[str, Any]) -> None:
    for purpose, model, prompt, output, total, contact, when in [
        (UsagePurpose.CLASSIFY, "lite", 100_000, 5_000, 105_000, "A", at(0, 10)),
        (UsagePurpose.REPLY, "flash", 200_000, 30_000, 250_000, "A", at(0, 10, 1)),  # 20 000 thinking tokens
        (UsagePurpose.TRANSCRIBE, "unpriced-model", 700, 300, 1_000, "B", at(0, 11)),
        (UsagePurpose.FOLLOW_UP, "flash", 10_000, 1_000, 11_000, "F", at(1, 9)),
        (UsagePurpose.REPLY, "flash", 50_000, 1_000, 51_000, "H", at(0, 10)),  # the other profile's
    ]:
        session.add(ModelUsage(purpose=purpose, model=model, contact_id=shop[contact].id, prompt_tokens=prompt,
                               output_tokens=output, total_tokens=total, created_at=when))
    session.flush()
    figures = data(session, profile=shop["main"])
    usage = section(figures, "model_usage")
    assert [item["label"] for item in usage["chart"]["datasets"]] == ["classify", "respond", "transcribe", "follow-up"]
    assert dataset(figures, "model_usage", "classify")[10] == 105_000
    assert dataset(figures, "model_usage", "respond")[10] == 250_000
    assert dataset(figures, "model_usage", "transcribe")[11] == 1_000
    # lite: 100 000 × 0.10 + 5 000 × 0.40; flash: 200 000 × 0.30 + 50 000 × 2.50 (USD per million).
    assert figure(figures, "model_usage", "cost") == (0.197, 0.0055)
    assert figure(figures, "model_usage", "tokens") == (356_000, 11_000)
    assert figure(figures, "model_usage", "unpriced_tokens") == (1_000, 0)
    assert usage["table"]["rows"][10] == ["10:00", 105_000, 250_000, 0, 0, 0.197]
    assert figure(data(session), "model_usage", "tokens") == (407_000, 11_000)


def test_health_samples_one_a_slot_kept_14_days(session: Session, redis_client: Any) -> None:
    queues = ("dashboard-test-a", "dashboard-test-b")
    try:
        redis_client.rpush("dashboard-test-a", "1", "2")
        redis_client.rpush("dashboard-test-a\x06\x169", "3")  # a priority sub-queue counts as the queue
        session.add(DeadLetter(task_name="pipeline.send", task_id="dashboard-dl-1"))
        session.flush()
        moment = datetime(2031, 3, 12, 10, 0, 10, tzinfo=UTC)
        assert take_sample(session, redis_client, queues, moment, 30.0)
        assert not take_sample(session, redis_client, queues, moment + timedelta(seconds=15), 30.0), "same slot"
        [sample] = rows_in(session, "SELECT sampled_at, queue_depths, dead_letters FROM health_samples "
                                    "WHERE sampled_at >= '2031-01-01'")
        assert sample.sampled_at == datetime(2031, 3, 12, 10, 0, 0, tzinfo=UTC)
        assert sample.queue_depths == {"dashboard-test-a": 3, "dashboard-test-b": 0}
        assert sample.dead_letters >= 1
        assert take_sample(session, redis_client, queues, moment + timedelta(days=14, minutes=1), 30.0)
        kept = rows_in(session, "SELECT sampled_at FROM health_samples WHERE sampled_at >= '2031-01-01'")
        assert [row.sampled_at for row in kept] == [moment + timedelta(days=14, minutes=1) - timedelta(seconds=10)]
    finally:
        redis_client.delete("dashboard-test-a", "dashboard-test-a\x06\x169")


def test_health_over_time_takes_each_buckets_largest_value(session: Session) -> None:
    for minute, poll, send, dead in [(0, 1, 5, 0), (2, 4, 0, 1), (30, 0, 0, 2)]:
        session.add(HealthSample(sampled_at=at(0, 9, minute), queue_depths={"poll": poll, "send": send}, held=1,
                                 dead_letters=dead))
    session.add(HealthSample(sampled_at=at(1, 9), queue_depths={"poll": 2, "send": 0}, held=0, dead_letters=0))
    session.add(DeadLetter(task_name="pipeline.send", task_id="dashboard-dl-2", first_failed_at=at(0, 9, 2)))
    session.flush()
    figures = data(session)
    health = section(figures, "health")
    assert len(health["chart"]["labels"]) == 144 and health["chart"]["labels"][54] == "09:00"
    assert dataset(figures, "health", "queue poll")[54:58] == [4, None, None, 0]
    assert dataset(figures, "health", "queue send")[54] == 5
    assert dataset(figures, "health", "dead letters")[54:58] == [1, None, None, 2]
    assert health["table"]["rows"] == [["09:00", 4, 5, 1, 1], ["09:30", 0, 0, 1, 2]]
    assert figure(figures, "health", "peak_waiting") == (6, 2)  # 1 + 5 at 09:00
    assert figure(figures, "health", "dead_letters_added") == (1, 0)
    assert not health["empty"]


def test_profiles_and_their_recorded_state(session: Session, shop: dict[str, Any]) -> None:
    a_profile(session, "d0000000-0003", down_reason="not authorized", down_since=at(0, 8))
    a_profile(session, "d0000000-0004", active=False)
    a_profile(session, "d0000000-0005", proactive_tripped_at=at(0, 9))
    rows = {row[0]: row for row in section(data(session), "profiles")["table"]["rows"]}
    assert rows["d0000000-0001"][3:] == ["ok", "never", 6, 1, 4, 1]
    assert rows["d0000000-0002"][3] == "ok" and rows["d0000000-0002"][5] == 1
    assert rows["d0000000-0003"][3] == "down: not authorized"
    assert rows["d0000000-0004"][3] == "disabled"
    assert rows["d0000000-0005"][3] == "follow-ups held (daily cap)"
    one = section(data(session, profile=shop["other"]), "profiles")
    assert [row[0] for row in one["table"]["rows"]] == ["d0000000-0002"]


def test_a_new_install_shows_empty_sections_not_errors(session: Session) -> None:
    empty = data(session, now=datetime(2041, 6, 1, 12, 0, tzinfo=ALMATY))
    json.dumps(empty)  # what /dashboard/data.json serves
    assert all(item["empty"] for item in empty["sections"] if item["key"] != "profiles")
    assert dataset(empty, "funnel", "This period") == [0, 0, 0, 0, 0]
    assert figure(empty, "activity", "median_first_reply") == (None, None)
    assert section(empty, "health")["table"]["rows"] == []
    assert all(value is None for value in dataset(empty, "health", "dead letters"))
    assert figure(empty, "model_usage", "cost") == (0.0, 0.0)
    assert [item["key"] for item in empty["summary"]] == [
        "wrote", "leads", "answered", "call_booked", "median_first_reply", "replies_won", "dead_letters_added",
        "cost"]


@pytest.mark.parametrize(("requested", "booked"), [
    (datetime(2025, 10, 7, 15, 0, tzinfo=ALMATY), True),  # a Tuesday afternoon: booked
    (datetime(2025, 10, 7, 19, 0, tzinfo=ALMATY), False),  # after hours: refused, slots offered
])
def test_the_answer_that_asks_for_a_call_is_recorded_for_the_funnel(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, gemini: GeminiEmulator,
        requested: datetime, booked: bool) -> None:
    assert chain.poll(sessions) == []
    gemini.script([verdict(True, 0.95), agent_answer("Созвонимся!", requested.isoformat())])
    customer_says(wappi, "77100000009", "Хочу заказать торт, позвоните мне")
    [message_id] = chain.poll(sessions)
    assert chain.answer(sessions, message_id, reply_at=datetime(2025, 10, 2, 11, 0, tzinfo=ALMATY)) is not None
    [message] = rows_in(session, "SELECT id, call_requested_at FROM messages WHERE direction = 'in'")
    assert message.id == message_id and message.call_requested_at is not None
    assert rows_in(session, "SELECT count(*) FROM scheduled_calls")[0][0] == (1 if booked else 0)
    customer_says(wappi, "77100000009", "Спасибо!")
    [plain] = chain.poll(sessions)
    chain.answer(sessions, plain)
    assert rows_in(session, "SELECT call_requested_at FROM messages WHERE id = :id", id=plain)[0][0] is None
