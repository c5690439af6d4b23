"""Telegram Bot API client: typed results, typed errors, and a parser of `Update` objects into a
small message record.

The `requests.Session` and base URL are injected, so tests run this exact code against the local
emulator over HTTP. Callers never see a `requests` exception, and the bot token (a part of every
URL path) never appears in a log line or an error message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from clients.channel import (
    ChannelAuthError,
    ChannelError,
    ChannelRateLimitedError,
    ChannelRejectedError,
    ChannelTransientError,
    Media,
    MediaRef,
    MediaTooLargeError,
    ProfileStatus,
    RecipientUnreachableError,
    SendResult,
)
from clients.channel import json_int as _int
from clients.channel import json_str as _str

TOKEN_MASK = "<token>"
# getUpdates' long-poll wait is capped by the server; the HTTP read timeout is kept above it.
MAX_POLL_TIMEOUT = 50


class TelegramError(ChannelError):
    """Base of every Bot API failure. `description` is Telegram's own text, never the token."""

    def __init__(self, message: str, *, error_code: int | None = None, description: str = "",
                 method: str = "") -> None:
        super().__init__(message)
        self.error_code = error_code
        self.description = description
        self.method = method


class TelegramTransientError(TelegramError, ChannelTransientError):
    """Network error, timeout, 5xx or 429: worth retrying later. `retry_after` is the server's
    hint in seconds (tasks.base.backoff takes it as a floor), None when it gave none."""

    def __init__(self, message: str, *, error_code: int | None = None, description: str = "",
                 method: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, error_code=error_code, description=description, method=method)
        self.retry_after = retry_after


class TelegramRateLimitedError(TelegramTransientError, ChannelRateLimitedError):
    """429 Too Many Requests; `retry_after` comes from `parameters.retry_after`."""


class TelegramUnauthorizedError(TelegramError, ChannelAuthError):
    """401: the bot token is wrong or revoked; needs an operator, not a retry."""


class TelegramBlockedError(TelegramError, RecipientUnreachableError):
    """403: the user blocked the bot or deleted the account; never send to this chat again."""


class TelegramChatNotFoundError(TelegramError, ChannelRejectedError):
    """400 chat not found: an unknown or wrong chat id; retrying won't help."""


class TelegramRejectedError(TelegramError, ChannelRejectedError):
    """Any other 4xx (a bad request, 409 conflict, a 403 that is not a block): retrying won't help."""


class TelegramFileTooLargeError(TelegramRejectedError, MediaTooLargeError):
    """The file is over the caller's cap (or Telegram's 20 MB for getFile): refused from
    Content-Length or while reading, never after the whole file is in memory."""


class TelegramMalformedUpdateError(TelegramError):
    """An `Update` that cannot be read (no update_id, not an object)."""


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BotInfo:
    id: int
    username: str
    first_name: str


@dataclass(frozen=True)
class SentMessage:
    message_id: int
    date: int  # Telegram's unix time of the send


@dataclass(frozen=True)
class FileInfo:
    file_id: str
    file_unique_id: str
    file_size: int
    file_path: str


@dataclass(frozen=True)
class TelegramUser:
    id: int
    is_bot: bool
    first_name: str
    last_name: str = ""
    username: str = ""
    language_code: str = ""


@dataclass(frozen=True)
class TelegramMedia:
    """A file a message carries. `kind` is voice, audio, photo (the largest size), document or sticker."""

    kind: str
    file_id: str
    file_unique_id: str
    file_size: int = 0
    mime_type: str = ""
    duration: int = 0
    file_name: str = ""
    emoji: str = ""  # stickers only


@dataclass(frozen=True)
class TelegramMessage:
    """One `Update` as the product reads it. `kind` is the Update's field: message,
    edited_message, my_chat_member, or `other` (an update type the product does not read)."""

    update_id: int
    kind: str
    chat_id: int | None = None
    chat_type: str = ""  # private, group, supergroup, channel
    sender: TelegramUser | None = None
    message_id: int = 0
    date: int = 0
    text: str = ""
    caption: str = ""
    media: TelegramMedia | None = None
    edited: bool = False
    edit_date: int = 0
    member_status: str = ""  # my_chat_member: the bot's new status in the chat (kicked = blocked)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_private(self) -> bool:
        return self.chat_type == "private"

    @property
    def is_voice(self) -> bool:
        return self.media is not None and self.media.kind in ("voice", "audio")

    @property
    def blocked_bot(self) -> bool:
        """The user blocked the bot (or removed it from the chat)."""
        return self.kind == "my_chat_member" and self.member_status in ("kicked", "left")

    @property
    def unblocked_bot(self) -> bool:
        return self.kind == "my_chat_member" and self.member_status == "member"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _user(value: Any) -> TelegramUser | None:
    item = _mapping(value)
    if not isinstance(item.get("id"), int) or isinstance(item.get("id"), bool):
        return None
    return TelegramUser(id=int(item["id"]), is_bot=item.get("is_bot") is True,
                        first_name=_str(item.get("first_name")), last_name=_str(item.get("last_name")),
                        username=_str(item.get("username")), language_code=_str(item.get("language_code")))


