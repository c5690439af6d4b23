"""The dashboard's figures: how many people wrote and how many became leads and calls, whether the
follow-ups worked, whether the bot is healthy. Plain functions of a session, a period and an
optional profile (our id); `dashboard_data` puts a period and the one before it side by side.

Definitions (the README's "Dashboard" section says them to the owner):
- A period is whole calendar days in the business's time zone: today, the last 7 or the last 30
  days (today included); the previous period is as many days just before it.
- Funnel, over the contacts who wrote in the period (an inbound message stored in it, history not
  counted): leads (the moderator's verdict is "lead") -> answered (a lead sent a reply in the
  period) -> asked for a call (an answered lead whose answer in the period asked for one) -> call
  booked (a call booked in the period). Each step is part of the one before.
- Time to first reply: per contact who wrote, from their first message in the period to the first
  reply sent to them after it; the median over the contacts that got one.
- Follow-ups: touches sent in the period by step; chains that ended in the period by reason; the
  replies they won: chains that ended because the customer answered after at least one touch.
- Health: the 30 s samples of `health_samples`, the largest value of each bucket (pool-wide).
- Model usage: tokens per bucket and purpose; the estimated cost prices input tokens at the
  model's input price and the rest (output and thinking) at its output price.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, cast, exists, func, or_, select, true
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
from domain.states import (
    Direction,
    FollowUpStatus,
    MessageStatus,
    OutboxKind,
    OutboxStatus,
    StopReason,
    UsagePurpose,
)

# name -> (label, days, bucket of the time series, seconds per health bucket)
PERIODS: dict[str, tuple[str, int, str, int]] = {
    "today": ("Today", 1, "hour", 600),
    "7d": ("7 days", 7, "day", 3600),
    "30d": ("30 days", 30, "day", 6 * 3600),
}
DEFAULT_PERIOD = "today"
# Chains that ended because the customer wrote back: what a follow-up is for.
WON: tuple[str, ...] = (StopReason.CLIENT_RESPONDED, StopReason.CLIENT_SAID_YES, StopReason.CLIENT_SAID_NO)
PURPOSES: tuple[tuple[str, str], ...] = (
    (UsagePurpose.CLASSIFY, "classify"), (UsagePurpose.REPLY, "respond"),
    (UsagePurpose.TRANSCRIBE, "transcribe"), (UsagePurpose.FOLLOW_UP, "follow-up"))
STOP_LABELS: dict[str, str] = {
    StopReason.CLIENT_RESPONDED: "customer wrote back", StopReason.CLIENT_SAID_YES: "customer said yes",
    StopReason.CLIENT_SAID_NO: "customer said no", StopReason.OPTED_OUT: "opted out (STOP)",
    StopReason.HUMAN_REPLIED: "a human took over", StopReason.FAILED: "touch failed",
    StopReason.COMPLETED: "all touches sent", StopReason.UNREACHABLE: "customer unreachable",
}


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC."""

    start: datetime
    end: datetime

    def has(self, column: Any) -> Any:
        return and_(column >= self.start, column < self.end)


@dataclass(frozen=True)
class Window:
    """A period of the filter and the one before it, with the buckets of their time series."""

    name: str
    label: str
    timezone: str
    bucket: str  # "hour" or "day": date_trunc's unit, in the business's time zone
    health_step: int  # seconds per bucket of the health samples
    current: Period
    previous: Period
    now: datetime

    def buckets(self, period: Period) -> list[datetime]:
        """The local (naive) starts of the period's buckets, as date_trunc gives them."""
        zone = ZoneInfo(self.timezone)
        start, end = (moment.astimezone(zone).replace(tzinfo=None) for moment in (period.start, period.end))
        step = timedelta(hours=1) if self.bucket == "hour" else timedelta(days=1)
        found, moment = [], start
        while moment < end:
            found.append(moment)
            moment += step
        return found

    def previous_buckets(self) -> list[datetime]:
        """The previous period's buckets at the same places as the current period's."""
        shift = self.current.start - self.previous.start
        return [bucket - shift for bucket in self.buckets(self.current)]

    def to_come(self, bucket: datetime) -> bool:
        """Whether a bucket of the current period has not started yet (no figure, not zero)."""
        return bucket > self.now.astimezone(ZoneInfo(self.timezone)).replace(tzinfo=None)

    def label_of(self, bucket: datetime) -> str:
        return bucket.strftime("%H:%M") if self.bucket == "hour" else bucket.strftime("%a %d %b")


