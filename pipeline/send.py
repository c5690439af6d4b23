"""Stage `send`: deliver one outbox row through Wappi, exactly once, within the global send limit.

A row moves pending -> sending -> sent (domain.states.OUTBOX_TRANSITIONS). Everything that makes a
row wait is a deferral (a countdown retry that costs no attempt) recorded on the row as
`next_attempt_at`, so the recovery sweep knows the row is held: the send limit, the chat gap, an
older row of the same chat, the settle delay of an unclear send, an offline profile.

A row found in `sending` means an earlier attempt may have reached Wappi without us learning the
outcome (a timeout, a 5xx after Wappi accepted it, a killed worker). Wappi can show an accepted
message in the chat history seconds later, so the row is not sent again at once: the history is
checked after a settle delay (`RECONCILE_SETTLE`) and once more later (`RECONCILE_RECHECK`), both
counted from the last send call; only when neither check finds our copy is it sent again.

Our copy is recognised on Wappi's own clock and ids: a message from us with the same text, at or
after the row's `history_anchor` (the newest Wappi time we knew of in that chat before the first
send), that no other outbox row has already claimed. An older identical text (the same fallback,
the same follow-up wording) is therefore never taken for this one.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, cast

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, aliased

from clients.channel import (
    Channel,
    ChannelAuthError,
    ChannelNotFoundError,
    ChannelRateLimitedError,
    ChannelRejectedError,
    ChannelTransientError,
    RecipientUnreachableError,
    SendResult,
)
from db.models import Contact, FollowUp, Message, Outbox, Profile, utcnow
from db.session import SessionFactory, execute_core, insert_ignore
from domain.sending import TELEGRAM_BOT_PER_MINUTE, TELEGRAM_CHAT_GAP, day_start, warmup_rate
from domain.states import (
    OUTBOX_UNSENT,
    Author,
    Direction,
    FollowUpStatus,
    MessageStatus,
    OutboxKind,
    OutboxStatus,
    Provider,
    StopReason,
)
from infra.ratelimit import TokenBucket
from infra.redis import get_redis, key
from pipeline.contacts import note_bot_message
from pipeline.inbound import NEWEST_IN_CHAT
from pipeline.locks import Defer, lock_seconds
from pipeline.outbox import follow_up_chain_of
from pipeline.profile_settings import settings_for
from pipeline.profiles import down_reason, mark_profile, refusal_reason
from settings import Settings

log = logging.getLogger(__name__)

SEND_LOCK_SECONDS = lock_seconds("pipeline.send")
ORDER_WAIT = 2.0  # seconds before looking again when an older row of the chat is still unsent
YIELD_WAIT = 15.0  # at least this long a follow-up touch waits while replies to customers are queued
PROACTIVE_HOLD = 600.0  # a proactive message held by the daily cap looks again this often (s)
# Messages we start rather than answer: the daily cap counts them (replies to customers are not capped).
PROACTIVE_KINDS = frozenset({OutboxKind.FOLLOW_UP, OutboxKind.MCP})


def yield_wait() -> float:
    """A touch behind customer replies looks again after 15-30 s: the replies need the send limit
    for a while, and jitter keeps many waiting touches from waking together."""
    return YIELD_WAIT + random.uniform(0, YIELD_WAIT)


class NeverWrote(Exception):
    """The row is to a chat that never wrote to its profile: refused (a dead letter), never sent."""


class HeldTooLong(Exception):
    """A reply waited longer than HOLD_MAX_AGE for its profile to come back: not sent (a dead letter)."""


RECONCILE_DEPTH = 50  # newest history entries searched for our copy


@dataclass(frozen=True)
class Claim:
    outbox_id: int
    body: str
    chat_id: str
    phone: str
    reply_to: str | None
    anchor: int | None  # Wappi unix time: a delivered copy is at or after it


@dataclass(frozen=True)
class Wait:
    """Not yet: look again after `seconds`."""

    seconds: float
    reason: str


def history_anchor(session: Session, contact_id: int) -> int | None:
    """The newest Wappi time known in the chat (every stored message time is Wappi's)."""
    newest = execute_core(session, NEWEST_IN_CHAT, {"chat_contact": contact_id}).scalar()
    return int(newest.timestamp()) if newest is not None else None


def claim(session: Session, outbox_id: int, now: datetime) -> Claim | None:
    """Take the row for a send call. None if it is already sent, failed for good, or missing."""
    row = session.get(Outbox, outbox_id, with_for_update=True)
    if row is None:
        log.warning("send: outbox row %s does not exist", outbox_id)
        return None
    return claim_row(session, row, now)


# Built once (a statement built per call costs more Python than its round trip). The row's object in
# the session keeps its old status: nothing reads it after the claim.
CLAIM = update(Outbox).where(Outbox.id == bindparam("claimed_row")).values(
    status=OutboxStatus.SENDING, attempts=Outbox.attempts + 1, history_anchor=bindparam("anchor"),
    last_send_at=bindparam("now"), next_attempt_at=None, updated_at=bindparam("now"))


def claim_row(session: Session, row: Outbox, now: datetime, anchor: int | None = None) -> Claim | None:
    """`claim` for a row this transaction has locked (SELECT … FOR UPDATE). `anchor`: the chat's
    newest Wappi time when the caller read it already."""
    if row.status not in OUTBOX_UNSENT:
        return None
    if row.history_anchor is not None:  # fixed before the first send call, never moved after it
        anchor = row.history_anchor
    elif anchor is None:
        anchor = history_anchor(session, row.contact_id)
    execute_core(session, CLAIM, {"claimed_row": row.id, "anchor": anchor, "now": now})
    contact = session.get(Contact, row.contact_id)
    assert contact is not None
    return Claim(outbox_id=row.id, body=row.body, chat_id=contact.chat_id, phone=contact.phone,
                 reply_to=row.reply_to_provider_id, anchor=anchor)


def unclear_claim(session: Session, outbox_id: int) -> tuple[Claim, datetime] | None:
    """A row whose last send call has an unknown outcome, and when that call was made."""
    row = session.get(Outbox, outbox_id)
    if row is None or row.status != OutboxStatus.SENDING:
        return None
    contact = session.get(Contact, row.contact_id)
    assert contact is not None
    item = Claim(outbox_id=row.id, body=row.body, chat_id=contact.chat_id, phone=contact.phone,
                 reply_to=row.reply_to_provider_id, anchor=row.history_anchor)
    return item, row.last_send_at or row.updated_at


def claimed_elsewhere(session: Session, outbox_id: int, provider_ids: Iterable[str]) -> set[str]:
    """Which of these Wappi message ids another outbox row already stands for."""
    ids = list(provider_ids)
    if not ids:
        return set()
    return set(session.scalars(select(Outbox.provider_message_id).where(
        Outbox.provider_message_id.in_(ids), Outbox.id != outbox_id)))


def find_delivered(wappi: Channel, item: Claim,
                   taken: Callable[[list[str]], set[str]]) -> SendResult | None:
    """Our earlier copy of this row in the chat history, if Wappi shows it."""
    body = item.body.strip()
    candidates = [message for message in wappi.get_messages(item.chat_id, limit=RECONCILE_DEPTH)
                  if message.from_me and message.text.strip() == body
                  and (item.anchor is None or message.time >= item.anchor)]
    if not candidates:
        return None
    others = taken([message.id for message in candidates])
    for message in reversed(candidates):  # the oldest unclaimed copy after the anchor is ours
        if message.id not in others:
            return SendResult(message_id=message.id, task_id="", time=message.time)
    return None


def reconcile(wappi: Channel, item: Claim, last_send_at: datetime, now: datetime, *,
              settle: float, recheck: float,
              taken: Callable[[list[str]], set[str]]) -> SendResult | Wait | None:
    """The outcome of an unclear send: delivered (SendResult), not yet known (Wait), or not
    delivered (None: send again). Checks at `settle` and `recheck` seconds after the send call."""
    elapsed = (now - last_send_at).total_seconds()
    if elapsed < settle:
        return Wait(settle - elapsed, "waiting for the chat history to settle")
    found = find_delivered(wappi, item, taken)
    if found is not None:
        return found
    if elapsed < recheck:
        return Wait(recheck - elapsed, "not in the history yet; one more look before sending again")
    return None


def deliver(wappi: Channel, item: Claim) -> SendResult:
    if item.reply_to:
        try:
            return wappi.reply(item.reply_to, item.body)
        except ChannelNotFoundError:
            log.info("send: quoted message of outbox %s is gone; sending without a quote", item.outbox_id)
    return wappi.send_message(item.phone, item.body)


def note_unclear(session: Session, outbox_id: int, now: datetime) -> None:
    """A send call ended without an answer: the settle delay counts from its end."""
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status == OutboxStatus.SENDING).values(
        last_send_at=now, updated_at=now))


