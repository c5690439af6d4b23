"""Wappi WhatsApp API client: typed results, typed errors, tolerant of the documented payload variants.
`WappiTelegramClient` speaks Wappi's Telegram API (`/tapi/`, a personal Telegram account) into the
same records.

The `requests.Session` and base URL are injected, so tests run this exact code against the local
emulator over HTTP. Callers never see a `requests` exception.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import requests
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from clients.channel import (
    ChannelAuthError,
    ChannelError,
    ChannelNotFoundError,
    ChannelRejectedError,
    ChannelTransientError,
    Media,
    MediaRef,
    MediaTooLargeError,
    ProfileStatus,
    SendResult,
)
from domain.phones import is_group_chat, is_lid, is_person_chat, normalize_phone
from settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class WappiError(ChannelError):
    """Base of every Wappi failure. `detail` is Wappi's own text, never the token."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class WappiAuthError(WappiError, ChannelAuthError):
    """Bad token (401/403) or an unpaid / logged-out profile: needs an operator, not a retry."""


class WappiNotFoundError(WappiError, ChannelNotFoundError):
    """Unknown profile or message."""


class WappiTransientError(WappiError, ChannelTransientError):
    """Network error, timeout, 5xx or 429: worth retrying later."""


class WappiCrossedResponseError(WappiTransientError):
    """The answer holds another chat's messages (Wappi has crossed the answers of concurrent calls
    of one profile): dropped whole; asking again is the fix."""


class WappiRejectedError(WappiError, ChannelRejectedError):
    """Wappi refused the request (other 4xx, or 200 without status "done"): retrying won't help."""


class WappiMediaTooLargeError(WappiRejectedError, MediaTooLargeError):
    """The file is over the media cap (MAX_AUDIO_BYTES): refused from Content-Length or while
    reading, never after the whole file is in memory."""


class WappiMediaMismatchError(WappiTransientError):
    """media/download answered with another message's file (Wappi has crossed the answers of
    concurrent calls of one profile): the answer is dropped and the download asked again."""


@dataclass(frozen=True)
class Dialog:
    chat_id: str
    phone: str
    is_group: bool
    name: str
    first_name: str
    full_name: str
    push_name: str
    business_name: str
    last_message_id: str
    last_time: int
    last_from_me: bool
    unread_count: int
    is_channel: bool = False  # a Telegram channel (WhatsApp's are known by their id)

    @property
    def is_person(self) -> bool:
        """A conversation with a person: not a group, channel, broadcast list or status updates."""
        return not self.is_group and not self.is_channel and is_person_chat(self.chat_id)


@dataclass(frozen=True)
class WappiMessage:
    id: str
    chat_id: str
    phone: str  # canonical digits for 1:1 chats; the chat id itself for groups and bare @lid ids
    type: str
    from_me: bool
    text: str
    caption: str
    time: int
    sender_name: str
    contact_name: str
    from_api: bool  # sent through the API (by us), as opposed to typed on the phone
    is_group: bool
    lid: str = ""
    file_link: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    is_channel: bool = False  # a Telegram channel (WhatsApp's are known by their id)
    media: MediaRef | None = None  # the file, when the channel's parser read it (else from `raw`)

    @property
    def is_person(self) -> bool:
        """From a conversation with a person: not a group, channel, broadcast list or status update."""
        return not self.is_group and not self.is_channel and is_person_chat(self.chat_id)


@dataclass(frozen=True)
class MessagesPage:
    """One `messages/get` answer: the messages read, and the items that could not be read, each
    with the reason (stored by the caller as a dead letter, so that one bad item costs only itself)."""

    messages: list[WappiMessage]
    rejected: list[tuple[Mapping[str, Any], str]]


VOICE_MESSAGE_TYPES = frozenset({"ptt", "audio"})


