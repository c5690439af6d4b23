"""Delivery: move one outbox row pending -> sending -> sent, and never send it twice.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from clients.wappi import ProfileStatus, SendResult, WappiClient, WappiNotFoundError
from db.models import Contact, FollowUp, Message, Outbox, Profile, utcnow
from db.session import insert_ignore
from pipeline.contacts import note_message

log = logging.getLogger(__name__)

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
    newest = session.scalar(select(func.max(Message.sent_at)).where(Message.contact_id == contact_id))
    return int(newest.timestamp()) if newest is not None else None


def claim(session: Session, outbox_id: int, now: datetime) -> Claim | None:
    """Take the row for a send call. None if it is already sent, failed for good, or missing."""
    row = session.get(Outbox, outbox_id, with_for_update=True)
    if row is None:
        log.warning("send: outbox row %s does not exist", outbox_id)
        return None
    if row.status not in ("pending", "sending"):
        return None
    anchor = row.history_anchor
    if anchor is None:  # fixed before the first send call, never moved after it
        anchor = history_anchor(session, row.contact_id)
    session.execute(update(Outbox).where(Outbox.id == outbox_id).values(
        status="sending", attempts=Outbox.attempts + 1, history_anchor=anchor, last_send_at=now,
        next_attempt_at=None, updated_at=now))
    contact = session.get(Contact, row.contact_id)
    assert contact is not None
    return Claim(outbox_id=row.id, body=row.body, chat_id=contact.chat_id, phone=contact.phone,
                 reply_to=row.reply_to_provider_id, anchor=anchor)


def unclear_claim(session: Session, outbox_id: int) -> tuple[Claim, datetime] | None:
    """A row whose last send call has an unknown outcome, and when that call was made."""
    row = session.get(Outbox, outbox_id)
    if row is None or row.status != "sending":
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


def find_delivered(wappi: WappiClient, item: Claim,
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


def reconcile(wappi: WappiClient, item: Claim, last_send_at: datetime, now: datetime, *,
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


def deliver(wappi: WappiClient, item: Claim) -> SendResult:
    if item.reply_to:
        try:
            return wappi.reply(item.reply_to, item.body)
        except WappiNotFoundError:
            log.info("send: quoted message of outbox %s is gone; sending without a quote", item.outbox_id)
    return wappi.send_message(item.phone, item.body)


def note_unclear(session: Session, outbox_id: int, now: datetime) -> None:
    """A send call ended without an answer: the settle delay counts from its end."""
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status == "sending").values(
        last_send_at=now, updated_at=now))


def note_not_sent(session: Session, outbox_id: int, now: datetime) -> None:
    """Wappi refused the call outright (a 4xx, an offline profile): nothing went out, so nothing
    needs reconciling, now or after a replay."""
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status == "sending").values(
        status="pending", last_send_at=None, updated_at=now))


def note_deferred(session: Session, outbox_id: int, due: datetime) -> None:
    """Something holds this row until `due`; the recovery sweep leaves it alone until then."""
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status.in_(("pending", "sending")))
                    .values(next_attempt_at=due))


def waits_for_older(session: Session, outbox_id: int, contact_id: int) -> bool:
    """An older row of the same chat is still unsent: it goes first, so a chat reads in order."""
    return session.scalar(select(Outbox.id).where(
        Outbox.contact_id == contact_id, Outbox.id < outbox_id,
        Outbox.status.in_(("pending", "sending"))).limit(1)) is not None


def replies_waiting(session: Session, profile_id: int, contact_id: int) -> bool:
    """A message to a customer (not a follow-up touch) of this profile waits to be sent. Another
    chat's only: in its own chat the older row goes first (`waits_for_older`)."""
    return session.scalar(select(Outbox.id).where(
        Outbox.profile_id == profile_id, Outbox.contact_id != contact_id, Outbox.kind != "follow_up",
        Outbox.status == "pending").limit(1)) is not None