def note_not_sent(session: Session, outbox_id: int, now: datetime) -> None:
    """Wappi refused the call outright (a 4xx, an offline profile): nothing went out, so nothing
    needs reconciling, now or after a replay."""
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status == OutboxStatus.SENDING).values(
        status=OutboxStatus.PENDING, last_send_at=None, updated_at=now))


def note_deferred(session: Session, outbox_id: int, due: datetime) -> None:
    """Something holds this row until `due`; the recovery sweep leaves it alone until then."""
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status.in_(OUTBOX_UNSENT))
                    .values(next_attempt_at=due))


@dataclass(frozen=True)
class ChatFacts:
    """What the send stage asks about the chat (read with the row: `ROW_TO_SEND`)."""

    wrote: bool  # the chat ever wrote to its profile (`never_wrote` is its negation)
    older_unsent: bool  # an older row of the chat is unsent: it goes first, so a chat reads in order
    anchor: int | None  # `history_anchor`


def replies_waiting(session: Session, profile_id: int, contact_id: int) -> bool:
    """A message to a customer (not a follow-up touch) of this profile waits to be sent. Another
    chat's only: in its own chat the older row goes first (`ChatFacts.older_unsent`)."""
    return session.scalar(select(Outbox.id).where(
        Outbox.profile_id == profile_id, Outbox.contact_id != contact_id, Outbox.kind != OutboxKind.FOLLOW_UP,
        Outbox.status == OutboxStatus.PENDING).limit(1)) is not None