def media_ref(item: Mapping[str, Any]) -> MediaRef:
    """The file a message names: top-level `file_name`/`mimetype` (webhooks, newer sync answers),
    the sync API's media `body` object (`fileName`, `fileLength`, `mimetype`), `media_info.size`."""
    body = item.get("body") if isinstance(item.get("body"), Mapping) else {}
    info = item.get("media_info") if isinstance(item.get("media_info"), Mapping) else {}
    assert isinstance(body, Mapping) and isinstance(info, Mapping)
    return MediaRef(
        file_name=_str(item.get("file_name")) or _str(body.get("fileName")),
        size=_int(body.get("fileLength")) or _int(info.get("size")),
        mime_type=_str(item.get("mimetype")) or _str(body.get("mimetype")),
    )


def inline_voice(item: Mapping[str, Any]) -> Media | None:
    """A webhook's voice note carries the whole file as base64 in `body`; None when it does not
    (the sync API's media object, an empty or undecodable body)."""
    message_type = _str(item.get("type"))
    encoded = item.get("body")
    if message_type not in VOICE_MESSAGE_TYPES or not isinstance(encoded, str) or not encoded.strip():
        return None
    try:
        data = base64.b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4), validate=True)
    except (binascii.Error, ValueError):
        log.warning("voice note %s: its inline body is not base64; it will be downloaded", _str(item.get("id")))
        return None
    ref = media_ref(item)
    return Media(data=data, mime_type=ref.mime_type, file_name=ref.file_name, media_type=message_type)


def _same_file(name: str, other: str) -> bool:
    """File names compared without the extension (Wappi's are `<uuid>.<ext>`)."""
    return name.rsplit(".", 1)[0].lower() == other.rsplit(".", 1)[0].lower()


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return 0


def _id(value: Any) -> str:
    """A provider id: a string, or a number some payloads send instead."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def _sent_through_api(item: Mapping[str, Any]) -> bool:
    """Sent by a program through Wappi's API (this pipeline), not typed on the phone."""
    return _flag(item.get("isFromAPI")) or _str(item.get("from_where")) == "api" \
        or _str(item.get("wh_type")) == "outgoing_message_api"


def _file_link(item: Mapping[str, Any]) -> str:
    """The media file's address: `file_link`, or the sync API's `s3Info.url`."""
    s3_info = item.get("s3Info")
    return _str(item.get("file_link")) or (_str(s3_info.get("url")) if isinstance(s3_info, Mapping) else "")