def stale_touch_reason(session: Session, row: Outbox, now: datetime) -> str | None:
    """Why a follow-up touch written earlier must not go out now, or None."""
    if row.kind != "follow_up":
        return None
    contact = session.get(Contact, row.contact_id)
    assert contact is not None
    if contact.opted_out:
        return "opted_out"
    if (contact.paused_until is not None and contact.paused_until > now) or contact.last_author == "phone":
        return "human_replied"
    if contact.last_author == "customer":  # a touch follows up our message, never the customer's
        return "client_responded"
    return None


def cancel_touch(session: Session, row: Outbox, reason: str) -> None:
    """The touch is not sent, and its chain stops with the reason."""
    session.execute(update(Outbox).where(Outbox.id == row.id, Outbox.status == "pending").values(
        status="cancelled", error=f"not sent: {reason}", updated_at=utcnow()))
    parts = row.idempotency_key.split(":")
    if len(parts) == 3 and parts[0] == "follow_up" and parts[1].isdigit():
        session.execute(update(FollowUp).where(FollowUp.id == int(parts[1]), FollowUp.status == "active")
                        .values(status="stopped", stop_reason=reason, next_touch_at=None))
    log.info("send: follow-up outbox %s cancelled at send time: %s", row.id, reason)


def mark_sent(session: Session, outbox_id: int, result: SendResult) -> None:
    row = session.get(Outbox, outbox_id)
    assert row is not None
    now = datetime.now(UTC)
    # Wappi's clock, like the customer messages' times, so the conversation sorts right.
    sent_at = datetime.fromtimestamp(result.time, UTC) if result.time else now
    session.execute(update(Outbox).where(Outbox.id == outbox_id).values(
        status="sent", provider_message_id=result.message_id, sent_at=now, error=None,
        next_attempt_at=None, updated_at=now))
    # The poll may have stored our message already (it sees it in the chat): that row stays.
    insert_ignore(session, Message, {
        "profile_id": row.profile_id, "contact_id": row.contact_id,
        "provider_message_id": result.message_id, "direction": "out", "author": "bot",
        "type": "chat", "text": row.body, "status": "sent", "sent_at": sent_at,
    }, ["profile_id", "provider_message_id"])
    contact = session.get(Contact, row.contact_id)
    if contact is not None:
        note_message(session, contact, "bot", sent_at)
        if row.kind == "reply" and contact.last_author == "bot":
            contact.awaiting_follow_up = True  # the follow-up sweep watches this silence


def mark_failed(session: Session, outbox_id: int, error: str) -> None:
    session.execute(update(Outbox).where(Outbox.id == outbox_id, Outbox.status != "sent").values(
        status="failed", error=error[:2000], next_attempt_at=None, updated_at=utcnow()))


def reset_for_replay(session: Session, outbox_id: int) -> None:
    """A failed row whose last send call had an unknown outcome goes back to `sending`, so the
    replayed send reconciles before sending; one Wappi refused (or never sent) to `pending`."""
    row = session.get(Outbox, outbox_id)
    if row is None or row.status != "failed":
        return
    row.status = "sending" if row.last_send_at is not None else "pending"
    row.error = None
    row.updated_at = utcnow()


# -- a profile that cannot send --------------------------------------------------------------

def down_reason(status: ProfileStatus, paid: bool = True) -> str | None:
    """Why Wappi cannot send for this profile now, or None when it can."""
    if not paid:
        return "not paid"
    if not status.authorized:
        return "not authorized"
    if status.app_status != "open":
        return f"phone not connected (app_status {status.app_status or 'unknown'})"
    return None


def mark_profile(session: Session, provider_profile_id: str, reason: str | None, now: datetime) -> bool:
    """Record the profile down (with a reason) or up; True when that changed, so it is logged once."""
    profile = session.scalar(select(Profile).where(Profile.profile_id == provider_profile_id).with_for_update())
    if profile is None or profile.down_reason == reason:
        return False
    was = profile.down_reason
    profile.down_reason = reason
    profile.down_since = now if reason else None
    if reason:
        log.warning("profile %s cannot send (%s): sends are held", provider_profile_id, reason)
    else:
        log.warning("profile %s can send again (was: %s): held sends go out", provider_profile_id, was)
    return True
