"""Stage `webhook`: Wappi pushes messages; they are stored exactly like the poll stores them
(deduplicated with it), and the new customer messages start their conversations."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from clients.wappi import parse_message, parse_telegram_message
from db.models import Profile
from domain.states import Provider
from pipeline.contacts import upsert_contact
from pipeline.inbound import is_history, record_rejected, store_message

log = logging.getLogger(__name__)


WEBHOOK_TYPES_STORED = frozenset({"incoming_message", "outgoing_message_phone", "outgoing_message_api"})


class WebhookError(ValueError):
    """The webhook body is not a Wappi envelope; the message says what is wrong."""


def items_by_profile(items: list[object], default_profile: str) -> dict[str, list[object]]:
    """The items grouped by the Wappi profile each names (`profile_id`); an item naming none belongs
    to `default_profile` (the environment's), as before profiles were first-class."""
    groups: dict[str, list[object]] = {}
    for item in items:
        named = item.get("profile_id") if isinstance(item, dict) else None
        profile = named.strip() if isinstance(named, str) and named.strip() else default_profile
        groups.setdefault(profile, []).append(item)
    return groups


def webhook_messages(payload: object) -> list[object]:
    """The items of a webhook: `{"messages": [...]}`, `{"messages": {...}}` or a bare object.
    Items are checked one by one later; a body with no message object at all is refused."""
    if not isinstance(payload, dict):
        raise WebhookError("the body is not a JSON object")
    items = payload.get("messages", payload)
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or (items and not any(isinstance(item, dict) for item in items)):
        raise WebhookError("`messages` is neither an object nor a list of objects")
    return items


def store_webhook(session: Session, profile_id: int, items: list[object], *, now: float | None = None,
                  stale_after: float = 600.0, human_pause: timedelta | None = None) -> list[int]:
    """Store the messages of one webhook, exactly like the poll would (deduplicated with it), and
    return the new customer messages to answer. Delivery and status events are ignored. Items are
    handled one by one: a bad one is logged and kept as a dead letter, the others are stored."""
    now = time.time() if now is None else now
    to_answer: list[int] = []
    profile = session.get(Profile, profile_id)
    assert profile is not None
    boundary = profile.history_boundary
    telegram = profile.provider == Provider.WAPPI_TELEGRAM
    previous_poll = profile.last_poll_at.timestamp() if profile.last_poll_at is not None else None
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            log.warning("webhook: item %d is not an object; skipped", position)
            continue
        kind = item.get("wh_type") or "incoming_message"
        if not isinstance(kind, str) or kind not in WEBHOOK_TYPES_STORED:
            continue
        try:
            message = parse_telegram_message(item) if telegram else parse_message(item)
        except Exception as exc:  # noqa: BLE001 - one unreadable item costs only itself
            log.warning("webhook: item %d skipped: %s", position, exc)
            record_rejected(session, profile.id, "webhook", item, f"{type(exc).__name__}: {exc}")
            continue
        if not message.is_person or not message.phone.isdigit():
            continue  # groups, channels, broadcasts, status updates, an @lid without a phone
        history = is_history(message, first_start=False, boundary=boundary, now=now,
                             stale_after=stale_after, previous_poll=previous_poll)
        try:
            with session.begin_nested():  # one savepoint an item: its contact and its message
                chat_id = message.chat_id if telegram else f"{message.phone}@c.us"
                contact = upsert_contact(session, profile.id, message.phone, chat_id,
                                         push_name=message.sender_name if not message.from_me else "",
                                         full_name=message.contact_name if not message.from_me else "")
                row_id = store_message(session, profile, contact, message, now=now, history=history,
                                       human_pause=human_pause)
        except OperationalError:
            raise  # a database that is down is no item's fault
        except Exception as exc:  # noqa: BLE001 - an item that cannot be stored costs only itself
            record_rejected(session, profile.id, "webhook", item, f"{type(exc).__name__}: {exc}")
            continue
        if row_id is not None:
            to_answer.append(row_id)
    return to_answer