def _flag(value: Any) -> bool:
    """A boolean field: true only when it says so (`"no"` or a list is not "from me")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    return isinstance(value, str) and value.strip().lower() in ("true", "1")


MS_THRESHOLD = 100_000_000_000  # unix seconds reach this in the year 5138; a larger time is in ms


def _unix_seconds(value: Any) -> int:
    """Unix seconds from seconds or milliseconds (int, float or digits); 0 when unknown."""
    if isinstance(value, float) and value == value and abs(value) < 1e18:
        value = int(value)
    seconds = _int(value)
    if seconds >= MS_THRESHOLD:
        seconds //= 1000
    return seconds if 0 < seconds < MS_THRESHOLD else 0


def chat_key(chat_id: str) -> str:
    """What identifies a chat across id spellings: the phone digits of a 1:1 chat, else the id."""
    value = chat_id.strip()
    return normalize_phone(value) if is_person_chat(value) and not is_lid(value) else value


def parse_message(item: Mapping[str, Any]) -> WappiMessage:
    """One message from `messages/get` (camelCase) or a webhook (snake_case); every field optional."""
    message_id = _id(item.get("id"))
    if not message_id:
        raise WappiRejectedError("message without an id")
    chat_id = _str(item.get("chatId")) or _str(item.get("chat_id"))
    from_me = _flag(item.get("fromMe", item.get("is_me", False)))
    if not chat_id:
        chat_id = _str(item.get("to")) if from_me else _str(item.get("from"))
    whatsapp_chat_id = _str(item.get("whatsapp_chat_id"))
    lid = whatsapp_chat_id if is_lid(whatsapp_chat_id) else (chat_id if is_lid(chat_id) else "")
    if is_lid(chat_id):
        # A bare @lid chat: use the phone Wappi gives elsewhere in the payload, when it does.
        other = _str(item.get("to")) if from_me else _str(item.get("from"))
        phone_hint = _str(item.get("contact_phone")) or (other if not is_lid(other) else "")
        phone = normalize_phone(phone_hint) if phone_hint else chat_id
    else:
        phone = normalize_phone(chat_id)
    body = item.get("body")
    message_type = _str(item.get("type")) or "chat"
    caption = _str(item.get("caption"))
    if isinstance(body, Mapping):  # the sync API sends media as an object
        caption = caption or _str(body.get("caption"))
        text = ""
    elif message_type in ("chat", "text"):
        text = _str(body)
    else:
        text = ""  # webhook media bodies are base64 of the file, never text
    time_value = _unix_seconds(item.get("time"))
    from_api = _sent_through_api(item)
    file_link = _file_link(item)
    return WappiMessage(
        id=message_id, chat_id=chat_id, phone=phone, type=message_type, from_me=from_me,
        text=text, caption=caption, time=time_value,
        sender_name=_str(item.get("senderName")), contact_name=_str(item.get("contact_name")),
        from_api=from_api,
        is_group=is_group_chat(chat_id) or _str(item.get("chat_type")) == "group",
        lid=lid, file_link=file_link, raw=item,
    )


def parse_dialog(item: Mapping[str, Any]) -> Dialog:
    chat_id = _str(item.get("id"))
    contact = item.get("contact") if isinstance(item.get("contact"), Mapping) else {}
    assert isinstance(contact, Mapping)
    sender = item.get("last_message_sender") if isinstance(item.get("last_message_sender"), Mapping) else {}
    assert isinstance(sender, Mapping)
    last_time = _unix_seconds(item.get("last_time"))
    return Dialog(
        chat_id=chat_id,
        phone=normalize_phone(chat_id),
        is_group=bool(item.get("isGroup")) or is_group_chat(chat_id),
        name=_str(item.get("name")),
        first_name=_str(contact.get("FirstName")),
        full_name=_str(contact.get("FullName")),
        push_name=_str(contact.get("PushName")),
        business_name=_str(contact.get("BusinessName")),
        last_message_id=_id(item.get("last_message_id")),
        last_time=last_time,
        last_from_me=bool(sender.get("isMe", False)),
        unread_count=_int(item.get("unread_count")),
    )


# Telegram (tapi): plain text is `text` where WhatsApp says `chat`; a dialog's `type` says what
# the chat is (webhooks: `chat_type`), `user` being the only conversation with a person.
TELEGRAM_TEXT_TYPES = frozenset({"text", "chat"})
TELEGRAM_GROUP_TYPES = frozenset({"chat", "group", "supergroup"})
TELEGRAM_PERSON_TYPES = frozenset({"user", "dialog", "private"})


def _rfc3339_seconds(value: Any) -> int:
    """Unix seconds of an RFC3339 time (`2022-03-18T14:42:41Z`); 0 when unknown."""
    if not isinstance(value, str) or not value.strip():
        return 0
    try:
        return max(int(datetime.fromisoformat(value.strip()).timestamp()), 0)
    except ValueError:
        return 0


def parse_telegram_message(item: Mapping[str, Any], chat_type: str = "") -> WappiMessage:
    """One message from `/tapi/` messages/get or a Telegram webhook. Ids are numeric strings (or
    numbers), kept as given: the chat id is also the contact's key (`phone`), never a phone number.
    `chat_type` is the chat's dialog `type` when the caller knows it (sync messages do not say)."""
    message_id = _id(item.get("id"))
    if not message_id:
        raise WappiRejectedError("message without an id")
    from_me = _flag(item.get("fromMe", item.get("is_me", False)))
    chat_id = _id(item.get("chatId")) or _id(item.get("chat_id"))
    if not chat_id:
        chat_id = _id(item.get("to")) if from_me else _id(item.get("from"))
    message_type = _str(item.get("type")) or "text"
    body = item.get("body")
    # Media bodies are "" in the sync API and base64 of the file in webhooks: never text.
    text = _str(body) if message_type in TELEGRAM_TEXT_TYPES else ""
    kind = (chat_type or _str(item.get("chat_type"))).lower()
    from_api = _sent_through_api(item)
    file_link = _file_link(item)
    return WappiMessage(
        id=message_id, chat_id=chat_id, phone=chat_id, type=message_type, from_me=from_me,
        text=text, caption=_str(item.get("caption")), time=_unix_seconds(item.get("time")),
        sender_name=_str(item.get("senderName")), contact_name=_str(item.get("contact_name")),
        from_api=from_api, is_group=kind in TELEGRAM_GROUP_TYPES, file_link=file_link, raw=item,
        is_channel=bool(kind) and kind not in TELEGRAM_GROUP_TYPES and kind not in TELEGRAM_PERSON_TYPES,
    )