def window(name: str, now: datetime, timezone: str) -> Window:
    """The period `name` (PERIODS) ending with today in `timezone`, and the one before it."""
    label, days, bucket, health_step = PERIODS[name]
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)

    def midnight(day: Any) -> datetime:
        return datetime.combine(day, time(), zone).astimezone(UTC)

    return Window(name=name, label=label, timezone=timezone, bucket=bucket, health_step=health_step,
                  current=Period(midnight(first), midnight(today + timedelta(days=1))),
                  previous=Period(midnight(first - timedelta(days=days)), midnight(first)), now=now)


def _of_profile(column: Any, profile_id: int | None) -> Any:
    return true() if profile_id is None else column == profile_id


def _inbound(period: Period, profile_id: int | None) -> Any:
    return and_(Message.direction == Direction.IN, Message.status != MessageStatus.HISTORY,
                period.has(Message.created_at), _of_profile(Message.profile_id, profile_id))


def _reply_sent(period: Period) -> Any:
    return and_(Outbox.kind == OutboxKind.REPLY, Outbox.status == OutboxStatus.SENT, period.has(Outbox.sent_at))


# ----------------------------------------------------------------------------------------- funnel
FUNNEL_STEPS: tuple[tuple[str, str], ...] = (
    ("wrote", "Contacts who wrote"), ("leads", "Classified leads"), ("answered", "Answered"),
    ("asked_call", "Asked for a call"), ("call_booked", "Call booked"))


def funnel(session: Session, period: Period, profile_id: int | None = None) -> dict[str, int]:
    """Contacts who wrote in the period, and how many of them reached each later step."""
    wrote = select(Message.contact_id).where(_inbound(period, profile_id)).distinct().subquery()
    lead = Contact.is_client.is_(True)
    answered = exists().where(Outbox.contact_id == Contact.id, _reply_sent(period))
    booked = exists().where(ScheduledCall.contact_id == Contact.id, period.has(ScheduledCall.created_at))
    requested = or_(booked, exists().where(Message.contact_id == Contact.id,
                                           period.has(Message.call_requested_at)))
    row = session.execute(select(
        func.count(), func.count().filter(lead), func.count().filter(lead & answered),
        func.count().filter(lead & answered & requested), func.count().filter(lead & answered & booked),
    ).select_from(Contact).join(wrote, wrote.c.contact_id == Contact.id)).one()
    return {key: int(value) for (key, _label), value in zip(FUNNEL_STEPS, row, strict=True)}


def median_first_reply(session: Session, period: Period, profile_id: int | None = None) -> float | None:
    """Median seconds from a contact's first message in the period to the first reply sent after it."""
    first_in = select(Message.contact_id, func.min(Message.created_at).label("first_in")).where(
        _inbound(period, profile_id)).group_by(Message.contact_id).subquery()
    first_reply = select(func.min(Outbox.sent_at)).where(
        Outbox.contact_id == first_in.c.contact_id, Outbox.kind == OutboxKind.REPLY,
        Outbox.status == OutboxStatus.SENT, Outbox.sent_at >= first_in.c.first_in).scalar_subquery()
    seconds = func.extract("epoch", first_reply - first_in.c.first_in)
    value = session.scalar(select(func.percentile_cont(0.5).within_group(seconds)).select_from(first_in))
    return None if value is None else round(float(value), 1)


# ---------------------------------------------------------------------------------- time series
def _local_bucket(unit: str, column: Any, timezone: str) -> Any:
    return func.date_trunc(unit, func.timezone(timezone, column))


def activity(session: Session, period: Period, timezone: str, unit: str,
             profile_id: int | None = None) -> dict[datetime, tuple[int, int]]:
    """Local bucket start -> (inbound messages, replies sent)."""
    bucket = _local_bucket(unit, Message.created_at, timezone)
    inbound: dict[datetime, int] = dict(session.execute(select(bucket, func.count(Message.id)).where(
        _inbound(period, profile_id)).group_by(bucket)).tuples().all())
    sent_bucket = _local_bucket(unit, Outbox.sent_at, timezone)
    replies: dict[datetime, int] = dict(session.execute(select(sent_bucket, func.count(Outbox.id)).where(
        _reply_sent(period), _of_profile(Outbox.profile_id, profile_id)).group_by(sent_bucket)).tuples().all())
    return {moment: (int(inbound.get(moment, 0)), int(replies.get(moment, 0)))
            for moment in set(inbound) | set(replies)}