def stale_touch_reason(session: Session, row: Outbox, now: datetime) -> StopReason | None:
    """Why a follow-up touch written earlier must not go out now, or None."""
    if row.kind != OutboxKind.FOLLOW_UP:
        return None
    contact = session.get(Contact, row.contact_id)
    assert contact is not None
    if contact.opted_out:
        return StopReason.OPTED_OUT
    if (contact.paused_until is not None and contact.paused_until > now) or contact.last_author == Author.PHONE:
        return StopReason.HUMAN_REPLIED
    if contact.last_author == Author.CUSTOMER:  # a touch follows up our message, never the customer's
        return StopReason.CLIENT_RESPONDED
    if contact.unreachable_at is not None:
        return StopReason.UNREACHABLE
    return None


def never_wrote(session: Session, contact_id: int) -> bool:
    """The chat never wrote to this profile: the pipeline only answers, and writing first to a
    stranger is what gets a number banned. Every send checks it, whatever wrote the row."""
    return session.scalar(select(Message.id).where(Message.contact_id == contact_id,
                                                   Message.direction == Direction.IN).limit(1)) is None


def settle_unreachable(session: Session, outbox_id: int, reason: str, now: datetime) -> None:
    """The customer cannot be reached (blocked the bot, deleted the account): the row settles as
    cancelled, the contact is marked so nothing is sent to them again, and their follow-ups stop."""
    row = session.get(Outbox, outbox_id)
    assert row is not None
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status.in_(OUTBOX_UNSENT)).values(
        status=OutboxStatus.CANCELLED, error=f"not sent: {reason}"[:2000], next_attempt_at=None, updated_at=now))
    contact = session.get(Contact, row.contact_id, with_for_update=True)
    assert contact is not None
    if contact.unreachable_at is None:
        contact.unreachable_at = now
        contact.unreachable_reason = reason[:200]
        log.warning("send: contact %s cannot be reached (%s): nothing is sent to them again", contact.id, reason)
    contact.awaiting_follow_up = False
    session.execute(update(FollowUp).where(FollowUp.contact_id == contact.id, FollowUp.status == FollowUpStatus.ACTIVE)
                    .values(status=FollowUpStatus.STOPPED, stop_reason=StopReason.UNREACHABLE, next_touch_at=None))


