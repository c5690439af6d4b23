"""In-memory state of the Wappi emulator: profiles, chats, messages and media files, and its clock.

Messages are kept in their sync-API JSON shape (see `wire.message_json`), so what a test injected
with `overrides` (wrong types, times in milliseconds) is served back exactly as stored.
"""

from __future__ import annotations

import bisect
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from emulators.wappi.exceptions import EmulatorError

JSON = dict[str, Any]

DEFAULT_TOKEN = "emulator-token"
DEFAULT_PROFILE_ID = "a1b2c3d4-e5f6"
DEFAULT_OWN_PHONE = "77000000000"
DEFAULT_CUSTOMER_NAME = "Клиент"
# The Telegram account a `/tapi/` profile drives (its numeric user id and username).
DEFAULT_OWN_TELEGRAM_ID = "5279188641"
DEFAULT_OWN_TELEGRAM_USERNAME = "emulator_shop"

# What a profile is: a WhatsApp number (`/api/`) or a personal Telegram account (`/tapi/`).
WHATSAPP = "whatsapp"
TELEGRAM = "telegram"
PLATFORMS = (WHATSAPP, TELEGRAM)
# Telegram dialog types (`type` of a `/tapi/` dialog): a person, a group, a channel.
TELEGRAM_CHAT_TYPES = ("user", "chat", "channel")

# Message types whose file can be fetched through message/media/download.
MEDIA_TYPES = frozenset({"ptt", "audio", "image", "video", "document"})
DEFAULT_MEDIA_FORMAT: dict[str, tuple[str, str]] = {
    "ptt": ("audio/ogg; codecs=opus", "ogg"),
    "audio": ("audio/mpeg", "mp3"),
    "image": ("image/jpeg", "jpg"),
    "video": ("video/mp4", "mp4"),
    "document": ("application/pdf", "pdf"),
    "sticker": ("image/webp", "webp"),
}
# Tiny stand-in files used when a media message is injected without bytes.
PLACEHOLDER_MEDIA: dict[str, bytes] = {
    "ptt": b"OggS\x00\x02" + bytes(22) + b"OpusHead",
    "audio": b"ID3\x03\x00\x00\x00\x00\x00\x00",
    "image": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9",
    "video": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
    "document": b"%PDF-1.4\n%%EOF\n",
}
MEDIA_SHAPES = ("b64", "link", "both")
# Chats that are not a conversation with a person: `<id>@newsletter` (a channel),
# `<id>@broadcast` (a broadcast list) and `status@broadcast` (status updates of contacts).
CHANNEL_DOMAINS = frozenset({"newsletter", "broadcast"})
APP_STATUSES = ("open", "close", "connecting")


class Clock:
    """Wappi's clock: the real one plus `offset` seconds (the `clock_offset_seconds` fault)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> int:
        return int(time.time() + self.offset)


def seconds(value: Any) -> int:
    """A message ``time`` as unix seconds for ordering and rendering: a number in milliseconds
    (the `overrides` control can inject one) counts as its seconds; anything else as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value / 1000) if value > 100_000_000_000 else int(value)


def new_message_id() -> str:
    return secrets.token_hex(10).upper()


def is_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def parse_chat_ref(raw: str) -> tuple[str, str, bool]:
    """Map a recipient / chat id to ``(key, local_part, is_group)``.

    ``<phone>@c.us``, ``<phone>@s.whatsapp.net`` and a bare phone share the key
    ``<phone>``; a group keeps its full ``...@g.us`` id as the key.
    """
    value = raw.strip()
    if not value:
        raise EmulatorError("chat id is required")
    local = value
    if "@" in value:
        local, _, domain = value.partition("@")
        if domain == "g.us":
            if not local or not all(part and is_digits(part) for part in local.split("-")):
                raise EmulatorError(f"invalid group id: {raw}")
            return value, local, True
        if domain in CHANNEL_DOMAINS and local:
            # Channels, broadcast lists and status updates: keyed by their full id, not a phone.
            return value, local, False
        if domain not in ("c.us", "s.whatsapp.net"):
            raise EmulatorError(f"unsupported chat id: {raw}")
    if not (is_digits(local) and 5 <= len(local) <= 20):
        raise EmulatorError(f"invalid phone number: {raw}")
    return local, local, False


def parse_telegram_chat_ref(raw: str) -> str:
    """A `/tapi/` chat id or recipient as its key: Telegram ids are bare numeric strings (a
    group's may carry a minus sign); WhatsApp's `@c.us` / `@g.us` ids are refused."""
    value = raw.strip()
    if not value:
        raise EmulatorError("chat id is required")
    digits = value.removeprefix("-")
    if not (is_digits(digits) and 1 <= len(digits) <= 20):
        raise EmulatorError(f"invalid telegram chat id: {raw}")
    return value


@dataclass
class MediaFile:
    data: bytes
    mimetype: str
    file_name: str
    media_type: str
    shape: str
    duration: int
    # Voice helper control: the file's links and media/download have expired (Wappi keeps files
    # 20 days, webhook links 48 h); only the webhook's inline base64 `body` still holds it.
    expired: bool = False


@dataclass
class Chat:
    key: str
    chat_id: str
    local: str
    is_group: bool
    first_name: str = ""
    full_name: str = ""
    push_name: str = ""
    business_name: str = ""
    group_name: str = ""
    participants: list[str] = field(default_factory=list)
    messages: list[JSON] = field(default_factory=list)
    unread_count: int = 0
    # Telegram profiles only: the dialog type and the user's @username.
    telegram_type: str = "user"
    username: str = ""

    @property
    def display_name(self) -> str:
        if self.is_group:
            return self.group_name or self.local
        return self.full_name or self.first_name or self.push_name or self.business_name or self.local

    @property
    def last_message(self) -> JSON | None:
        return self.messages[-1] if self.messages else None

    def add_message(self, message: JSON) -> None:
        """Keep ``messages`` ordered by time (oldest first, ties in insertion order)."""
        bisect.insort_right(self.messages, message, key=lambda m: seconds(m["time"]))


@dataclass
class Profile:
    profile_id: str
    authorized_at: int
    authorized: bool = True
    app_status: str = "open"
    paid: bool = True
    logouted_at: int | None = None
    chats: dict[str, Chat] = field(default_factory=dict)
    message_index: dict[str, str] = field(default_factory=dict)  # message id -> chat key
    sent: list[JSON] = field(default_factory=list)
    webhook_url: str = ""
    webhook_secret: str = ""
    platform: str = WHATSAPP
    last_message_number: int = 1000  # Telegram message ids are numbers counting up per account
    # The token of the Wappi account that owns the profile: the only one it answers to.
    token: str = ""
    # Message id -> file. Per profile: two Telegram accounts number their messages alike.
    files: dict[str, MediaFile] = field(default_factory=dict)

    @property
    def telegram(self) -> bool:
        return self.platform == TELEGRAM

    def reset(self, now: int) -> None:
        self.authorized = True
        self.app_status = "open"
        self.paid = True
        self.authorized_at = now
        self.logouted_at = None
        self.chats.clear()
        self.message_index.clear()
        self.sent.clear()
        self.files.clear()
        self.webhook_url = ""
        self.webhook_secret = ""
        self.last_message_number = 1000

    def chat_of(self, message_id: str) -> Chat | None:
        key = self.message_index.get(message_id)
        return self.chats.get(key) if key is not None else None

    def find_message(self, message_id: str) -> JSON | None:
        chat = self.chat_of(message_id)
        if chat is None:
            return None
        for message in reversed(chat.messages):
            if message["id"] == message_id:
                return message
        return None