def _media(kind: str, value: Any) -> TelegramMedia | None:
    item = _mapping(value)
    file_id = _str(item.get("file_id"))
    if not file_id:
        return None
    return TelegramMedia(kind=kind, file_id=file_id, file_unique_id=_str(item.get("file_unique_id")),
                         file_size=_int(item.get("file_size")), mime_type=_str(item.get("mime_type")),
                         duration=_int(item.get("duration")), file_name=_str(item.get("file_name")),
                         emoji=_str(item.get("emoji")))


def _message_media(message: Mapping[str, Any]) -> TelegramMedia | None:
    for kind in ("voice", "audio", "document", "sticker"):
        if kind in message:
            return _media(kind, message[kind])
    sizes = message.get("photo")
    if isinstance(sizes, list) and sizes:
        # The sizes come smallest first; the largest is the one worth reading.
        largest = max((size for size in sizes if isinstance(size, Mapping)),
                      key=lambda size: _int(size.get("file_size")) or _int(size.get("width")), default=None)
        return _media("photo", largest)
    return None


def parse_update(update: Any) -> TelegramMessage:
    """One Bot API `Update`; every field but `update_id` optional."""
    if not isinstance(update, Mapping) or not isinstance(update.get("update_id"), int):
        raise TelegramMalformedUpdateError("an update without an integer update_id")
    update_id = int(update["update_id"])
    for kind in ("message", "edited_message"):
        message = update.get(kind)
        if isinstance(message, Mapping):
            chat = _mapping(message.get("chat"))
            chat_id = chat.get("id")
            return TelegramMessage(
                update_id=update_id, kind=kind,
                chat_id=chat_id if isinstance(chat_id, int) and not isinstance(chat_id, bool) else None,
                chat_type=_str(chat.get("type")), sender=_user(message.get("from")),
                message_id=_int(message.get("message_id")), date=_int(message.get("date")),
                text=_str(message.get("text")), caption=_str(message.get("caption")),
                media=_message_media(message), edited=kind == "edited_message",
                edit_date=_int(message.get("edit_date")), raw=update,
            )
    member = update.get("my_chat_member")
    if isinstance(member, Mapping):
        chat = _mapping(member.get("chat"))
        chat_id = chat.get("id")
        return TelegramMessage(
            update_id=update_id, kind="my_chat_member",
            chat_id=chat_id if isinstance(chat_id, int) and not isinstance(chat_id, bool) else None,
            chat_type=_str(chat.get("type")), sender=_user(member.get("from")), date=_int(member.get("date")),
            member_status=_str(_mapping(member.get("new_chat_member")).get("status")), raw=update,
        )
    return TelegramMessage(update_id=update_id, kind="other", raw=update)


# -- the token stays out of logs ------------------------------------------------------------