def proactive_sent_today(session: Session, profile_id: int, since: datetime, *, besides: int) -> int:
    """Proactive messages of the profile that went out (or may have) since `since`."""
    return int(session.scalar(select(func.count(Outbox.id)).where(
        Outbox.profile_id == profile_id, Outbox.kind.in_(PROACTIVE_KINDS), Outbox.id != besides,
        Outbox.status.in_((OutboxStatus.SENDING, OutboxStatus.SENT)), Outbox.last_send_at >= since)) or 0)


def take_proactive_slot(session: Session, profile_id: int, outbox_id: int, now: datetime, *, cap: int,
                        timezone: str) -> bool:
    """Whether a proactive message may go out now under the daily cap. The profile row is locked, so
    concurrent senders count one after another. Reaching the cap trips it: it stays tripped (every
    proactive message held) until an operator resumes, and /health says so."""
    profile = session.get(Profile, profile_id, with_for_update=True)
    assert profile is not None
    if profile.proactive_tripped_at is not None:
        return False
    sent = proactive_sent_today(session, profile_id, day_start(now, timezone), besides=outbox_id)
    if sent < cap:
        return True
    profile.proactive_tripped_at = now
    log.error("profile %s reached its daily cap of %d proactive messages: follow-ups are held until an operator "
              "resumes them (celery -A tasks profiles resume-proactive %s)",
              profile.profile_id, cap, profile.profile_id)
    return False


def cancel_touch(session: Session, row: Outbox, reason: StopReason) -> None:
    """The touch is not sent, and its chain stops with the reason."""
    session.execute(update(Outbox).where(Outbox.id == row.id, Outbox.status == OutboxStatus.PENDING).values(
        status=OutboxStatus.CANCELLED, error=f"not sent: {reason}", updated_at=utcnow()))
    chain_id = follow_up_chain_of(row.idempotency_key)
    if chain_id is not None:
        session.execute(update(FollowUp).where(FollowUp.id == chain_id, FollowUp.status == FollowUpStatus.ACTIVE)
                        .values(status=FollowUpStatus.STOPPED, stop_reason=reason, next_touch_at=None))
    log.info("send: follow-up outbox %s cancelled at send time: %s", row.id, reason)


MARK_SENT = update(Outbox).where(Outbox.id == bindparam("sent_row")).values(
    status=OutboxStatus.SENT, provider_message_id=bindparam("provider_id"), sent_at=bindparam("now"), error=None,
    next_attempt_at=None, updated_at=bindparam("now")).returning(
    Outbox.profile_id, Outbox.contact_id, Outbox.body, Outbox.kind)


def mark_sent(session: Session, outbox_id: int, result: SendResult) -> None:
    now = datetime.now(UTC)
    # Wappi's clock, like the customer messages' times, so the conversation sorts right.
    sent_at = datetime.fromtimestamp(result.time, UTC) if result.time else now
    row = execute_core(session, MARK_SENT, {"sent_row": outbox_id, "provider_id": result.message_id,
                                            "now": now}).one()
    # The poll may have stored our message already (it sees it in the chat): that row stays.
    insert_ignore(session, Message, {
        "profile_id": row.profile_id, "contact_id": row.contact_id,
        "provider_message_id": result.message_id, "direction": Direction.OUT, "author": Author.BOT,
        "type": "chat", "text": row.body, "status": MessageStatus.SENT, "sent_at": sent_at,
    }, ["profile_id", "provider_message_id"])
    # A reply that is the chat's newest message starts the silence the follow-up sweep watches.
    note_bot_message(session, row.contact_id, sent_at, starts_silence=row.kind == OutboxKind.REPLY)