def parse_telegram_dialog(item: Mapping[str, Any]) -> Dialog:
    """One `/tapi/` chats/get dialog: `type` user/chat/channel (no `isGroup`), the person in
    `user{}` (MTProto's capitalised keys), `last_timestamp` in unix seconds, `last_time` RFC3339."""
    chat_id = _id(item.get("id"))
    kind = (_str(item.get("type")) or "user").lower()
    user = item.get("user") if isinstance(item.get("user"), Mapping) else {}
    assert isinstance(user, Mapping)
    sender = item.get("last_message_sender") if isinstance(item.get("last_message_sender"), Mapping) else {}
    assert isinstance(sender, Mapping)
    first_name = _str(user.get("FirstName"))
    full_name = " ".join(part for part in (first_name, _str(user.get("LastName"))) if part)
    last_from_me = _flag(sender.get("isMe", False))
    push_name = "" if last_from_me else _str(sender.get("pushname"))
    username = _str(user.get("Username"))
    return Dialog(
        chat_id=chat_id,
        phone=chat_id,
        is_group=kind in TELEGRAM_GROUP_TYPES,
        name=_str(item.get("name")) or full_name or push_name or (f"@{username}" if username else ""),
        first_name=first_name,
        full_name=full_name,
        push_name=push_name,
        business_name="",
        last_message_id=_id(item.get("last_message_id")),
        last_time=_unix_seconds(item.get("last_timestamp")) or _rfc3339_seconds(item.get("last_time")),
        last_from_me=last_from_me,
        unread_count=_int(item.get("unread_count")),
        is_channel=kind not in TELEGRAM_GROUP_TYPES and kind not in TELEGRAM_PERSON_TYPES,
    )


_short_retry = retry(
    retry=retry_if_exception_type(WappiTransientError),
    stop=stop_after_attempt(2),
    wait=wait_random_exponential(multiplier=0.2, max=1.0),
    reraise=True,
)