class _TokenFilter(logging.Filter):
    """Masks bot tokens in urllib3's debug lines, which print each request's path."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()
        self._lock = threading.Lock()

    def add(self, token: str) -> None:
        with self._lock:
            self.tokens.add(token)

    def filter(self, record: logging.LogRecord) -> bool:
        tokens = tuple(self.tokens)
        if tokens:
            message = record.getMessage()
            masked = message
            for token in tokens:
                masked = masked.replace(token, TOKEN_MASK)
            if masked != message:
                record.msg, record.args = masked, None
        return True


_token_filter = _TokenFilter()
logging.getLogger("urllib3.connectionpool").addFilter(_token_filter)


# -- the client ------------------------------------------------------------------------------


class TelegramClient:
    """One bot. Nothing is retried inside the client: the caller's task decides, so a retried
    send cannot multiply into a duplicate message."""

    def __init__(self, session: requests.Session, base_url: str, token: str, *, timeout: float = 20.0) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        if token:
            _token_filter.add(token)

    def __repr__(self) -> str:
        return f"TelegramClient({self._base_url!r}, token={TOKEN_MASK})"

    def _mask(self, text: str) -> str:
        return text.replace(self._token, TOKEN_MASK) if self._token else text

    # -- transport -------------------------------------------------------------------------
    def _call(self, method: str, params: Mapping[str, Any] | None = None, *,
              timeout: float | None = None) -> Any:
        url = f"{self._base_url}/bot{self._token}/{method}"
        wait = self._timeout if timeout is None else timeout
        try:
            response = self._session.post(url, json=dict(params or {}), timeout=wait)
        except requests.Timeout:
            # `from None`: the requests exception's text holds the URL, so the token, and a logged
            # traceback would print it. Only its type is kept.
            raise TelegramTransientError(f"Telegram {method}: timed out after {wait}s", method=method) from None
        except requests.RequestException as exc:
            raise TelegramTransientError(f"Telegram {method}: {type(exc).__name__}", method=method) from None
        return self._decode(method, response)

    def _decode(self, method: str, response: requests.Response) -> Any:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        body: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
        if status == 200 and body.get("ok") is True and "result" in body:
            return body["result"]
        code = _int(body.get("error_code")) or status
        description = self._mask(_str(body.get("description")) or response.text[:200])
        raise self._error(method, code, description, _mapping(body.get("parameters")),
                          not_json=payload is None)

    def _error(self, method: str, code: int, description: str, parameters: Mapping[str, Any], *,
               not_json: bool = False) -> TelegramError:
        message = f"Telegram {method}: {code} {description}".strip()
        fields: dict[str, Any] = {"error_code": code, "description": description, "method": method}
        lowered = description.lower()
        if code == 429:
            retry_after = parameters.get("retry_after")
            hint = float(retry_after) if isinstance(retry_after, int | float) and retry_after > 0 else None
            return TelegramRateLimitedError(message, retry_after=hint, **fields)
        if code >= 500 or (not_json and code == 200):
            return TelegramTransientError(message, **fields)
        if code == 401:
            return TelegramUnauthorizedError(message, **fields)
        if code == 403 and ("blocked by the user" in lowered or "user is deactivated" in lowered):
            return TelegramBlockedError(message, **fields)
        if code == 400 and "chat not found" in lowered:
            return TelegramChatNotFoundError(message, **fields)
        if code == 400 and "file is too big" in lowered:
            return TelegramFileTooLargeError(message, **fields)
        return TelegramRejectedError(message, **fields)

    # -- API -------------------------------------------------------------------------------
    def get_me(self) -> BotInfo:
        result = _mapping(self._call("getMe"))
        return BotInfo(id=_int(result.get("id")), username=_str(result.get("username")),
                       first_name=_str(result.get("first_name")))

    def get_updates(self, offset: int | None = None, timeout: int = 0, limit: int = 100,
                    allowed_updates: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The earliest unconfirmed updates, as Telegram sent them (parse each with
        `parse_update`, so one unreadable item costs only itself). Passing `offset` confirms every
        update below it; `timeout` is the long-poll wait in seconds (capped at 50)."""
        wait = max(0, min(int(timeout), MAX_POLL_TIMEOUT))
        params: dict[str, Any] = {"timeout": wait, "limit": limit}
        if offset is not None:
            params["offset"] = offset
        if allowed_updates is not None:
            params["allowed_updates"] = list(allowed_updates)
        result = self._call("getUpdates", params, timeout=self._timeout + wait)
        if not isinstance(result, list):
            raise TelegramTransientError("Telegram getUpdates: the result is not a list", method="getUpdates")
        return [item for item in result if isinstance(item, dict)]

    def send_message(self, chat_id: int | str, text: str, reply_to_message_id: int | None = None) -> SentMessage:
        """Plain text (no parse_mode: model output would break MarkdownV2 or HTML). A reply to a
        message that is gone is sent as a plain message rather than refused."""
        params: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if reply_to_message_id is not None:
            params["reply_parameters"] = {"message_id": reply_to_message_id, "allow_sending_without_reply": True}
        result = _mapping(self._call("sendMessage", params))
        message_id = _int(result.get("message_id"))
        if not message_id:
            raise TelegramRejectedError("Telegram sendMessage: no message_id in the result", method="sendMessage")
        return SentMessage(message_id=message_id, date=_int(result.get("date")))

    def get_file(self, file_id: str) -> FileInfo:
        result = _mapping(self._call("getFile", {"file_id": file_id}))
        file_path = _str(result.get("file_path"))
        if not file_path:
            raise TelegramRejectedError("Telegram getFile: no file_path in the result", method="getFile")
        return FileInfo(file_id=_str(result.get("file_id")), file_unique_id=_str(result.get("file_unique_id")),
                        file_size=_int(result.get("file_size")), file_path=file_path)

    def download_file(self, file_path: str, max_bytes: int) -> bytes:
        """The file at `file_path` (from get_file), streamed; over `max_bytes` it is refused."""
        url = f"{self._base_url}/file/bot{self._token}/{file_path.lstrip('/')}"
        method = "file download"
        try:
            with self._session.get(url, timeout=self._timeout, stream=True) as response:
                if response.status_code != 200:
                    try:
                        payload = response.json()
                    except ValueError:
                        payload = None
                    body = _mapping(payload)
                    description = self._mask(_str(body.get("description")) or response.reason or "")
                    raise self._error(method, response.status_code, description, _mapping(body.get("parameters")))
                length = response.headers.get("Content-Length", "")
                declared = int(length) if length.isdigit() else 0
                if declared > max_bytes:
                    raise TelegramFileTooLargeError(
                        f"Telegram {method}: Content-Length {declared} is over the cap of {max_bytes}", method=method)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TelegramFileTooLargeError(
                            f"Telegram {method}: over the cap of {max_bytes} bytes while reading", method=method)
                    chunks.append(chunk)
                return b"".join(chunks)
        except requests.Timeout:
            raise TelegramTransientError(f"Telegram {method}: timed out after {self._timeout}s",
                                         method=method) from None  # no URL (token) in the chain
        except requests.RequestException as exc:
            raise TelegramTransientError(f"Telegram {method}: {type(exc).__name__}", method=method) from None

    def set_webhook(self, url: str, secret_token: str, *, allowed_updates: Sequence[str] | None = None,
                    drop_pending_updates: bool = False) -> None:
        params: dict[str, Any] = {"url": url, "secret_token": secret_token,
                                  "drop_pending_updates": drop_pending_updates}
        if allowed_updates is not None:
            params["allowed_updates"] = list(allowed_updates)
        self._call("setWebhook", params)

    def delete_webhook(self, *, drop_pending_updates: bool = False) -> None:
        self._call("deleteWebhook", {"drop_pending_updates": drop_pending_updates})