def mark_failed(session: Session, outbox_id: int, error: str) -> None:
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status.in_(OUTBOX_UNSENT)).values(
        status=OutboxStatus.FAILED, error=error[:2000], next_attempt_at=None, updated_at=utcnow()))


def reset_for_replay(session: Session, outbox_id: int) -> None:
    """A failed row whose last send call had an unknown outcome goes back to `sending`, so the
    replayed send reconciles before sending; one Wappi refused (or never sent) to `pending`."""
    row = session.get(Outbox, outbox_id)
    if row is None or row.status != OutboxStatus.FAILED:
        return
    row.status = OutboxStatus.SENDING if row.last_send_at is not None else OutboxStatus.PENDING
    row.error = None
    row.updated_at = utcnow()


# -- one run of the stage ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Run:
    """One run of `send` for one row: where its transactions come from, and the settings."""

    sessions: SessionFactory
    settings: Settings
    outbox_id: int

    def defer(self, reason: str, countdown: float) -> NoReturn:
        """Defer the task and write down when the row is due, for the recovery sweep."""
        with self.sessions() as session:
            note_deferred(session, self.outbox_id, datetime.now(UTC) + timedelta(seconds=countdown))
        raise Defer(reason, countdown=countdown)

    def wait_for_limits(self, profile_id: str, contact_id: int, *, per_minute: int, bot: bool) -> None:
        """Defer while the chat's gap or the profile's send limit (`per_minute`, warmed up) says "not
        yet"."""
        hold = self.limits_hold(profile_id, contact_id, per_minute=per_minute, bot=bot)
        if hold is not None:
            self.defer(*hold)

    def limits_hold(self, profile_id: str, contact_id: int, *, per_minute: int, bot: bool) -> tuple[str, float] | None:
        """Take the send's place under the chat's gap and the profile's send limit (`per_minute`,
        warmed up), or say why not yet and for how long. A bot keeps within Telegram's limits too:
        1 message a second a chat, 30 a second."""
        settings = self.settings
        least_gap = max(settings.send_chat_gap_min, TELEGRAM_CHAT_GAP) if bot else settings.send_chat_gap_min
        if bot:
            per_minute = min(per_minute, TELEGRAM_BOT_PER_MINUTE)
        # A warming number sends no bursts either: at most a minute's worth at once.
        burst = min(settings.send_burst, per_minute) if per_minute < settings.send_rate_per_minute \
            else settings.send_burst
        bucket = TokenBucket(get_redis(), key("send-bucket", profile_id), per_minute=per_minute, burst=burst)
        # One round trip: the chat's gap is reserved first, then a token taken.
        decision = bucket.take(key("chat-gap", profile_id, contact_id), min_gap=least_gap,
                               max_gap=max(settings.send_chat_gap_max, least_gap))
        if decision.chat_gap > 0:
            return f"chat {contact_id} got a message moments ago", decision.chat_gap
        if not decision.allowed:
            return f"profile {profile_id} is at its send limit", decision.retry_after + random.uniform(0, 0.5)
        return None

    def wait_while_down(self, wappi: Channel, created_at: datetime, reason: str) -> None:
        """Hold the row while its profile is down; return when it is back. One status check per
        interval for the whole profile, however many rows are held."""
        settings = self.settings
        now = datetime.now(UTC)
        age = (now - created_at).total_seconds()
        if age > settings.hold_max_age:
            raise HeldTooLong(f"held {age / 60:.0f} min while profile {wappi.profile_id} could not send "
                              f"({reason}); older than HOLD_MAX_AGE ({settings.hold_max_age:.0f} s), not sent")
        interval = max(settings.hold_check_interval, 0.5)
        if get_redis().set(key("profile-check", wappi.profile_id), "1", nx=True, px=int(interval * 1000)):
            current = profile_reason(wappi)
            with self.sessions() as session:
                mark_profile(session, wappi.profile_id, current, now)
            if current is None:
                return
            reason = current
        self.defer(f"profile {wappi.profile_id} cannot send ({reason}); held", interval)

    def taken(self, provider_ids: list[str]) -> set[str]:
        with self.sessions() as session:
            return claimed_elsewhere(session, self.outbox_id, provider_ids)

    def finish(self, result: SendResult) -> int:
        with self.sessions() as session:
            mark_sent(session, self.outbox_id, result)
        return self.outbox_id


