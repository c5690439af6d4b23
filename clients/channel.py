"""What every messaging channel offers the pipeline: the records its calls return, the errors they
raise, and the calls themselves (`Channel`). WhatsApp and Telegram through Wappi
(`clients.wappi`) and a Telegram bot (`clients.telegram.TelegramBotChannel`) each implement it, so
the stages after intake never ask which channel a conversation is on.

Each client keeps its own typed errors; they derive from the bases here, which are what the
pipeline decides on (retry, hold the profile, give up, stop writing to the customer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


def json_str(value: Any) -> str:
    """A JSON field that should be text: itself, or "" for anything else."""
    return value if isinstance(value, str) else ""


def json_int(value: Any) -> int:
    """A JSON field that should be an integer: itself (a float truncated), or 0 for anything else
    (a bool, NaN, a string)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value:
        return int(value)
    return 0


class ChannelError(Exception):
    """Base of every channel failure."""


class ChannelTransientError(ChannelError):
    """Network error, timeout, 5xx or 429: worth retrying later. `retry_after` is the service's own
    hint in seconds (a floor of the backoff), None when it gave none."""

    retry_after: float | None = None


class ChannelRateLimitedError(ChannelTransientError):
    """The service refused the call for flooding (a 429): nothing was sent; try after `retry_after`."""


class ChannelAuthError(ChannelError):
    """The account cannot work now (bad token, unpaid, logged out): needs an operator, not a retry."""


class ChannelNotFoundError(ChannelError):
    """Unknown profile or message."""


class ChannelRejectedError(ChannelError):
    """The service refused this request for good (a 4xx): retrying won't help."""


class MediaTooLargeError(ChannelRejectedError):
    """A file is over the caller's cap (or the service's own): refused before it is all in memory."""


class RecipientUnreachableError(ChannelRejectedError):
    """The customer blocked the bot or deleted the account: never write to them again."""


@dataclass(frozen=True)
class ProfileStatus:
    authorized: bool
    app_status: str
    phone: str
    name: str

    @property
    def healthy(self) -> bool:
        return self.authorized and self.app_status == "open"


@dataclass(frozen=True)
class SendResult:
    message_id: str
    task_id: str
    time: int = 0  # the service's unix time of the send; 0 when unknown


@dataclass(frozen=True)
class Media:
    data: bytes
    mime_type: str
    file_name: str
    media_type: str


@dataclass(frozen=True)
class MediaRef:
    """What a message says about its file (name, size, the channel's file reference), to download
    it and to recognise the download."""

    file_name: str = ""
    size: int = 0
    mime_type: str = ""
    file_id: str = ""  # a Telegram bot's `file_id`; Wappi downloads by message id


class Channel(Protocol):
    """The calls the stages after intake make on one profile's account."""

    profile_id: str
    # Whether the chat history can be read back (to find an unclear send's copy before sending
    # again). A bot cannot: an unclear send is sent again.
    reads_history: bool

    def get_status(self) -> ProfileStatus: ...

    def send_message(self, recipient: str, text: str) -> SendResult: ...

    def reply(self, message_id: str, text: str) -> SendResult: ...

    def get_messages(self, chat_id: str, *, limit: int = 50, offset: int = 0) -> list[Any]: ...

    def download_media(self, message_id: str, expected: MediaRef | None = None) -> Media: ...