def message_key(chat_id: int | str, message_id: int | str) -> str:
    """A bot message's id as the pipeline stores it: message ids count per chat, so the chat is part of it."""
    return f"{chat_id}:{message_id}"


class TelegramBotChannel:
    """One bot as a channel of the pipeline (`clients.channel.Channel`). A bot reads no chat
    history (so an unclear send is sent again, not looked up), replies by quoting the customer's
    message (sent plain if it is gone), and downloads a voice note by its `file_id`."""

    reads_history = False

    def __init__(self, client: TelegramClient, profile_id: str, *, max_media_bytes: int = 20 * 1024 * 1024) -> None:
        self.client = client
        self.profile_id = profile_id
        self._max_media_bytes = max_media_bytes

    def __repr__(self) -> str:
        return f"TelegramBotChannel({self.profile_id!r})"

    def get_status(self) -> ProfileStatus:
        """getMe: a bot whose token works is always "connected"; a revoked token raises
        TelegramUnauthorizedError."""
        me = self.client.get_me()
        return ProfileStatus(authorized=True, app_status="open", phone="", name=f"@{me.username}")

    def send_message(self, recipient: str, text: str) -> SendResult:
        sent = self.client.send_message(int(recipient), text)
        return SendResult(message_id=message_key(recipient, sent.message_id), task_id="", time=sent.date)

    def reply(self, message_id: str, text: str) -> SendResult:
        chat_id, _, quoted = message_id.partition(":")
        if not quoted.isdigit():
            return self.send_message(chat_id, text)
        sent = self.client.send_message(int(chat_id), text, reply_to_message_id=int(quoted))
        return SendResult(message_id=message_key(chat_id, sent.message_id), task_id="", time=sent.date)

    def get_messages(self, chat_id: str, *, limit: int = 50, offset: int = 0) -> list[Any]:
        return []  # a bot cannot read a chat's history

    def download_media(self, message_id: str, expected: MediaRef | None = None) -> Media:
        if expected is None or not expected.file_id:
            raise TelegramRejectedError(f"Telegram voice note {message_id}: no file_id was stored", method="getFile")
        info = self.client.get_file(expected.file_id)
        data = self.client.download_file(info.file_path, self._max_media_bytes)
        return Media(data=data, mime_type=expected.mime_type or "audio/ogg",
                     file_name=expected.file_name or info.file_path.rsplit("/", 1)[-1], media_type="ptt")


def build_client(base_url: str, token: str, *, timeout: float) -> TelegramClient:
    return TelegramClient(requests.Session(), base_url, token, timeout=timeout)