def profile_reason(wappi: Channel, error: ChannelAuthError | None = None) -> str | None:
    """Ask the provider why the profile cannot send; None when it can. A failed check keeps it down."""
    try:
        return down_reason(wappi.get_status())
    except ChannelAuthError as exc:
        return refusal_reason(getattr(exc, "status_code", None))
    except ChannelTransientError:
        if error is not None:
            return refusal_reason(getattr(error, "status_code", None))
        raise


_older = aliased(Outbox)
# The row (locked: the send stage is its one writer while it runs), its profile and its contact, in
# one round trip. Built once: a statement built per call costs more Python than its round trip.
# The chat's facts (`ChatFacts`) come as three more columns: the send stage is the only writer of
# the row while it runs, so a snapshot taken as the statement starts is as good as one after the lock.
ROW_TO_SEND = (select(Outbox, Profile, Contact, *(
    fact.correlate(Outbox) for fact in (
        select(Message.id).where(Message.contact_id == Outbox.contact_id, Message.direction == Direction.IN)
        .exists(),
        select(_older.id).where(_older.contact_id == Outbox.contact_id, _older.id < Outbox.id,
                                _older.status.in_(OUTBOX_UNSENT)).exists(),
        select(func.max(Message.sent_at)).where(Message.contact_id == Outbox.contact_id).scalar_subquery(),
    ))).join(Profile, Profile.id == Outbox.profile_id)
    .join(Contact, Contact.id == Outbox.contact_id).where(Outbox.id == bindparam("outbox_id"))
    .with_for_update(of=Outbox))