# ------------------------------------------------------------------------------------ follow-ups
def _contact_of_profile(column: Any, profile_id: int | None) -> Any:
    if profile_id is None:
        return true()
    return column.in_(select(Contact.id).where(Contact.profile_id == profile_id))


def touches_sent(session: Session, period: Period, profile_id: int | None = None) -> dict[int, int]:
    """Touch number (1 = the first, at FOLLOW_UP_INTERVALS[0] hours) -> touches sent in the period."""
    step = cast(func.split_part(Outbox.idempotency_key, ":", 3), Integer)
    return {int(number): int(count) for number, count in session.execute(
        select(step, func.count(Outbox.id)).where(
            Outbox.kind == OutboxKind.FOLLOW_UP, Outbox.status == OutboxStatus.SENT, period.has(Outbox.sent_at),
            _of_profile(Outbox.profile_id, profile_id)).group_by(step)).tuples()}


def _ended(period: Period, profile_id: int | None) -> Any:
    return and_(FollowUp.status.in_((FollowUpStatus.STOPPED, FollowUpStatus.COMPLETED)),
                period.has(FollowUp.updated_at), _contact_of_profile(FollowUp.contact_id, profile_id))


def chains_stopped(session: Session, period: Period, profile_id: int | None = None) -> dict[str, int]:
    """Stop reason -> follow-up chains that ended in the period."""
    return {reason or "unknown": int(count) for reason, count in session.execute(
        select(FollowUp.stop_reason, func.count(FollowUp.id)).where(_ended(period, profile_id))
        .group_by(FollowUp.stop_reason)).tuples()}


def replies_won(session: Session, period: Period, profile_id: int | None = None) -> dict[int, int]:
    """Touches sent before the customer answered -> chains that ended so in the period."""
    return {int(number): int(count) for number, count in session.execute(
        select(FollowUp.touch_number, func.count(FollowUp.id)).where(
            _ended(period, profile_id), FollowUp.stop_reason.in_(WON), FollowUp.touch_number >= 1)
        .group_by(FollowUp.touch_number)).tuples()}


# ---------------------------------------------------------------------------------------- health
@dataclass(frozen=True)
class HealthBucket:
    start: datetime  # UTC
    queues: dict[str, int]  # the largest depth of each queue in the bucket
    held: int | None
    dead_letters: int
    waiting: int  # the most tasks waiting at once, over every queue


