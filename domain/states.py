"""Every lifecycle the pipeline stores, in one place: each a `StrEnum`, with the moves it allows.

The values are what the database holds (a CHECK constraint per column, migration 0009, keeps it
so; tests/unit/test_states.py checks the two agree). The transition maps are the moves the stages
make: each UPDATE of a status is guarded by the state it moves from.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    IN = "in"  # from the customer
    OUT = "out"  # from the business (this pipeline or a human on the phone)


class Author(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"  # sent by this pipeline
    PHONE = "phone"  # typed by a human on the business phone


class MessageStatus(StrEnum):
    """A stored message. Only an inbound `received` message is on its way to an answer."""

    RECEIVED = "received"  # inbound, waiting for its chain (ingest -> ... -> respond)
    ANSWERED = "answered"  # a reply (or an opt-out confirmation) covers it
    WAITING = "waiting"  # an undecided contact in strict mode: answered with a later message
    IGNORED = "ignored"  # not a lead, or a whitelisted number: never answered
    PAUSED = "paused"  # a human answers this contact from the phone
    FAILED = "failed"  # its chain failed for good (a dead letter), or a voice note we gave up on
    SKIPPED = "skipped"  # nothing to answer (a sticker, a reaction, an empty body)
    HISTORY = "history"  # there before the product started, or came while it was down: recorded only
    SENT = "sent"  # outbound: ours or the phone's


# Terminal states have no entry. FAILED -> RECEIVED is an operator's replay.
MESSAGE_TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    MessageStatus.RECEIVED: frozenset({MessageStatus.ANSWERED, MessageStatus.WAITING, MessageStatus.IGNORED,
                                       MessageStatus.PAUSED, MessageStatus.FAILED}),
    MessageStatus.WAITING: frozenset({MessageStatus.ANSWERED}),
    MessageStatus.FAILED: frozenset({MessageStatus.RECEIVED}),
}
# The states a message is stored in, by how it arrives.
MESSAGE_INITIAL: frozenset[MessageStatus] = frozenset({
    MessageStatus.RECEIVED, MessageStatus.SKIPPED, MessageStatus.HISTORY, MessageStatus.SENT})


class OutboxStatus(StrEnum):
    PENDING = "pending"  # written, not sent yet
    SENDING = "sending"  # a send call went out; its outcome may be unknown (reconciled before a resend)
    SENT = "sent"
    FAILED = "failed"  # a dead letter; a replay moves it back
    CANCELLED = "cancelled"  # a follow-up touch no longer wanted at send time


OUTBOX_TRANSITIONS: dict[OutboxStatus, frozenset[OutboxStatus]] = {
    OutboxStatus.PENDING: frozenset({OutboxStatus.SENDING, OutboxStatus.FAILED, OutboxStatus.CANCELLED}),
    # Back to PENDING when Wappi refused the call outright (nothing went out).
    # CANCELLED when the customer cannot be reached (blocked the bot): the call was refused.
    OutboxStatus.SENDING: frozenset({OutboxStatus.SENT, OutboxStatus.PENDING, OutboxStatus.FAILED,
                                     OutboxStatus.CANCELLED}),
    # A replay: back to SENDING when the last call's outcome is unknown (it reconciles first).
    OutboxStatus.FAILED: frozenset({OutboxStatus.PENDING, OutboxStatus.SENDING}),
}
OUTBOX_UNSENT: frozenset[OutboxStatus] = frozenset({OutboxStatus.PENDING, OutboxStatus.SENDING})


class OutboxKind(StrEnum):
    REPLY = "reply"  # the sales agent's answer
    NOTICE = "notice"  # a fixed text: the opt-out confirmation, "please write" after a voice note
    FOLLOW_UP = "follow_up"  # a touch of the follow-up ladder
    MCP = "mcp"  # a message an outside agent asked us to send (the MCP server's send_message)


class FollowUpStatus(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"
    COMPLETED = "completed"


FOLLOW_UP_TRANSITIONS: dict[FollowUpStatus, frozenset[FollowUpStatus]] = {
    FollowUpStatus.ACTIVE: frozenset({FollowUpStatus.STOPPED, FollowUpStatus.COMPLETED}),
    # Only a chain stopped because its touch failed for good, by a replay.
    FollowUpStatus.STOPPED: frozenset({FollowUpStatus.ACTIVE}),
}


class StopReason(StrEnum):
    """Why a follow-up chain ended."""

    CLIENT_RESPONDED = "client_responded"
    CLIENT_SAID_YES = "client_said_yes"
    CLIENT_SAID_NO = "client_said_no"
    OPTED_OUT = "opted_out"
    HUMAN_REPLIED = "human_replied"
    FAILED = "failed"  # its touch failed for good (a dead letter); a replay reopens it
    COMPLETED = "completed_5_touches"
    UNREACHABLE = "unreachable"  # the customer blocked the bot or deleted the account


class CallStatus(StrEnum):
    BOOKED = "booked"


class UsagePurpose(StrEnum):
    """What a model call was for, in `model_usage`."""

    REPLY = "reply"
    CLASSIFY = "classify"
    TRANSCRIBE = "transcribe"
    FOLLOW_UP = "follow_up"


class Provider(StrEnum):
    """The kind of messaging account a profile is (migration 0010 keeps `profiles.provider` to these)."""

    WAPPI = "wappi"  # WhatsApp through Wappi (`/api/`)
    WAPPI_TELEGRAM = "wappi_telegram"  # a personal Telegram account through Wappi (`/tapi/`)
    TELEGRAM_BOT = "telegram_bot"  # a bot through the Telegram Bot API


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


def check_in(column: str, enum: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that keeps `column` to the enum's values."""
    return f"{column} IN ({', '.join(repr(value) for value in values(enum))})"