def run_send(sessions: SessionFactory, outbox_id: int, settings: Settings,
             wappi_for: Callable[[str], Channel]) -> int | None:
    """Deliver the row, or Defer while something holds it. Returns the id once sent, None when there
    is nothing to send (sent already, cancelled, failed for good). The caller holds the row's lock.

    The usual case (a pending reply, its profile up, nothing older in the chat) reads, takes its
    place under the send limits and claims the row in one transaction; anything that may hold the
    row (an unclear earlier send, a profile that is down, the proactive cap, a touch giving way)
    goes the long way, one step after the other."""
    now = datetime.now(UTC)
    hold: tuple[str, float] | None = None
    claimed: Claim | None = None
    wappi: Channel | None = None
    with sessions() as session:
        loaded = session.execute(ROW_TO_SEND, {"outbox_id": outbox_id}).first()
        if loaded is None or loaded[0].status not in OUTBOX_UNSENT:
            return None
        row, profile, contact = loaded[0], loaded[1], loaded[2]
        newest = cast(datetime | None, loaded[5])  # the chat's newest Wappi time
        facts = ChatFacts(wrote=bool(loaded[3]), older_unsent=bool(loaded[4]),
                          anchor=int(newest.timestamp()) if newest is not None else None)
        if row.status == OutboxStatus.PENDING and (stale := stale_touch_reason(session, row, now)) is not None:
            cancel_touch(session, row, stale)
            return None
        if contact.unreachable_at is not None:
            settle_unreachable(session, outbox_id, contact.unreachable_reason or "the customer cannot be reached", now)
            return None
        settings = settings_for(profile, settings)
        provider_profile, contact_id, created_at = profile.profile_id, contact.id, row.created_at
        profile_db_id, proactive = profile.id, row.kind in PROACTIVE_KINDS
        bot = profile.provider == Provider.TELEGRAM_BOT
        per_minute, _day = warmup_rate(settings.send_rate_per_minute, settings.warmup_schedule,
                                       profile.warmup_from, now)
        held_for = profile.down_reason
        # Replies go before touches; the send limit is shared, so a touch gives way to them.
        yields = row.kind == OutboxKind.FOLLOW_UP and row.status == OutboxStatus.PENDING \
            and replies_waiting(session, profile.id, contact_id)
        # An earlier send call may have reached Wappi; read here, in this transaction (the row is
        # locked, so its state cannot change before we look).
        unclear = unclear_claim(session, outbox_id)
        run = _Run(sessions, settings, outbox_id)
        usual = facts.wrote and not facts.older_unsent and not yields and held_for is None and unclear is None \
            and not proactive
        if usual:
            # The channel first: a client that cannot be built (a token that cannot be opened, the
            # database blinking) leaves the row pending, not claimed for a send that never happened.
            wappi = wappi_for(provider_profile)
            hold = run.limits_hold(provider_profile, contact_id, per_minute=per_minute, bot=bot)
            if hold is None:
                claimed = claim_row(session, row, datetime.now(UTC), anchor=facts.anchor)
            else:
                note_deferred(session, outbox_id, datetime.now(UTC) + timedelta(seconds=hold[1]))
    if hold is not None:
        raise Defer(*hold)
    if not facts.wrote:
        raise NeverWrote(f"outbox {outbox_id}: chat {contact_id} never wrote to profile {provider_profile}; "
                         "the pipeline only answers (writing first to strangers gets numbers banned)")
    if wappi is None:
        wappi = wappi_for(provider_profile)
    if not usual:
        if facts.older_unsent:
            run.defer(f"an older message to chat {contact_id} goes first", ORDER_WAIT)
        if yields:
            run.defer("replies to customers are waiting; the touch goes after them", yield_wait())
        if held_for is not None:
            run.wait_while_down(wappi, created_at, held_for)

        # An earlier send call may have reached Wappi: look before sending again.
        if unclear is not None:
            item, last_send_at = unclear
            outcome = reconcile(wappi, item, last_send_at, datetime.now(UTC), settle=settings.reconcile_settle,
                                recheck=settings.reconcile_recheck, taken=run.taken)
            if isinstance(outcome, SendResult):
                log.info("send: outbox %s was already delivered as %s; not sending again",
                         outbox_id, outcome.message_id)
                return run.finish(outcome)
            if isinstance(outcome, Wait):
                run.defer(f"outbox {outbox_id}: {outcome.reason}", outcome.seconds + random.uniform(0, 0.5))

        run.wait_for_limits(provider_profile, contact_id, per_minute=per_minute, bot=bot)
        capped = False
        with sessions() as session:
            if proactive and not take_proactive_slot(session, profile_db_id, outbox_id, datetime.now(UTC),
                                                     cap=settings.proactive_daily_cap, timezone=settings.timezone):
                capped = True
            else:
                claimed = claim(session, outbox_id, datetime.now(UTC))
        if capped:
            run.defer(f"profile {provider_profile}: proactive messages are held (daily cap)", PROACTIVE_HOLD)
    if claimed is None:
        return None
    try:
        result = deliver(wappi, claimed)
    except ChannelRateLimitedError as exc:
        # Refused for flooding: nothing went out; try again once the service allows.
        with sessions() as session:
            note_not_sent(session, outbox_id, datetime.now(UTC))
        run.defer(f"profile {provider_profile} is rate-limited by the provider",
                  (exc.retry_after or 1.0) + random.uniform(0, 0.5))
    except ChannelTransientError:
        # The provider may have sent it: the row stays `sending`, and the next attempt reconciles
        # after the settle delay, counted from now.
        with sessions() as session:
            note_unclear(session, outbox_id, datetime.now(UTC))
        raise
    except RecipientUnreachableError as exc:
        with sessions() as session:  # blocked: never retried, never sent to again
            settle_unreachable(session, outbox_id, str(exc)[:200], datetime.now(UTC))
        return None
    except ChannelRejectedError:
        with sessions() as session:  # a definite no: nothing to reconcile, even after a replay
            note_not_sent(session, outbox_id, datetime.now(UTC))
        raise
    except ChannelAuthError as exc:
        reason = profile_reason(wappi, exc) or "not authorized"
        with sessions() as session:
            note_not_sent(session, outbox_id, datetime.now(UTC))
            mark_profile(session, provider_profile, reason, datetime.now(UTC))
        run.defer(f"profile {provider_profile} cannot send ({reason}); held", max(settings.hold_check_interval, 0.5))
    return run.finish(result)