def health_series(session: Session, period: Period, step_seconds: int) -> list[HealthBucket]:
    """The samples of the period in buckets of `step_seconds`, each value the bucket's largest."""
    grouped: dict[datetime, list[HealthSample]] = defaultdict(list)
    for sample in session.scalars(select(HealthSample).where(period.has(HealthSample.sampled_at))
                                  .order_by(HealthSample.sampled_at)):
        offset = int((sample.sampled_at - period.start).total_seconds() // step_seconds) * step_seconds
        grouped[period.start + timedelta(seconds=offset)].append(sample)
    found = []
    for start, samples in sorted(grouped.items()):
        queues: dict[str, int] = {}
        for sample in samples:
            for queue, depth in (sample.queue_depths or {}).items():
                queues[queue] = max(queues.get(queue, 0), int(depth))
        held = [sample.held for sample in samples if sample.held is not None]
        found.append(HealthBucket(start=start, queues=queues, held=max(held) if held else None,
                                  dead_letters=max(sample.dead_letters for sample in samples),
                                  waiting=max(sum(int(depth) for depth in (sample.queue_depths or {}).values())
                                              for sample in samples)))
    return found


def dead_letters_added(session: Session, period: Period) -> int:
    return int(session.scalar(select(func.count(DeadLetter.id)).where(period.has(DeadLetter.first_failed_at))) or 0)


# -------------------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class ProfileState:
    id: int
    profile_id: str
    name: str
    provider: str
    state: str  # ok, down: <reason>, disabled, follow-ups held
    last_poll_at: datetime | None


def profile_states(session: Session, profile_id: int | None = None) -> list[ProfileState]:
    """Every profile (or the one) with its recorded state: what the poll and the send stage wrote."""
    states = []
    for profile in session.scalars(select(Profile).where(_of_profile(Profile.id, profile_id)).order_by(Profile.id)):
        if not profile.active:
            state = "disabled"
        elif profile.down_reason:
            state = f"down: {profile.down_reason}"
        elif profile.proactive_tripped_at is not None:
            state = "follow-ups held (daily cap)"
        else:
            state = "ok"
        states.append(ProfileState(id=profile.id, profile_id=profile.profile_id, name=profile.name,
                                   provider=profile.provider, state=state, last_poll_at=profile.last_poll_at))
    return states


def per_profile(session: Session, period: Period) -> dict[int, tuple[int, int]]:
    """Our profile id -> (inbound messages, replies sent) in the period."""
    inbound = dict(session.execute(select(Message.profile_id, func.count(Message.id)).where(
        _inbound(period, None)).group_by(Message.profile_id)).tuples().all())
    replies = dict(session.execute(select(Outbox.profile_id, func.count(Outbox.id)).where(
        _reply_sent(period)).group_by(Outbox.profile_id)).tuples().all())
    return {profile: (int(inbound.get(profile, 0)), int(replies.get(profile, 0)))
            for profile in set(inbound) | set(replies)}


# ----------------------------------------------------------------------------------- model usage
@dataclass(frozen=True)
class Usage:
    bucket: datetime  # local
    purpose: str
    model: str
    prompt_tokens: int
    total_tokens: int


def model_usage(session: Session, period: Period, timezone: str, unit: str,
                profile_id: int | None = None) -> list[Usage]:
    """Tokens per local bucket, purpose and model. A call with no contact (none today) counts only
    when every profile is asked for."""
    bucket = _local_bucket(unit, ModelUsage.created_at, timezone)
    return [Usage(bucket=moment, purpose=purpose, model=model, prompt_tokens=int(prompt), total_tokens=int(total))
            for moment, purpose, model, prompt, total in session.execute(
                select(bucket, ModelUsage.purpose, ModelUsage.model, func.sum(ModelUsage.prompt_tokens),
                       func.sum(func.greatest(ModelUsage.total_tokens,
                                              ModelUsage.prompt_tokens + ModelUsage.output_tokens)))
                .where(period.has(ModelUsage.created_at), _contact_of_profile(ModelUsage.contact_id, profile_id))
                .group_by(bucket, ModelUsage.purpose, ModelUsage.model)).tuples()]


def cost_of(usage: Usage, prices: dict[str, tuple[float, float]]) -> float | None:
    """Estimated USD: input tokens at the model's input price, the rest (output, thinking) at its
    output price; None when the model has no price."""
    price = prices.get(usage.model)
    if price is None:
        return None
    return (usage.prompt_tokens * price[0] + (usage.total_tokens - usage.prompt_tokens) * price[1]) / 1_000_000


# -------------------------------------------------------------------------------------- assembly
def _figure(key: str, label: str, current: float | int | None, previous: float | int | None,
            unit: str = "") -> dict[str, Any]:
    return {"key": key, "label": label, "current": current, "previous": previous, "unit": unit}


def _section(key: str, title: str, note: str, chart: dict[str, Any], columns: list[str], rows: list[list[Any]],
             figures: Iterable[dict[str, Any]] = (), empty: bool | None = None,
             figures_shown: bool = True) -> dict[str, Any]:
    """A chart and a table of the same figures; `figures` are its key numbers beside the previous
    period's (shown above the chart unless the table already holds them)."""
    values = [value for dataset in chart["datasets"] for value in dataset["data"]]
    if empty is None:
        empty = not any(value for value in values if value is not None)
    return {"key": key, "title": title, "note": note, "chart": chart, "table": {"columns": columns, "rows": rows},
            "figures": list(figures), "figures_shown": figures_shown, "empty": empty}


def _dataset(label: str, data: list[Any], kind: str = "current") -> dict[str, Any]:
    return {"label": label, "data": data, "kind": kind}


def _funnel_section(session: Session, win: Window, profile_id: int | None) -> dict[str, Any]:
    now, before = funnel(session, win.current, profile_id), funnel(session, win.previous, profile_id)
    labels = [label for _key, label in FUNNEL_STEPS]
    return _section(
        "funnel", "Who wrote, and how many became leads and calls",
        "Each step is part of the one before: of the contacts who wrote in the period.",
        {"type": "bar", "horizontal": True, "labels": labels,
         "datasets": [_dataset("This period", [now[key] for key, _ in FUNNEL_STEPS]),
                      _dataset("Previous period", [before[key] for key, _ in FUNNEL_STEPS], "previous")]},
        ["Step", "This period", "Previous period"],
        [[label, now[key], before[key]] for key, label in FUNNEL_STEPS],
        [_figure(key, label, now[key], before[key]) for key, label in FUNNEL_STEPS], figures_shown=False)


def _activity_section(session: Session, win: Window, profile_id: int | None) -> dict[str, Any]:
    now = activity(session, win.current, win.timezone, win.bucket, profile_id)
    before = activity(session, win.previous, win.timezone, win.bucket, profile_id)
    buckets, earlier = win.buckets(win.current), win.previous_buckets()
    inbound = [None if win.to_come(bucket) else now.get(bucket, (0, 0))[0] for bucket in buckets]
    replies = [None if win.to_come(bucket) else now.get(bucket, (0, 0))[1] for bucket in buckets]
    inbound_before = [before.get(bucket, (0, 0))[0] for bucket in earlier]
    replies_before = [before.get(bucket, (0, 0))[1] for bucket in earlier]
    labels = [win.label_of(bucket) for bucket in buckets]
    per = "hour" if win.bucket == "hour" else "day"
    median_now = median_first_reply(session, win.current, profile_id)
    median_before = median_first_reply(session, win.previous, profile_id)
    return _section(
        "activity", f"Inbound messages and replies per {per}",
        "The dashed lines are the previous period at the same places.",
        {"type": "line", "labels": labels,
         "datasets": [_dataset("Inbound messages", inbound), _dataset("Replies sent", replies),
                      _dataset("Inbound, previous period", inbound_before, "previous"),
                      _dataset("Replies, previous period", replies_before, "previous")]},
        [per.capitalize(), "Inbound", "Replies", "Inbound (previous)", "Replies (previous)"],
        [list(row) for row in zip(labels, inbound, replies, inbound_before, replies_before, strict=True)],
        [_figure("inbound", "Inbound messages", sum(count or 0 for count in inbound), sum(inbound_before)),
         _figure("replies", "Replies sent", sum(count or 0 for count in replies), sum(replies_before)),
         _figure("median_first_reply", "Median time to first reply", median_now, median_before, "s")])


def _follow_up_sections(session: Session, win: Window, profile_id: int | None,
                        intervals: tuple[int, ...]) -> list[dict[str, Any]]:
    sent_now, sent_before = touches_sent(session, win.current, profile_id), touches_sent(session, win.previous,
                                                                                         profile_id)
    won_now, won_before = replies_won(session, win.current, profile_id), replies_won(session, win.previous,
                                                                                    profile_id)
    steps = list(range(1, max([len(intervals), *sent_now, *sent_before, *won_now, *won_before]) + 1))
    labels = [f"{intervals[step - 1]} h" if step <= len(intervals) else f"touch {step}" for step in steps]
    touches = _section(
        "follow_ups", "Follow-up touches by step, and the replies they won",
        "A reply won: the customer wrote back after that many touches, which ended the chain.",
        {"type": "bar", "labels": labels,
         "datasets": [_dataset("Touches sent", [sent_now.get(step, 0) for step in steps]),
                      _dataset("Touches sent, previous", [sent_before.get(step, 0) for step in steps], "previous"),
                      _dataset("Replies won", [won_now.get(step, 0) for step in steps]),
                      _dataset("Replies won, previous", [won_before.get(step, 0) for step in steps], "previous")]},
        ["Step", "Touches sent", "Touches (previous)", "Replies won", "Replies won (previous)"],
        [[label, sent_now.get(step, 0), sent_before.get(step, 0), won_now.get(step, 0), won_before.get(step, 0)]
         for step, label in zip(steps, labels, strict=True)],
        [_figure("touches", "Follow-up touches sent", sum(sent_now.values()), sum(sent_before.values())),
         _figure("replies_won", "Replies won by follow-ups", sum(won_now.values()), sum(won_before.values()))])
    stopped_now = chains_stopped(session, win.current, profile_id)
    stopped_before = chains_stopped(session, win.previous, profile_id)
    reasons = [reason for reason in [*STOP_LABELS, "unknown"] if reason in stopped_now or reason in stopped_before]
    reason_labels = [STOP_LABELS.get(reason, reason) for reason in reasons]
    stops = _section(
        "stops", "Follow-up chains stopped, by reason", "Chains that ended in the period.",
        {"type": "bar", "horizontal": True, "labels": reason_labels,
         "datasets": [_dataset("This period", [stopped_now.get(reason, 0) for reason in reasons]),
                      _dataset("Previous period", [stopped_before.get(reason, 0) for reason in reasons], "previous")]},
        ["Reason", "This period", "Previous period"],
        [[label, stopped_now.get(reason, 0), stopped_before.get(reason, 0)]
         for reason, label in zip(reasons, reason_labels, strict=True)],
        [_figure("chains_stopped", "Chains stopped", sum(stopped_now.values()), sum(stopped_before.values()))])
    return [touches, stops]


def _health_section(session: Session, win: Window, queues: tuple[str, ...]) -> dict[str, Any]:
    zone = ZoneInfo(win.timezone)
    series = health_series(session, win.current, win.health_step)
    before = health_series(session, win.previous, win.health_step)
    by_start = {bucket.start: bucket for bucket in series}
    starts: list[datetime] = []
    moment = win.current.start
    while moment < win.current.end:
        starts.append(moment)
        moment += timedelta(seconds=win.health_step)
    label_format = "%H:%M" if win.name == "today" else "%d %b %H:%M"
    labels = [start.astimezone(zone).strftime(label_format) for start in starts]
    known = [*queues, *sorted({queue for bucket in series for queue in bucket.queues} - set(queues))]

    def values(pick: Callable[[HealthBucket], int | None]) -> list[int | None]:
        return [pick(by_start[start]) if start in by_start else None for start in starts]

    def depth_of(queue: str) -> Callable[[HealthBucket], int | None]:
        return lambda bucket: bucket.queues.get(queue, 0)

    datasets = [_dataset(f"queue {queue}", values(depth_of(queue))) for queue in known]
    datasets.append(_dataset("held by workers", values(lambda bucket: bucket.held)))
    datasets.append(_dataset("dead letters", values(lambda bucket: bucket.dead_letters)))
    rows = [[bucket.start.astimezone(zone).strftime(label_format), *[bucket.queues.get(queue, 0) for queue in known],
             bucket.held, bucket.dead_letters] for bucket in series]

    def peak(buckets: list[HealthBucket]) -> int | None:
        return max((bucket.waiting for bucket in buckets), default=None)

    return _section(
        "health", "Health over time: queue depth and dead letters",
        "Sampled every 30 s by beat and kept 14 days; each point is its bucket's largest value, for the "
        "whole worker pool (every profile). A gap: no sample (beat or the workers were down).",
        {"type": "line", "labels": labels, "datasets": datasets},
        ["Time", *[f"queue {queue}" for queue in known], "held by workers", "dead letters"], rows,
        [_figure("peak_waiting", "Most tasks waiting at once", peak(series), peak(before)),
         _figure("dead_letters_added", "Dead letters added", dead_letters_added(session, win.current),
                 dead_letters_added(session, win.previous))],
        empty=not series)


def _profiles_section(session: Session, win: Window, profile_id: int | None) -> dict[str, Any]:
    zone = ZoneInfo(win.timezone)
    states = profile_states(session, profile_id)
    now, before = per_profile(session, win.current), per_profile(session, win.previous)
    labels = [state.name or state.profile_id for state in states]

    def polled(state: ProfileState) -> str:
        return state.last_poll_at.astimezone(zone).strftime("%d %b %H:%M:%S") if state.last_poll_at else "never"

    return _section(
        "profiles", "Profiles and their state",
        "State as the poll and the send stage last recorded it; messages of the period.",
        {"type": "bar", "labels": labels,
         "datasets": [_dataset("Inbound messages", [now.get(state.id, (0, 0))[0] for state in states]),
                      _dataset("Inbound, previous", [before.get(state.id, (0, 0))[0] for state in states],
                               "previous"),
                      _dataset("Replies sent", [now.get(state.id, (0, 0))[1] for state in states]),
                      _dataset("Replies, previous", [before.get(state.id, (0, 0))[1] for state in states],
                               "previous")]},
        ["Profile", "Name", "Kind", "State", "Last poll", "Inbound", "Inbound (previous)", "Replies",
         "Replies (previous)"],
        [[state.profile_id, state.name, state.provider, state.state, polled(state),
          now.get(state.id, (0, 0))[0], before.get(state.id, (0, 0))[0],
          now.get(state.id, (0, 0))[1], before.get(state.id, (0, 0))[1]] for state in states],
        [_figure("profiles_down", "Profiles not ok", sum(state.state != "ok" for state in states), None)],
        empty=not states)


def _usage_section(session: Session, win: Window, profile_id: int | None,
                   prices: dict[str, tuple[float, float]]) -> dict[str, Any]:
    buckets = win.buckets(win.current)
    usage = model_usage(session, win.current, win.timezone, win.bucket, profile_id)
    before = model_usage(session, win.previous, win.timezone, win.bucket, profile_id)
    tokens: dict[tuple[datetime, str], int] = defaultdict(int)
    cost: dict[datetime, float] = defaultdict(float)
    for row in usage:
        tokens[row.bucket, row.purpose] += row.total_tokens
        cost[row.bucket] += cost_of(row, prices) or 0.0
    labels = [win.label_of(bucket) for bucket in buckets]
    per = "hour" if win.bucket == "hour" else "day"

    def total_cost(rows: list[Usage]) -> float:
        return round(sum(cost_of(row, prices) or 0.0 for row in rows), 4)

    def unpriced(rows: list[Usage]) -> int:
        return sum(row.total_tokens for row in rows if cost_of(row, prices) is None)

    return _section(
        "model_usage", f"Model tokens per {per}, by purpose",
        "The cost is an estimate from MODEL_PRICES (USD per million tokens); tokens of a model with no "
        "price are counted as unpriced.",
        {"type": "bar", "stacked": True, "labels": labels,
         "datasets": [_dataset(label, [None if win.to_come(bucket) else tokens.get((bucket, purpose), 0)
                                       for bucket in buckets]) for purpose, label in PURPOSES]},
        [per.capitalize(), *[label for _purpose, label in PURPOSES], "Estimated cost (USD)"],
        [[label, *[None if win.to_come(bucket) else tokens.get((bucket, purpose), 0) for purpose, _ in PURPOSES],
          None if win.to_come(bucket) else round(cost.get(bucket, 0.0), 4)]
         for bucket, label in zip(buckets, labels, strict=True)],
        [_figure("tokens", "Model tokens", sum(row.total_tokens for row in usage),
                 sum(row.total_tokens for row in before)),
         _figure("cost", "Estimated model cost", total_cost(usage), total_cost(before), "USD"),
         _figure("unpriced_tokens", "Tokens of unpriced models", unpriced(usage), unpriced(before))])


SUMMARY: tuple[tuple[str, str], ...] = (
    ("funnel", "wrote"), ("funnel", "leads"), ("funnel", "answered"), ("funnel", "call_booked"),
    ("activity", "median_first_reply"), ("follow_ups", "replies_won"), ("health", "dead_letters_added"),
    ("model_usage", "cost"))


def dashboard_data(session: Session, now: datetime, *, period: str, timezone: str, profile_id: int | None,
                   profile_key: str, queues: tuple[str, ...], intervals: tuple[int, ...],
                   prices: tuple[tuple[str, float, float], ...]) -> dict[str, Any]:
    """Everything the page shows, for the period `period` (PERIODS) and the one before it, of the
    profile `profile_id` (our id; `profile_key` is its provider id, "all" for every profile)."""
    win = window(period, now, timezone)
    price_list = {model: (input_price, output_price) for model, input_price, output_price in prices}
    sections = [_funnel_section(session, win, profile_id), _activity_section(session, win, profile_id),
                *_follow_up_sections(session, win, profile_id, intervals), _health_section(session, win, queues),
                _profiles_section(session, win, profile_id), _usage_section(session, win, profile_id, price_list)]
    figures = {(section["key"], figure["key"]): figure for section in sections for figure in section["figures"]}
    return {
        "generated_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "filter": {"profile": profile_key, "period": period},
        "period": {"name": period, "label": win.label, "timezone": timezone, "bucket": win.bucket,
                   "current": {"start": win.current.start.isoformat(), "end": win.current.end.isoformat()},
                   "previous": {"start": win.previous.start.isoformat(), "end": win.previous.end.isoformat()}},
        "summary": [figures[item] for item in SUMMARY],
        "sections": sections,
    }