class WappiClient:
    """One Wappi profile. Reads are retried once inside the client; sends never are (the
    caller's outbox decides), so a retry cannot multiply into a duplicate message."""

    api_root = "api"  # the path under the base URL: `api` (WhatsApp) or `tapi` (Telegram)
    reads_history = True

    def __init__(self, session: requests.Session, base_url: str, token: str, profile_id: str,
                 *, timeout: float = 20.0, max_media_bytes: int | None = None) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._token = token
        self.profile_id = profile_id
        self._timeout = timeout
        self._max_media_bytes = max_media_bytes  # None: no cap
        # Wappi has crossed the answers of concurrent history/media calls of one profile.
        self._serial = threading.Lock()

    # -- transport -------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                 json_body: Any = None) -> dict[str, Any]:
        query = {"profile_id": self.profile_id, **(params or {})}
        url = f"{self._base_url}/{self.api_root}/sync/{path}"
        try:
            response = self._session.request(
                method, url, params=query, json=json_body, timeout=self._timeout,
                headers={"Authorization": self._token})
        except requests.Timeout as exc:
            raise WappiTransientError(f"Wappi {path}: timed out after {self._timeout}s") from exc
        except requests.RequestException as exc:
            raise WappiTransientError(f"Wappi {path}: {type(exc).__name__}") from exc
        return self._decode(path, response)

    def _decode(self, path: str, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        body: dict[str, Any] = payload if isinstance(payload, dict) else {}
        detail = _str(body.get("detail")) or _str(body.get("error")) or response.text[:200]
        where = f"Wappi {path}: HTTP {status}"
        if status == 429 or status >= 500:
            raise WappiTransientError(f"{where} {detail}".strip(), status_code=status, detail=detail)
        if status in (401, 402, 403):
            raise WappiAuthError(f"{where} {detail}".strip(), status_code=status, detail=detail)
        if status >= 400:
            lowered = detail.lower()
            if "not found" in lowered:
                raise WappiNotFoundError(f"{where} {detail}", status_code=status, detail=detail)
            if "not authorized" in lowered or "unauthorized" in lowered:
                raise WappiAuthError(f"{where} {detail}", status_code=status, detail=detail)
            raise WappiRejectedError(f"{where} {detail}".strip(), status_code=status, detail=detail)
        if payload is None or not isinstance(payload, dict):
            raise WappiTransientError(f"{where}: response is not a JSON object", status_code=status)
        return body

    @staticmethod
    def _require_done(path: str, body: dict[str, Any]) -> None:
        if body.get("status") != "done":
            detail = _str(body.get("detail"))
            raise WappiRejectedError(f"Wappi {path}: status {body.get('status')!r} {detail}".strip(),
                                     detail=detail)

    def _serialized(self, call: Callable[[], T]) -> T:
        with self._serial:
            return call()

    # -- API -------------------------------------------------------------------------------
    @_short_retry
    def get_status(self) -> ProfileStatus:
        body = self._request("GET", "get/status")
        if "status" in body and "authorized" not in body:  # a "status" key here means an error
            raise WappiRejectedError(f"Wappi get/status: {body.get('detail') or body.get('status')}")
        return ProfileStatus(authorized=bool(body.get("authorized")),
                             app_status=_str(body.get("app_status")),
                             phone=_str(body.get("phone")), name=_str(body.get("name")))

    @_short_retry
    def get_chats(self, *, limit: int = 100, offset: int = 0) -> tuple[list[Dialog], int]:
        """One page of chats, newest first, and the total count."""
        body = self._request("GET", "chats/get", params={"limit": limit, "offset": offset,
                                                          "show_all": "false"})
        self._require_done("chats/get", body)
        dialogs = body.get("dialogs") or []
        parsed = [self._parse_dialog(item) for item in dialogs if isinstance(item, Mapping) and item.get("id")]
        return parsed, _int(body.get("total_count"))

    # What differs between WhatsApp and Telegram (overridden by `WappiTelegramClient`).
    def _parse_dialog(self, item: Mapping[str, Any]) -> Dialog:
        return parse_dialog(item)

    def _parse_message(self, item: Mapping[str, Any], chat_id: str) -> WappiMessage:
        return parse_message(item)

    def _chat_key(self, chat_id: str) -> str:
        return chat_key(chat_id)

    def _recipient(self, recipient: str) -> str:
        return recipient if is_group_chat(recipient) else normalize_phone(recipient)

    def _mark_read_params(self, mark_all: bool) -> dict[str, str]:
        return {"mark_all": "true" if mark_all else "false"}

    def get_messages(self, chat_id: str, *, limit: int = 50, offset: int = 0) -> list[WappiMessage]:
        """A chat's messages, newest first (items that cannot be read are left out)."""
        return self.get_messages_page(chat_id, limit=limit, offset=offset).messages

    @_short_retry
    def get_messages_page(self, chat_id: str, *, limit: int = 50, offset: int = 0) -> MessagesPage:
        """A chat's messages, newest first, and the items that could not be read. An answer that
        holds a message of another chat is refused whole (`WappiCrossedResponseError`, retried)."""
        def call() -> dict[str, Any]:
            return self._request("GET", "messages/get", params={
                "chat_id": chat_id, "limit": limit, "offset": offset, "order": "desc"})
        body = self._serialized(call)
        self._require_done("messages/get", body)
        wanted = self._chat_key(chat_id)
        messages: list[WappiMessage] = []
        rejected: list[tuple[Mapping[str, Any], str]] = []
        items = body.get("messages")
        if not isinstance(items, list):
            # Not an empty page: another call's answer (a media/download body, say). Taken as empty,
            # it would move the chat's cursor past a message never stored.
            raise WappiCrossedResponseError("Wappi messages/get: the answer holds no `messages` list "
                                            f"(keys: {', '.join(sorted(map(str, body))[:8])})")
        listed: list[Any] = items
        for item in listed:
            if not isinstance(item, Mapping):
                rejected.append(({"item": repr(item)[:500]}, "a message that is not an object"))
                continue
            try:
                message = self._parse_message(item, chat_id)
            except Exception as exc:  # one unreadable item costs only itself
                raw_chat = _str(item.get("chatId")) or _str(item.get("chat_id"))
                if raw_chat and self._chat_key(raw_chat) != wanted:
                    raise WappiCrossedResponseError(
                        "Wappi messages/get: the answer holds a message of another chat") from exc
                rejected.append((item, f"{type(exc).__name__}: {exc}"))
                continue
            # An @lid chat of a 1:1 conversation matches by the phone Wappi maps it to.
            if message.chat_id and wanted not in (self._chat_key(message.chat_id), message.phone):
                raise WappiCrossedResponseError(
                    f"Wappi messages/get: the answer holds a message of another chat "
                    f"({len(listed)} messages dropped)")
            messages.append(message)
        return MessagesPage(messages=messages, rejected=rejected)

    def send_message(self, recipient: str, text: str) -> SendResult:
        body = self._request("POST", "message/send", json_body={"body": text, "recipient": self._recipient(recipient)})
        return self._send_result("message/send", body)

    def reply(self, message_id: str, text: str) -> SendResult:
        body = self._request("POST", "message/reply", json_body={"body": text, "message_id": message_id})
        return self._send_result("message/reply", body)

    @_short_retry
    def mark_read(self, message_id: str, *, mark_all: bool = True) -> None:
        body = self._request("POST", "message/mark/read", params=self._mark_read_params(mark_all),
                             json_body={"message_id": message_id})
        self._require_done("message/mark/read", body)

    @_short_retry
    def download_media(self, message_id: str, expected: MediaRef | None = None) -> Media:
        """The message's file. An answer that names another message, or a file whose name or size
        differs from what the message said (`expected`), belongs to another message: it is dropped
        with WappiMediaMismatchError (transient), and the download is asked again."""
        def call() -> Media:
            body = self._request("GET", "message/media/download", params={"message_id": message_id})
            self._require_done("message/media/download", body)
            mime = _str(body.get("mime_type")) or _str(body.get("mimetype"))
            name = _str(body.get("file_name"))
            media_type = _str(body.get("media_type"))
            named = _str(body.get("message_id"))
            if named and named != message_id:
                raise WappiMediaMismatchError(f"Wappi media/download for {message_id} answered for {named}")
            if expected is not None and expected.file_name and name and not _same_file(name, expected.file_name):
                raise WappiMediaMismatchError(f"Wappi media/download for {message_id} answered with another "
                                              f"file ({name!r}, expected {expected.file_name!r})")
            encoded = _str(body.get("file_b64"))
            if not encoded and not _str(body.get("file_link")):
                # No file at all: another call's answer (a messages/get body, say), asked again.
                raise WappiMediaMismatchError(f"Wappi media/download for {message_id}: the answer holds "
                                              "neither file_b64 nor file_link")
            cap = self._max_media_bytes
            if encoded and cap is not None and len(encoded) * 3 // 4 > cap + 2:
                raise WappiMediaTooLargeError(f"Wappi media/download for {message_id}: file_b64 of about "
                                              f"{len(encoded) * 3 // 4} bytes is over the cap of {cap}")
            if encoded:
                try:
                    data = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
                except (binascii.Error, ValueError) as exc:
                    raise WappiRejectedError("Wappi media/download: file_b64 is not base64") from exc
            else:
                data = self._fetch_link(_str(body.get("file_link")))
            if expected is not None and expected.size and len(data) != expected.size:
                raise WappiMediaMismatchError(f"Wappi media/download for {message_id} answered with "
                                              f"{len(data)} bytes, expected {expected.size}")
            return Media(data=data, mime_type=mime, file_name=name, media_type=media_type)
        return self._serialized(call)

    def _fetch_link(self, link: str) -> bytes:
        if not link:
            raise WappiRejectedError("Wappi media/download: neither file_b64 nor file_link")
        cap = self._max_media_bytes
        try:
            # Streamed, so an oversized file is refused from its Content-Length or while reading.
            with self._session.get(link, timeout=self._timeout, stream=True) as response:
                if response.status_code >= 500:
                    raise WappiTransientError(f"Wappi media link: HTTP {response.status_code}")
                if response.status_code >= 400:
                    raise WappiRejectedError(f"Wappi media link: HTTP {response.status_code}")
                declared = _int(response.headers.get("Content-Length"))
                if cap is not None and declared > cap:
                    raise WappiMediaTooLargeError(f"Wappi media link: Content-Length {declared} is over the cap "
                                                  f"of {cap}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    size += len(chunk)
                    if cap is not None and size > cap:
                        raise WappiMediaTooLargeError(f"Wappi media link: over the cap of {cap} bytes while reading")
                    chunks.append(chunk)
                return b"".join(chunks)
        except requests.RequestException as exc:
            raise WappiTransientError(f"Wappi media link: {type(exc).__name__}") from exc

    def _send_result(self, path: str, body: dict[str, Any]) -> SendResult:
        self._require_done(path, body)
        message_id = _str(body.get("message_id"))
        if not message_id:
            raise WappiRejectedError(f"Wappi {path}: no message_id in the answer")
        return SendResult(message_id=message_id, task_id=_str(body.get("task_id")),
                          time=_int(body.get("timestamp")))


class WappiTelegramClient(WappiClient):
    """One Telegram profile of Wappi (a personal account, `/tapi/`): the same calls and records as
    WhatsApp, with Telegram's ids (numeric strings, never phones), `text` messages, dialog types
    (groups and channels are no person's), and `mark/read` without `mark_all` (it reads the chat)."""

    api_root = "tapi"

    def __init__(self, session: requests.Session, base_url: str, token: str, profile_id: str,
                 *, timeout: float = 20.0, max_media_bytes: int | None = None) -> None:
        super().__init__(session, base_url, token, profile_id, timeout=timeout, max_media_bytes=max_media_bytes)
        # A sync message does not say whether its chat is a group: the dialogs read last do.
        self._chat_types: dict[str, str] = {}

    def _parse_dialog(self, item: Mapping[str, Any]) -> Dialog:
        dialog = parse_telegram_dialog(item)
        self._chat_types[dialog.chat_id] = "chat" if dialog.is_group else ("channel" if dialog.is_channel else "user")
        return dialog

    def _parse_message(self, item: Mapping[str, Any], chat_id: str) -> WappiMessage:
        return parse_telegram_message(item, self._chat_types.get(chat_id.strip(), ""))

    def _chat_key(self, chat_id: str) -> str:
        return chat_id.strip()

    def _recipient(self, recipient: str) -> str:
        return recipient.strip()  # a user or chat id, @username or phone: tapi takes each as given

    def _mark_read_params(self, mark_all: bool) -> dict[str, str]:
        return {}


def build_client(base_url: str, token: str, profile_id: str, *, timeout: float,
                 max_media_bytes: int | None = None) -> WappiClient:
    return WappiClient(requests.Session(), base_url, token, profile_id, timeout=timeout,
                       max_media_bytes=max_media_bytes)


_clients: dict[str, WappiClient] = {}
_clients_pid: int | None = None


def get_client(profile_id: str) -> WappiClient:
    """This process's client for one profile (one account token covers all its profiles)."""
    global _clients_pid
    if _clients_pid != os.getpid():
        _clients.clear()
        _clients_pid = os.getpid()
    if profile_id not in _clients:
        settings = get_settings()
        _clients[profile_id] = build_client(settings.wappi_base_url, settings.wappi_token, profile_id,
                                            timeout=settings.wappi_timeout,
                                            max_media_bytes=settings.max_audio_bytes)
    return _clients[profile_id]
