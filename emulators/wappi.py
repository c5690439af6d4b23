"""In-memory emulator of the Wappi (wappi.pro) WhatsApp HTTP API.

Speaks the real wire format of the sync API subset the project uses (see
``/work/shared/reference/wappi-api.md``): paths under ``/api/sync/``, the raw
token in the ``Authorization`` header, ``profile_id`` as a query parameter on
every request, ``{"status": "done", "timestamp", "time", ...}`` envelopes and
``{"status": "error", "detail": ...}`` errors.

On top of that it exposes an unauthenticated control interface under
``/_emulator/`` (inject customer messages, read what the pipeline sent, fault
injection, webhook push, bulk seeding). Everything is kept in memory and
guarded by one lock; the HTTP server is threaded.

Run standalone::

    python -m emulators.wappi --host 127.0.0.1 --port 8701 --token T --profile P
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import copy
import json
import logging
import random
import secrets
import signal
import socket
import threading
import time as _time
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, cast

__all__ = ["EmulatorError", "WappiEmulator", "main"]

LOG = logging.getLogger(__name__)

JSON = dict[str, Any]

DEFAULT_TOKEN = "emulator-token"
DEFAULT_PROFILE_ID = "a1b2c3d4-e5f6"
DEFAULT_OWN_PHONE = "77000000000"
DEFAULT_CUSTOMER_NAME = "Клиент"

MSK = timezone(timedelta(hours=3))

# Message types whose file can be fetched through message/media/download.
MEDIA_TYPES = frozenset({"ptt", "audio", "image", "video", "document"})
# Types whose sync-API ``body`` is an object rather than a string.
OBJECT_BODY_TYPES = MEDIA_TYPES | {"sticker", "location", "vcard"}
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
FILE_LINK_TTL_SECONDS = 7 * 24 * 3600
WEBHOOK_FILE_LINK_TTL_SECONDS = 48 * 3600
WEBHOOK_TIMEOUT_SECONDS = 5.0
WEBHOOK_TYPES = [
    "authorization_status",
    "incoming_message",
    "delivery_status",
    "outgoing_message_phone",
    "outgoing_message_api",
    "application_status",
]
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_REQUEST_LOG = 100_000

SEND_PATHS = frozenset({"/api/sync/message/send", "/api/sync/message/reply"})
# Paths that still work for a logged-out profile.
UNAUTHORIZED_OK_PATHS = frozenset(
    {"/api/sync/get/status", "/api/webhook/url/set", "/api/webhook/url/get", "/api/webhook/url/delete"}
)
API_METHODS: dict[str, frozenset[str]] = {
    "/api/sync/get/status": frozenset({"GET"}),
    "/api/sync/chats/get": frozenset({"GET", "POST"}),
    "/api/sync/chats/filter": frozenset({"GET"}),
    "/api/sync/messages/get": frozenset({"GET"}),
    "/api/sync/messages/id/get": frozenset({"GET"}),
    "/api/sync/message/send": frozenset({"POST"}),
    "/api/sync/message/reply": frozenset({"POST"}),
    "/api/sync/message/mark/read": frozenset({"POST"}),
    "/api/sync/message/media/download": frozenset({"GET"}),
    "/api/webhook/url/set": frozenset({"POST"}),
    "/api/webhook/url/get": frozenset({"GET"}),
    "/api/webhook/url/delete": frozenset({"POST"}),
}
FAULT_KEYS = frozenset(
    {
        "rate_5xx",
        "rate_timeout",
        "timeout_seconds",
        "rate_accept_then_timeout",
        # Delivery faults: accepted and then a 5xx to the caller; accepted sends visible in the
        # history only after N seconds; Wappi's clock N seconds off the real one (negative: behind).
        "rate_accept_then_5xx",
        "history_lag_seconds",
        "clock_offset_seconds",
        "fail_next",
        "fail_status",
        "paths",
        "seed",
    }
)


class EmulatorError(ValueError):
    """A request the emulator rejects; rendered as ``{"status": "error", "detail": ...}``."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


# --------------------------------------------------------------------------- helpers


# Seconds added to every time the emulator gives (the `clock_offset_seconds` fault). Module-wide,
# like the clock it shifts: one emulator per process.
_clock_offset = 0.0


def _now() -> int:
    return int(_time.time() + _clock_offset)


def _seconds(value: Any) -> int:
    """A message ``time`` as unix seconds for ordering and rendering: a number in milliseconds
    (the `overrides` control can inject one) counts as its seconds; anything else as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value / 1000) if value > 100_000_000_000 else int(value)


def _rfc3339_msk(ts: float) -> str:
    """Wappi ``time`` fields: RFC3339 in Moscow time (``+03:00``)."""
    return datetime.fromtimestamp(_seconds(ts), MSK).isoformat(timespec="seconds")


def _rfc3339_utc(ts: float) -> str:
    """Dialog ``last_timestamp``: RFC3339 in UTC with ``Z``."""
    return datetime.fromtimestamp(_seconds(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(**fields: Any) -> JSON:
    ts = _now()
    return {"status": "done", "timestamp": ts, "time": _rfc3339_msk(ts), **fields}


def _error(detail: str) -> JSON:
    return {"status": "error", "detail": detail}


def _new_message_id() -> str:
    return secrets.token_hex(10).upper()


def _is_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _parse_chat_ref(raw: str) -> tuple[str, str, bool]:
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
            if not local or not all(part and _is_digits(part) for part in local.split("-")):
                raise EmulatorError(f"invalid group id: {raw}")
            return value, local, True
        if domain in CHANNEL_DOMAINS and local:
            # Channels, broadcast lists and status updates: keyed by their full id, not a phone.
            return value, local, False
        if domain not in ("c.us", "s.whatsapp.net"):
            raise EmulatorError(f"unsupported chat id: {raw}")
    if not (_is_digits(local) and 5 <= len(local) <= 20):
        raise EmulatorError(f"invalid phone number: {raw}")
    return local, local, False


def _query_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EmulatorError(f"invalid {name}: {raw}") from None
    if value < 0:
        raise EmulatorError(f"invalid {name}: {raw}")
    return value


def _query_bool(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").strip().lower() in ("true", "1", "yes")


def _parse_date(raw: str) -> int:
    """``YYYY-mm-ddTHH:MM:ss`` (UTC) or ``YYYY-mm-dd`` to unix seconds."""
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(raw, fmt).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    raise EmulatorError(f"invalid date: {raw} (expected YYYY-mm-ddTHH:MM:ss)")


def _require_str(payload: Mapping[str, Any], name: str, *, default: str | None = None) -> str:
    value = payload.get(name, default)
    if value is None:
        raise EmulatorError(f"{name} is required")
    if not isinstance(value, str):
        raise EmulatorError(f"{name} must be a string")
    return value


def _optional_int(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EmulatorError(f"{name} must be a number")
    return int(value)


def _optional_bool(payload: Mapping[str, Any], name: str) -> bool | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise EmulatorError(f"{name} must be a boolean")
    return value


# --------------------------------------------------------------------------- state


@dataclass
class _MediaFile:
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
class _MediaFaults:
    """media/download faults (separate from `_Faults`): fail for chosen messages only, or answer
    the next downloads with another message's file, as Wappi did for concurrent calls."""

    fail_message_ids: frozenset[str] = frozenset()
    fail_status: int = 400
    fail_detail: str = "download media error"
    cross_next: int = 0
    cross_kind: str = "file"  # "file": another message's file; "messages": a messages/get body
    crossed: int = 0  # crossed answers given so far (read back by tests)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> _MediaFaults:
        unknown = sorted(set(payload) - {"fail_message_ids", "fail_status", "fail_detail", "cross_next",
                                         "cross_kind"})
        if unknown:
            raise EmulatorError(f"unknown media fault keys: {', '.join(unknown)}")
        ids = payload.get("fail_message_ids") or []
        if not isinstance(ids, list) or not all(isinstance(item, str) and item for item in ids):
            raise EmulatorError("fail_message_ids must be a list of message ids")
        status = payload.get("fail_status", 400)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise EmulatorError("fail_status must be an HTTP error status (400-599)")
        detail = payload.get("fail_detail", "download media error")
        if not isinstance(detail, str):
            raise EmulatorError("fail_detail must be a string")
        cross_next = payload.get("cross_next", 0)
        if isinstance(cross_next, bool) or not isinstance(cross_next, int) or cross_next < 0:
            raise EmulatorError("cross_next must be a non-negative integer")
        cross_kind = payload.get("cross_kind", "file")
        if cross_kind not in ("file", "messages"):
            raise EmulatorError("cross_kind must be 'file' or 'messages'")
        return cls(fail_message_ids=frozenset(ids), fail_status=status, fail_detail=detail,
                   cross_next=cross_next, cross_kind=cross_kind)

    def public(self) -> JSON:
        return {"fail_message_ids": sorted(self.fail_message_ids), "fail_status": self.fail_status,
                "fail_detail": self.fail_detail, "cross_next": self.cross_next, "cross_kind": self.cross_kind,
                "crossed": self.crossed}


@dataclass
class _ChatFaults:
    """messages/get faults (separate from `_Faults`): chosen chats always fail, and the next
    `cross_next` answers hold another chat's messages, as Wappi did for concurrent calls."""

    fail_chats: frozenset[str] = frozenset()  # chat keys (phone digits, or the full id of a group)
    fail_status: int = 500
    cross_next: int = 0
    cross_kind: str = "chat"  # "chat": another chat's messages; "media": a media/download body
    dialog_overrides: Mapping[str, JSON] = field(default_factory=dict)  # chat key -> chats/get fields
    crossed: int = 0  # crossed answers given so far (read back by tests)
    failed: int = 0  # failed answers given so far

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> _ChatFaults:
        unknown = sorted(set(payload) - {"fail_chats", "fail_status", "cross_next", "cross_kind",
                                         "dialog_overrides"})
        if unknown:
            raise EmulatorError(f"unknown chat fault keys: {', '.join(unknown)}")
        chats = payload.get("fail_chats") or []
        if not isinstance(chats, list) or not all(isinstance(item, str) and item for item in chats):
            raise EmulatorError("fail_chats must be a list of phones or chat ids")
        status = payload.get("fail_status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise EmulatorError("fail_status must be an HTTP error status (400-599)")
        cross_next = payload.get("cross_next", 0)
        if isinstance(cross_next, bool) or not isinstance(cross_next, int) or cross_next < 0:
            raise EmulatorError("cross_next must be a non-negative integer")
        cross_kind = payload.get("cross_kind", "chat")
        if cross_kind not in ("chat", "media"):
            raise EmulatorError("cross_kind must be 'chat' or 'media'")
        overrides = payload.get("dialog_overrides") or {}
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise EmulatorError("dialog_overrides must map a phone or chat id to an object of dialog fields")
        return cls(fail_chats=frozenset(_parse_chat_ref(item)[0] for item in chats), fail_status=status,
                   cross_next=cross_next, cross_kind=cross_kind,
                   dialog_overrides={_parse_chat_ref(k)[0]: copy.deepcopy(v) for k, v in overrides.items()})

    def public(self) -> JSON:
        return {"fail_chats": sorted(self.fail_chats), "fail_status": self.fail_status,
                "cross_next": self.cross_next, "cross_kind": self.cross_kind, "crossed": self.crossed,
                "failed": self.failed, "dialog_overrides": dict(self.dialog_overrides)}


@dataclass
class _Chat:
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

    @property
    def display_name(self) -> str:
        if self.is_group:
            return self.group_name or self.local
        return self.full_name or self.first_name or self.push_name or self.business_name or self.local

    def add_message(self, message: JSON) -> None:
        """Keep ``messages`` ordered by time (oldest first, ties in insertion order)."""
        bisect.insort_right(self.messages, message, key=lambda m: _seconds(m["time"]))


@dataclass
class _Profile:
    profile_id: str
    authorized: bool = True
    app_status: str = "open"
    paid: bool = True
    authorized_at: int = field(default_factory=_now)
    logouted_at: int | None = None
    chats: dict[str, _Chat] = field(default_factory=dict)
    message_index: dict[str, str] = field(default_factory=dict)
    sent: list[JSON] = field(default_factory=list)
    webhook_url: str = ""
    webhook_secret: str = ""

    def reset(self) -> None:
        self.authorized = True
        self.app_status = "open"
        self.paid = True
        self.authorized_at = _now()
        self.logouted_at = None
        self.chats.clear()
        self.message_index.clear()
        self.sent.clear()
        self.webhook_url = ""
        self.webhook_secret = ""


@dataclass
class _Faults:
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    timeout_seconds: float = 3.0
    rate_accept_then_timeout: float = 0.0
    rate_accept_then_5xx: float = 0.0
    history_lag_seconds: float = 0.0
    clock_offset_seconds: float = 0.0
    fail_next: int = 0
    fail_status: int = 500
    paths: tuple[str, ...] = ()
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> _Faults:
        unknown = sorted(set(payload) - FAULT_KEYS)
        if unknown:
            raise EmulatorError(f"unknown fault keys: {', '.join(unknown)}")
        faults = cls()
        for name in ("rate_5xx", "rate_timeout", "rate_accept_then_timeout", "rate_accept_then_5xx"):
            value = payload.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise EmulatorError(f"{name} must be a number in [0, 1]")
            setattr(faults, name, float(value))
        timeout_seconds = payload.get("timeout_seconds", 3.0)
        if (
            isinstance(timeout_seconds, bool)
            or not isinstance(timeout_seconds, int | float)
            or timeout_seconds < 0
        ):
            raise EmulatorError("timeout_seconds must be a non-negative number")
        faults.timeout_seconds = float(timeout_seconds)
        lag = payload.get("history_lag_seconds", 0.0)
        if isinstance(lag, bool) or not isinstance(lag, int | float) or lag < 0:
            raise EmulatorError("history_lag_seconds must be a non-negative number")
        faults.history_lag_seconds = float(lag)
        offset = payload.get("clock_offset_seconds", 0.0)
        if isinstance(offset, bool) or not isinstance(offset, int | float):
            raise EmulatorError("clock_offset_seconds must be a number")
        faults.clock_offset_seconds = float(offset)
        fail_next = payload.get("fail_next", 0)
        if isinstance(fail_next, bool) or not isinstance(fail_next, int) or fail_next < 0:
            raise EmulatorError("fail_next must be a non-negative integer")
        faults.fail_next = fail_next
        fail_status = payload.get("fail_status", 500)
        if isinstance(fail_status, bool) or not isinstance(fail_status, int) or not 400 <= fail_status <= 599:
            raise EmulatorError("fail_status must be an HTTP error status (400-599)")
        faults.fail_status = fail_status
        paths = payload.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise EmulatorError("paths must be a list of non-empty strings")
        faults.paths = tuple(paths)
        seed = payload.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise EmulatorError("seed must be an integer")
        faults.seed = seed
        faults.rng = random.Random(seed)
        return faults

    def matches(self, path: str) -> bool:
        return not self.paths or any(fragment in path for fragment in self.paths)

    def public(self) -> JSON:
        return {
            "rate_5xx": self.rate_5xx,
            "rate_timeout": self.rate_timeout,
            "timeout_seconds": self.timeout_seconds,
            "rate_accept_then_timeout": self.rate_accept_then_timeout,
            "rate_accept_then_5xx": self.rate_accept_then_5xx,
            "history_lag_seconds": self.history_lag_seconds,
            "clock_offset_seconds": self.clock_offset_seconds,
            "fail_next": self.fail_next,
            "fail_status": self.fail_status,
            "paths": list(self.paths),
            "seed": self.seed,
        }


@dataclass
class _Fault:
    kind: str  # "status" | "timeout" | "accept_then_timeout" | "accept_then_5xx"
    status: int = 500
    seconds: float = 0.0


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"


def _json_response(status: int, payload: Any) -> _Response:
    return _Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


# --------------------------------------------------------------------------- HTTP layer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: WappiEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add about 40 ms to every keep-alive answer.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "WappiEmulator/1.0"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        emulator = cast(_Server, self.server).emulator
        try:
            raw_body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(_json_response(400, _error("Invalid request body")))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = emulator._process(method, self.path, headers, raw_body)
        if response is None:
            # Simulated timeout: drop the connection without any response.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(response)

    def _write(self, response: _Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)


# --------------------------------------------------------------------------- emulator


class WappiEmulator:
    """Threaded HTTP emulator of the Wappi WhatsApp sync API with a control interface."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        profile_ids: Sequence[str] = (DEFAULT_PROFILE_ID,),
        own_phone: str = DEFAULT_OWN_PHONE,
        *,
        public_url: str | None = None,
    ) -> None:
        if not profile_ids:
            raise ValueError("at least one profile id is required")
        if not _is_digits(own_phone):
            raise ValueError("own_phone must be digits only")
        self._host = host
        self._port = port
        self._token = token
        self._own_phone = own_phone
        self._own_jid = f"{own_phone}@c.us"
        self._public_url = public_url.rstrip("/") if public_url else None
        self._lock = threading.RLock()
        self._profiles: dict[str, _Profile] = {pid: _Profile(pid) for pid in profile_ids}
        self._files: dict[str, _MediaFile] = {}
        self._faults = _Faults()
        self._media_faults = _MediaFaults()
        self._chat_faults = _ChatFaults()
        # Accepted sends not yet in the chat history (history_lag_seconds): (visible at, chat, message).
        self._lagged: list[tuple[float, _Chat, JSON]] = []
        self._requests: deque[JSON] = deque(maxlen=MAX_REQUEST_LOG)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._seed_counter = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8701`` (valid after :meth:`start`)."""
        return self._public_url or self.listen_url

    @property
    def listen_url(self) -> str:
        """URL of the bound socket (differs from :attr:`url` only with ``public_url``)."""
        if self._server is None:
            raise RuntimeError("emulator is not started")
        port = self._server.server_address[1]
        host = self._host if self._host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def token(self) -> str:
        return self._token

    @property
    def profile_ids(self) -> list[str]:
        with self._lock:
            return list(self._profiles)

    def start(self) -> WappiEmulator:
        if self._server is not None:
            raise RuntimeError("emulator is already started")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="wappi-emulator",
            daemon=True,
        )
        self._thread.start()
        LOG.info("Wappi emulator started on %s", self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> WappiEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ public helpers

    def customer_message(
        self,
        profile_id: str,
        phone: str,
        text: str = "",
        *,
        type: str = "chat",
        name: str = DEFAULT_CUSTOMER_NAME,
        full_name: str = "",
        first_name: str = "",
        business_name: str = "",
        caption: str = "",
        media: bytes | None = None,
        media_b64: str | None = None,
        media_shape: str = "both",
        media_expired: bool = False,
        mimetype: str | None = None,
        file_name: str | None = None,
        duration: int | None = None,
        time: int | None = None,
        chat_suffix: str = "c.us",
        group: bool = False,
        group_id: str | None = None,
        group_name: str | None = None,
        stanza_id: str = "",
        is_forwarded: bool = False,
        latitude: float = 0.0,
        longitude: float = 0.0,
        overrides: Mapping[str, Any] | None = None,
    ) -> JSON:
        """Inject a message written by a customer; returns ``{"message_id", "chat_id", "time"}``.

        `overrides` replaces fields of the stored message as given, to produce what a real payload
        may hold: NUL and control characters, `time` in milliseconds, a numeric `id`, wrong types."""
        if media is not None and media_b64 is not None:
            raise EmulatorError("pass either media or media_b64, not both")
        if media_b64 is not None:
            try:
                media = base64.b64decode(media_b64, validate=True)
            except (binascii.Error, ValueError):
                raise EmulatorError("media_b64 is not valid base64") from None
        if media_shape not in MEDIA_SHAPES:
            raise EmulatorError(f"media_shape must be one of {', '.join(MEDIA_SHAPES)}")
        if chat_suffix not in ("c.us", "s.whatsapp.net"):
            raise EmulatorError("chat_suffix must be c.us or s.whatsapp.net")
        if not type:
            raise EmulatorError("type is required")
        if type == "chat" and not text:
            raise EmulatorError("text is required for chat messages")
        _, digits, is_group_ref = _parse_chat_ref(phone)
        if is_group_ref:
            raise EmulatorError("phone must be the customer's number, use group=true for group chats")
        ts = _now() if time is None else int(time)
        with self._lock:
            profile = self._profile(profile_id)
            sender_jid = f"{digits}@{chat_suffix}"
            if group:
                gid = group_id or f"120363{int(digits) % 10**12:012d}@g.us"
                key, local, is_group = _parse_chat_ref(gid)
                if not is_group:
                    raise EmulatorError("group_id must end with @g.us")
                chat = self._get_or_create_chat(profile, key, local, True, key)
                if group_name:
                    chat.group_name = group_name
                elif not chat.group_name:
                    chat.group_name = f"Group {local}"
                participant = f"{digits}@c.us"
                if participant not in chat.participants:
                    chat.participants.append(participant)
            else:
                chat = self._get_or_create_chat(profile, digits, digits, False, sender_jid)
                if name:
                    chat.push_name = name
                if full_name:
                    chat.full_name = full_name
                if first_name:
                    chat.first_name = first_name
                elif full_name and not chat.first_name:
                    chat.first_name = full_name.split()[0]
                if business_name:
                    chat.business_name = business_name
            media_file = None
            if type in MEDIA_TYPES:
                mime_default, ext = DEFAULT_MEDIA_FORMAT[type]
                data = media if media is not None else PLACEHOLDER_MEDIA[type]
                if duration is None:
                    duration = 3 if type in ("ptt", "audio", "video") else 0
                media_file = _MediaFile(
                    data=data,
                    mimetype=mimetype or mime_default,
                    file_name=file_name or f"{uuid.uuid4()}.{ext}",
                    media_type=type,
                    shape=media_shape,
                    duration=duration,
                    expired=media_expired,
                )
            message = self._build_message(
                profile,
                chat,
                msg_type=type,
                text=text,
                from_me=False,
                sender_jid=sender_jid,
                sender_name=name,
                ts=ts,
                caption=caption,
                stanza_id=stanza_id,
                from_api=False,
                from_where="phone",
                media=media_file,
                mimetype=mimetype,
                file_name=file_name,
                is_forwarded=is_forwarded,
                location=(latitude, longitude),
            )
            message["isRead"] = False
            if overrides:
                original_id = message["id"]
                chat.messages.remove(message)
                message.update(copy.deepcopy(dict(overrides)))
                chat.add_message(message)
                if message.get("id") != original_id:
                    profile.message_index.pop(original_id, None)
                    profile.message_index[str(message.get("id"))] = chat.key
            if type != "reaction":
                chat.unread_count += 1
            self._push_webhook(profile, chat, message, "incoming_message")
            return {"message_id": message["id"], "chat_id": chat.chat_id, "time": message["time"]}

    def phone_message(self, profile_id: str, phone: str, text: str, *, time: int | None = None) -> JSON:
        """Inject a message the operator typed on the business phone (``from_where: "phone"``)."""
        if not text:
            raise EmulatorError("text is required")
        key, local, is_group = _parse_chat_ref(phone)
        ts = _now() if time is None else int(time)
        with self._lock:
            profile = self._profile(profile_id)
            chat = self._get_or_create_chat(
                profile, key, local, is_group, key if is_group else f"{local}@c.us"
            )
            message = self._build_message(
                profile,
                chat,
                msg_type="chat",
                text=text,
                from_me=True,
                sender_jid=self._own_jid,
                sender_name="",
                ts=ts,
                from_api=False,
                from_where="phone",
            )
            self._push_webhook(profile, chat, message, "outgoing_message_phone")
            return {"message_id": message["id"], "chat_id": chat.chat_id, "time": message["time"]}

    def late_message(self, profile_id: str, phone: str, text: str, *, written_ago: int,
                     name: str = DEFAULT_CUSTOMER_NAME) -> JSON:
        """A customer message delivered now that was written `written_ago` seconds ago (the
        customer's phone was offline). It carries the time it was written, so it sorts by that
        time: before our reply when we answered in between. The dialog then still shows our
        reply as its last message (`last_message_id`, `last_time`, `last_message_sender.isMe`)
        and keeps its place in chats/get; only `unread_count` grows. (Wappi documents none of
        this; it is the inconvenient reading of a history ordered by `time`.)"""
        return self.customer_message(profile_id, phone, text, name=name, time=_now() - written_ago)

    def channel_message(self, profile_id: str, chat_id: str, text: str, *, sender: str = "") -> JSON:
        """A post in a chat that is no conversation with a person: a channel
        (`120363…@newsletter`), a broadcast list (`…@broadcast`) or a contact's status update
        (`status@broadcast`, `sender` = the poster's phone)."""
        key, local, is_group = _parse_chat_ref(chat_id)
        if is_group or "@" not in chat_id or chat_id.rpartition("@")[2] not in CHANNEL_DOMAINS:
            raise EmulatorError("chat_id must end with @newsletter or @broadcast")
        if not text:
            raise EmulatorError("text is required")
        with self._lock:
            profile = self._profile(profile_id)
            chat = self._get_or_create_chat(profile, key, local, False, key)
            sender_jid = f"{_parse_chat_ref(sender)[1]}@c.us" if sender else key
            message = self._build_message(profile, chat, msg_type="chat", text=text, from_me=False,
                                          sender_jid=sender_jid, sender_name=local, ts=_now(),
                                          from_api=False, from_where="phone")
            chat.unread_count += 1
            self._push_webhook(profile, chat, message, "incoming_message")
            return {"message_id": message["id"], "chat_id": chat.chat_id, "time": message["time"]}

    def set_chat_faults(self, config: Mapping[str, Any] | None = None) -> None:
        """Replace the messages/get faults (``{}`` disables them); see `_ChatFaults`."""
        chat_faults = _ChatFaults.from_payload(config or {})
        with self._lock:
            self._chat_faults = chat_faults

    def chat_faults(self) -> JSON:
        with self._lock:
            return self._chat_faults.public()

    def sent_messages(self, profile_id: str) -> list[JSON]:
        """Messages accepted through message/send and message/reply, in send order."""
        with self._lock:
            return copy.deepcopy(self._profile(profile_id).sent)

    def chat_messages(self, profile_id: str, phone: str) -> list[JSON]:
        """All messages of a chat (phone or chat id), oldest first; ``[]`` for an unknown chat."""
        key, _, _ = _parse_chat_ref(phone)
        with self._lock:
            chat = self._profile(profile_id).chats.get(key)
            return copy.deepcopy(chat.messages) if chat else []

    def set_profile(
        self,
        profile_id: str,
        *,
        authorized: bool | None = None,
        app_status: str | None = None,
        paid: bool | None = None,
    ) -> None:
        """Switch a profile's state (logged out, reconnecting, unpaid...)."""
        if app_status is not None and app_status not in APP_STATUSES:
            raise EmulatorError(f"app_status must be one of {', '.join(APP_STATUSES)}")
        with self._lock:
            profile = self._profile(profile_id)
            if authorized is not None and authorized != profile.authorized:
                profile.authorized = authorized
                if authorized:
                    profile.authorized_at = _now()
                    profile.logouted_at = None
                else:
                    profile.logouted_at = _now()
            if app_status is not None:
                profile.app_status = app_status
            elif authorized is not None:
                profile.app_status = "open" if authorized else "close"
            if paid is not None:
                profile.paid = paid

    def set_faults(self, config: Mapping[str, Any] | None = None) -> None:
        """Replace the fault-injection config (``None`` or ``{}`` disables all faults)."""
        faults = _Faults.from_payload(config or {})
        global _clock_offset
        with self._lock:
            self._faults = faults
            _clock_offset = faults.clock_offset_seconds

    def faults(self) -> JSON:
        with self._lock:
            return self._faults.public()

    def set_media_faults(self, config: Mapping[str, Any] | None = None) -> None:
        """Replace the media/download faults (``{}`` disables them); see `_MediaFaults`."""
        media_faults = _MediaFaults.from_payload(config or {})
        with self._lock:
            self._media_faults = media_faults

    def media_faults(self) -> JSON:
        with self._lock:
            return self._media_faults.public()

    def set_webhook(self, profile_id: str, url: str, secret: str = "") -> None:
        """Push injected messages to ``url`` (``""`` disables) with ``Authorization: <secret>``."""
        if url and not url.startswith(("http://", "https://")):
            raise EmulatorError("url must be http(s)")
        with self._lock:
            profile = self._profile(profile_id)
            profile.webhook_url = url
            profile.webhook_secret = secret

    def requests_log(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(list(self._requests))

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Clear chats, sent log, files, faults, request log and webhooks; profiles authorized/open."""
        with self._lock:
            for profile in self._profiles.values():
                profile.reset()
            self._files.clear()
            self._faults = _Faults()
            self._media_faults = _MediaFaults()
            self._chat_faults = _ChatFaults()
            self._lagged.clear()
            self._requests.clear()
        global _clock_offset
        _clock_offset = 0.0

    def seed_chats(
        self,
        profile_id: str,
        count: int,
        messages_per_chat: int = 1,
        start_time: int | None = None,
        *,
        read: bool = True,
    ) -> list[str]:
        """Bulk-create ``count`` 1:1 chats with inbound text messages; returns their chat ids.

        Message ``j`` of chat ``i`` gets time ``start_time + i * messages_per_chat + j``
        (default ``start_time``: one day ago). With ``read=True`` the messages are
        read and ``unread_count`` is 0 (old, already handled history).
        """
        if count < 0 or messages_per_chat < 1:
            raise EmulatorError("count must be >= 0 and messages_per_chat >= 1")
        base_time = _now() - 86_400 if start_time is None else int(start_time)
        chat_ids: list[str] = []
        with self._lock:
            profile = self._profile(profile_id)
            for i in range(count):
                while True:
                    self._seed_counter += 1
                    digits = f"7990{self._seed_counter:07d}"
                    if digits not in profile.chats:
                        break
                jid = f"{digits}@c.us"
                chat = _Chat(
                    key=digits, chat_id=jid, local=digits, is_group=False, push_name=f"Seed {digits[-7:]}"
                )
                profile.chats[digits] = chat
                for j in range(messages_per_chat):
                    message = self._base_message(
                        msg_id=self._unique_message_id(profile),
                        msg_type="chat",
                        sender=jid,
                        recipient=self._own_jid,
                        chat_id=jid,
                        from_me=False,
                        sender_name=chat.push_name,
                        ts=base_time + i * messages_per_chat + j,
                        body=f"Seed message {j + 1}",
                        from_where="phone",
                    )
                    message["isRead"] = read
                    message["contact_name"] = chat.display_name
                    chat.messages.append(message)
                    profile.message_index[message["id"]] = digits
                if not read:
                    chat.unread_count = messages_per_chat
                chat_ids.append(jid)
        return chat_ids

    # ------------------------------------------------------------------ state internals

    def _profile(self, profile_id: str) -> _Profile:
        profile = self._profiles.get(profile_id)
        if profile is None:
            raise EmulatorError("Profile not found")
        return profile

    def _get_or_create_chat(
        self, profile: _Profile, key: str, local: str, is_group: bool, chat_id: str
    ) -> _Chat:
        chat = profile.chats.get(key)
        if chat is None:
            chat = _Chat(key=key, chat_id=chat_id, local=local, is_group=is_group)
            if is_group:
                chat.group_name = f"Group {local}"
            profile.chats[key] = chat
        return chat

    def _unique_message_id(self, profile: _Profile) -> str:
        while True:
            msg_id = _new_message_id()
            if msg_id not in profile.message_index:
                return msg_id

    @staticmethod
    def _base_message(
        *,
        msg_id: str,
        msg_type: str,
        sender: str,
        recipient: str,
        chat_id: str,
        from_me: bool,
        sender_name: str,
        ts: int,
        body: Any,
        from_where: str,
        caption: str = "",
        stanza_id: str = "",
        is_reply: bool = False,
        from_api: bool = False,
        is_forwarded: bool = False,
    ) -> JSON:
        return {
            "id": msg_id,
            "type": msg_type,
            "from": sender,
            "to": recipient,
            "fromMe": from_me,
            "senderName": sender_name,
            "time": ts,
            "body": body,
            "caption": caption,
            "chatId": chat_id,
            "isForwarded": is_forwarded,
            "isReply": is_reply,
            "stanzaId": stanza_id,
            "isRead": False,
            "delivery_status": "delivered",
            "isFromAPI": from_api,
            "isDeleted": False,
            "isEdited": False,
            "isPinned": False,
            "s3Info": {},
            "poll_votes": None,
            "poll_options": None,
            "poll_select_count": 0,
            "media_info": None,
            "mimetype": "",
            "file_name": "",
            "from_where": from_where,
            "contact_name": "",
            "reply_message": None,
        }

    def _build_message(
        self,
        profile: _Profile,
        chat: _Chat,
        *,
        msg_type: str,
        text: str,
        from_me: bool,
        sender_jid: str,
        sender_name: str,
        ts: int,
        caption: str = "",
        stanza_id: str = "",
        from_api: bool,
        from_where: str,
        media: _MediaFile | None = None,
        mimetype: str | None = None,
        file_name: str | None = None,
        is_forwarded: bool = False,
        location: tuple[float, float] = (0.0, 0.0),
    ) -> JSON:
        """Create a sync-API message, store it in ``chat`` and index it (lock held)."""
        msg_id = self._unique_message_id(profile)
        body: Any = text
        if media is not None:
            body = {
                "url": f"https://mmg.whatsapp.net/v/t62.7117-24/{msg_id.lower()}.enc",
                "mimetype": media.mimetype,
                "fileLength": len(media.data),
                "caption": caption,
            }
            if msg_type in ("ptt", "audio", "video"):
                body["seconds"] = media.duration
            if msg_type == "ptt":
                body["PTT"] = True
            if msg_type in ("image", "video"):
                body.update({"width": 0, "height": 0, "JPEGThumbnail": ""})
            if msg_type == "document":
                body.update({"fileName": media.file_name, "title": media.file_name, "pageCount": 0})
        elif msg_type == "sticker":
            body = {"mimetype": mimetype or DEFAULT_MEDIA_FORMAT["sticker"][0], "isAnimated": False}
        elif msg_type == "location":
            body = {
                "degreesLatitude": location[0],
                "degreesLongitude": location[1],
                "name": text,
                "address": "",
            }
        elif msg_type == "vcard":
            body = {"displayName": text.splitlines()[0] if text else "", "vcard": text}
        is_reply = bool(stanza_id) and msg_type != "reaction"
        message = self._base_message(
            msg_id=msg_id,
            msg_type=msg_type,
            sender=sender_jid,
            recipient=self._own_jid if not from_me else chat.chat_id,
            chat_id=chat.chat_id,
            from_me=from_me,
            sender_name=sender_name,
            ts=ts,
            body=body,
            from_where=from_where,
            caption=caption,
            stanza_id=stanza_id,
            is_reply=is_reply,
            from_api=from_api,
            is_forwarded=is_forwarded,
        )
        message["contact_name"] = "" if from_me else chat.display_name
        if chat.is_group and not from_me:
            message["contact_name"] = sender_name
        if media is not None:
            message["mimetype"] = media.mimetype
            message["file_name"] = media.file_name
            message["media_info"] = {
                "width": 0,
                "height": 0,
                "size": len(media.data),
                "duration": media.duration,
                "is_round": False,
                "is_group": False,
                "grouped_id": "",
            }
            self._files[msg_id] = media
        elif file_name:
            message["file_name"] = file_name
        if is_reply:
            target = self._find_message(profile, stanza_id)
            if target is not None:
                message["reply_message"] = {
                    "id": target["id"],
                    "body": target["body"] if isinstance(target["body"], str) else "",
                    "type": target["type"],
                    "chatId": target["chatId"],
                    "caption": target["caption"],
                    "file_name": target["file_name"],
                    "contact_name": target["contact_name"],
                    "time": target["time"],
                }
        chat.add_message(message)
        profile.message_index[msg_id] = chat.key
        return message

    def _find_message(self, profile: _Profile, message_id: str) -> JSON | None:
        key = profile.message_index.get(message_id)
        chat = profile.chats.get(key) if key is not None else None
        if chat is None:
            return None
        for message in reversed(chat.messages):
            if message["id"] == message_id:
                return message
        return None

    def _dialog(self, chat: _Chat) -> JSON:
        last = chat.messages[-1] if chat.messages else None
        sender: JSON | None = None
        if last is not None:
            sender_jid = str(last["from"])
            sender = {
                "id": sender_jid,
                "number": sender_jid.partition("@")[0],
                "pushname": "" if last["fromMe"] else last["senderName"],
                "isMe": bool(last["fromMe"]),
            }
        last_data = ""
        if last is not None:
            last_data = last["body"] if isinstance(last["body"], str) else str(last["caption"] or "")
        return {
            "id": chat.chat_id,
            "contact": {
                "Found": not chat.is_group,
                "FirstName": chat.first_name,
                "FullName": chat.full_name,
                "PushName": chat.push_name,
                "BusinessName": chat.business_name,
            },
            "chat": {}
            if chat.is_group
            else {
                "VerifiedName": None,
                "Status": "",
                "PictureID": "",
                "Devices": [chat.chat_id],
            },
            "group": (
                {
                    "Name": chat.group_name,
                    "Participants": [
                        {"JID": jid, "IsAdmin": False, "IsSuperAdmin": False} for jid in chat.participants
                    ],
                }
                if chat.is_group
                else None
            ),
            "isGroup": chat.is_group,
            "image": "",
            "thumbnail": "",
            "avatar_updated_at": 0,
            "last_message_id": last["id"] if last else "",
            "last_timestamp": _rfc3339_utc(last["time"]) if last else 0,
            "last_time": last["time"] if last else 0,
            "last_message_type": last["type"] if last else "",
            "last_message_sender": sender,
            "last_message_data": last_data,
            "name": chat.display_name,
            "unread_count": chat.unread_count,
            "isDeleted": False,
            "isArchived": False,
        }

    def _webhook_message(self, profile: _Profile, chat: _Chat, message: JSON, wh_type: str) -> JSON:
        media = self._files.get(message["id"])
        caption = message["caption"]
        payload: JSON = {
            "wh_type": wh_type,
            "profile_id": profile.profile_id,
            "id": message["id"],
            "body": message["body"],
            "type": message["type"],
            "from": message["from"],
            "to": message["to"],
            "senderName": message["senderName"],
            "senderLastName": "",
            "chatId": message["chatId"],
            "timestamp": _rfc3339_msk(message["time"]),
            "time": message["time"],
            "caption": caption or None,
            "from_where": message["from_where"],
            "contact_name": message["contact_name"] if not message["fromMe"] else chat.display_name,
            "contact_last_name": "",
            "contact_phone": "",
            "contact_username": "",
            "is_forwarded": message["isForwarded"],
            "isReply": message["isReply"],
            "is_edited": False,
            "stanza_id": message["stanzaId"],
            "is_me": message["fromMe"],
            "chat_type": "group" if chat.is_group else "dialog",
            "thumbnail": "",
            "picture": "",
            "wappi_bot_id": "",
            "is_deleted": False,
            "is_bot": False,
            "attaches": None,
            "platform": "whatsapp",
            "is_callback": False,
            "is_command": False,
            "is_topic": False,
        }
        if message["reply_message"] is not None:
            payload["reply_message"] = copy.deepcopy(message["reply_message"])
        if media is not None:
            payload.update(
                {
                    "body": base64.b64encode(media.data).decode("ascii"),
                    "file_name": media.file_name,
                    "mimetype": media.mimetype,
                    "file_link": self._file_link(message["id"], None),
                    "file_link_expire": _now() + (-3600 if media.expired else WEBHOOK_FILE_LINK_TTL_SECONDS),
                    "length_seconds": media.duration,
                    "media_info": copy.deepcopy(message["media_info"]),
                    "isGif": False,
                }
            )
        return payload

    def _push_webhook(self, profile: _Profile, chat: _Chat, message: JSON, wh_type: str) -> None:
        """Queue a webhook POST for ``message`` if the profile has a webhook (lock held)."""
        if not profile.webhook_url:
            return
        try:
            payload = {"messages": [self._webhook_message(profile, chat, message, wh_type)]}
        except RuntimeError:
            LOG.warning("webhook skipped: emulator URL unknown before start()")
            return
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        url, secret = profile.webhook_url, profile.webhook_secret
        threading.Thread(
            target=self._post_webhook, args=(url, secret, data), name="wappi-webhook", daemon=True
        ).start()

    @staticmethod
    def _post_webhook(url: str, secret: str, data: bytes) -> None:
        request = urllib.request.Request(url, data=data, method="POST")
        request.add_header("Content-Type", "application/json; charset=utf-8")
        if secret:
            request.add_header("Authorization", secret)
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
                response.read()
        except Exception as exc:  # noqa: BLE001 - webhook errors are only logged
            LOG.warning("webhook POST to %s failed: %s", url, exc)

    def _file_link(self, message_id: str, host: str | None) -> str:
        base = self._public_url or (f"http://{host}" if host else self.url)
        return f"{base}/_emulator/files/{message_id}"

    # ------------------------------------------------------------------ request processing

    def _process(
        self, method: str, raw_path: str, headers: Mapping[str, str], raw_body: bytes
    ) -> _Response | None:
        """Handle one HTTP request; ``None`` means "close the connection without a response"."""
        split = urllib.parse.urlsplit(raw_path)
        path = split.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
        try:
            if path.startswith("/api/"):
                return self._process_api(method, path, query, headers, raw_body)
            if path.startswith("/_emulator/") or path == "/_emulator":
                return self._process_control(method, path, query, raw_body)
            return _json_response(404, _error("Not found"))
        except Exception:  # pragma: no cover - defensive, keeps the server alive
            LOG.exception("emulator failed on %s %s", method, raw_path)
            return _json_response(500, _error("Internal emulator error"))

    def _log_request(
        self, method: str, path: str, query: Mapping[str, str], status: int | None, fault: str
    ) -> None:
        entry: JSON = {"method": method, "path": path, "query": dict(query), "status": status}
        if fault:
            entry["fault"] = fault
        with self._lock:
            self._requests.append(entry)

    def _decide_fault(self, path: str) -> _Fault | None:
        with self._lock:
            faults = self._faults
            if not faults.matches(path):
                return None
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return _Fault("status", status=faults.fail_status)
            if faults.rate_5xx and faults.rng.random() < faults.rate_5xx:
                status = faults.fail_status if faults.fail_status >= 500 else 500
                return _Fault("status", status=status)
            if faults.rate_timeout and faults.rng.random() < faults.rate_timeout:
                return _Fault("timeout", seconds=faults.timeout_seconds)
            if (
                path in SEND_PATHS
                and faults.rate_accept_then_timeout
                and faults.rng.random() < faults.rate_accept_then_timeout
            ):
                return _Fault("accept_then_timeout", seconds=faults.timeout_seconds)
            if (
                path in SEND_PATHS
                and faults.rate_accept_then_5xx
                and faults.rng.random() < faults.rate_accept_then_5xx
            ):
                return _Fault("accept_then_5xx", status=faults.fail_status if faults.fail_status >= 500 else 500)
            return None

    def _process_api(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], raw_body: bytes
    ) -> _Response | None:
        fault = self._decide_fault(path)
        if fault is not None and fault.kind == "status":
            self._log_request(method, path, query, fault.status, "status")
            try:
                phrase = HTTPStatus(fault.status).phrase
            except ValueError:
                phrase = "Error"
            return _json_response(fault.status, _error(phrase))
        if fault is not None and fault.kind == "timeout":
            self._log_request(method, path, query, None, "timeout")
            self._stopping.wait(fault.seconds)
            return None

        status, payload = self._api_call(method, path, query, headers, raw_body)
        if fault is not None and fault.kind == "accept_then_timeout" and status == 200:
            self._log_request(method, path, query, None, "accept_then_timeout")
            self._stopping.wait(fault.seconds)
            return None
        if fault is not None and fault.kind == "accept_then_5xx" and status == 200:
            self._log_request(method, path, query, fault.status, "accept_then_5xx")
            return _json_response(fault.status, _error(HTTPStatus(fault.status).phrase))
        self._log_request(method, path, query, status, "")
        return _json_response(status, payload)

    def _api_call(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], raw_body: bytes
    ) -> tuple[int, JSON]:
        methods = API_METHODS.get(path)
        if methods is None:
            return 404, _error("Not found")
        if method not in methods:
            return 405, _error("Method not allowed")
        if headers.get("authorization") != self._token:
            return 401, _error("Unauthorized")
        body: Any = {}
        if raw_body.strip():
            try:
                body = json.loads(raw_body)
            except (ValueError, UnicodeDecodeError):
                return 400, _error("Invalid JSON body")
        with self._lock:
            profile = self._profiles.get(query.get("profile_id", ""))
            if profile is None:
                return 400, _error("Profile not found")
            if not profile.paid:
                return 402, _error("Profile is not paid")
            if not profile.authorized and path not in UNAUTHORIZED_OK_PATHS:
                return 400, _error("Profile is not authorized")
            self._release_lagged()
            handler = self._api_handlers()[path]
            try:
                return 200, handler(profile, query, body, headers.get("host"))
            except EmulatorError as exc:
                return exc.status, _error(exc.detail)

    def _release_lagged(self) -> None:
        """Lagged sends whose time has come join their chat's history (lock held)."""
        now = _time.time()
        due = [item for item in self._lagged if item[0] <= now]
        if due:
            self._lagged = [item for item in self._lagged if item[0] > now]
            for _, chat, message in due:
                chat.add_message(message)

    def _api_handlers(self) -> dict[str, Callable[[_Profile, Mapping[str, str], Any, str | None], JSON]]:
        return {
            "/api/sync/get/status": self._api_status,
            "/api/sync/chats/get": self._api_chats_get,
            "/api/sync/chats/filter": self._api_chats_filter,
            "/api/sync/messages/get": self._api_messages_get,
            "/api/sync/messages/id/get": self._api_message_by_id,
            "/api/sync/message/send": self._api_send,
            "/api/sync/message/reply": self._api_reply,
            "/api/sync/message/mark/read": self._api_mark_read,
            "/api/sync/message/media/download": self._api_media_download,
            "/api/webhook/url/set": self._api_webhook_set,
            "/api/webhook/url/get": self._api_webhook_get,
            "/api/webhook/url/delete": self._api_webhook_delete,
        }

    # The _api_* handlers run with the lock held and return the 200 payload.

    def _api_status(self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        now = _time.time()
        return {
            "app_status": profile.app_status,
            "authorized": profile.authorized,
            "authorized_at": _rfc3339_msk(profile.authorized_at) if profile.authorized else None,
            "checked_at": _rfc3339_msk(now),
            "last_activity": now,
            "logouted_at": _rfc3339_msk(profile.logouted_at) if profile.logouted_at is not None else None,
            "message_count": sum(len(chat.messages) for chat in profile.chats.values()),
            "name": f"Emulator {profile.profile_id}",
            "payment_expired_at": _rfc3339_utc(now + 365 * 86_400)
            if profile.paid
            else _rfc3339_utc(now - 86_400),
            "payment_notification": True,
            "phone": self._own_phone if profile.authorized else "",
            "platform": "wz",
            "profile_id": profile.profile_id,
            "proxy": "",
            "uuid": profile.profile_id,
            "webhook_types": list(WEBHOOK_TYPES),
            "webhook_url": profile.webhook_url,
            "worked_days": 30,
        }

    def _sorted_chats(self, chats: list[_Chat], query: Mapping[str, str]) -> list[_Chat]:
        def sort_key(chat: _Chat) -> tuple[int, str]:
            last = chat.messages[-1] if chat.messages else None
            return (_seconds(last["time"]), str(last["id"])) if last else (0, "")

        ascending = query.get("order", "desc").lower() == "asc"
        return sorted(chats, key=sort_key, reverse=not ascending)

    def _chats_page(self, chats: list[_Chat], query: Mapping[str, str]) -> JSON:
        ordered = self._sorted_chats(chats, query)
        offset = _query_int(query, "offset", 0)
        if _query_bool(query, "show_all"):
            page = ordered[offset:]
        else:
            page = ordered[offset : offset + _query_int(query, "limit", 200)]
        return _envelope(
            detail="Chats fetched",
            dialogs=[{**self._dialog(chat), **self._chat_faults.dialog_overrides.get(chat.key, {})}
                     for chat in page],
            total_count=len(ordered),
        )

    def _api_chats_get(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        chats = list(profile.chats.values())
        filter_ = body.get("filter") if isinstance(body, dict) else None
        ids = filter_.get("ids") if isinstance(filter_, dict) else None
        if isinstance(ids, list) and ids:
            keys = {_parse_chat_ref(str(raw))[0] for raw in ids}
            chats = [chat for chat in chats if chat.key in keys]
        return self._chats_page(chats, query)

    def _api_chats_filter(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        needle = query.get("client_name", "").strip().lower()
        chats = list(profile.chats.values())
        if needle:

            def matches(chat: _Chat) -> bool:
                last = chat.messages[-1] if chat.messages else None
                last_text = last["body"] if last and isinstance(last["body"], str) else ""
                return any(needle in value.lower() for value in (chat.local, chat.display_name, last_text))

            chats = [chat for chat in chats if matches(chat)]
        return self._chats_page(chats, query)

    def _api_messages_get(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        chat_ref = query.get("chat_id", "")
        if not chat_ref:
            raise EmulatorError("chat_id is required")
        key, _, _ = _parse_chat_ref(chat_ref)
        limit = _query_int(query, "limit", 50)
        offset = _query_int(query, "offset", 0)
        order = query.get("order", "desc").lower()
        if order not in ("asc", "desc"):
            raise EmulatorError(f"invalid order: {order}")
        since = _parse_date(query["date"]) if query.get("date") else None
        chat = profile.chats.get(key)
        chat_faults = self._chat_faults
        if key in chat_faults.fail_chats:
            chat_faults.failed += 1
            raise EmulatorError("messages get error", chat_faults.fail_status)
        if chat_faults.cross_next > 0 and chat_faults.cross_kind == "media":
            # A crossed answer of another kind: the body of a concurrent media/download.
            chat_faults.cross_next -= 1
            chat_faults.crossed += 1
            return _envelope(task_id=str(uuid.uuid4()), uuid=profile.profile_id, media_type="ptt",
                             mime_type="audio/ogg; codecs=opus", file_name=f"{uuid.uuid4()}.ogg",
                             file_b64=base64.b64encode(b"OggS\x00crossed-download-body").decode("ascii"))
        if chat_faults.cross_next > 0:
            # A crossed answer: the history of the most recently active other chat.
            others = [other for other in self._sorted_chats(list(profile.chats.values()), {})
                      if other.key != key and other.messages]
            if others:
                chat_faults.cross_next -= 1
                chat_faults.crossed += 1
                chat = others[0]
        messages = list(chat.messages) if chat else []
        if since is not None:
            messages = [m for m in messages if _seconds(m["time"]) >= since]
        if order == "desc":
            messages.reverse()
        page = messages[offset : offset + limit]
        if _query_bool(query, "reverse"):
            page.reverse()
        if chat is not None and _query_bool(query, "mark_all") and not chat.is_group:
            self._mark_chat_read(chat, None)
        return _envelope(messages=copy.deepcopy(page), total_count=len(messages), uuid=profile.profile_id)

    def _api_message_by_id(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        message = self._find_message(profile, query.get("message_id", ""))
        if message is None:
            raise EmulatorError("message not found")
        return _envelope(message=copy.deepcopy(message), uuid=profile.profile_id)

    def _record_sent(self, profile: _Profile, chat: _Chat, text: str, reply_to: str | None) -> JSON:
        message = self._build_message(
            profile,
            chat,
            msg_type="chat",
            text=text,
            from_me=True,
            sender_jid=self._own_jid,
            sender_name="",
            ts=_now(),
            stanza_id=reply_to or "",
            from_api=True,
            from_where="api",
        )
        if self._faults.history_lag_seconds > 0:
            # The customer has it, but messages/get and chats/get show it only after the lag.
            chat.messages.remove(message)
            self._lagged.append((_time.time() + self._faults.history_lag_seconds, chat, message))
        profile.sent.append(
            {
                "chat_id": chat.chat_id,
                "phone": chat.local,
                "body": text,
                "message_id": message["id"],
                "reply_to": reply_to,
                "time": message["time"],
                "accepted_at": _time.time(),  # float seconds, for latency benchmarks
            }
        )
        return _envelope(message_id=message["id"], task_id=str(uuid.uuid4()))

    @staticmethod
    def _send_body(body: Any) -> str:
        if not isinstance(body, dict):
            raise EmulatorError("JSON object body is required")
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            raise EmulatorError("body is required")
        return text

    def _api_send(self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        text = self._send_body(body)
        recipient = body.get("recipient")
        if not isinstance(recipient, str) or not recipient.strip():
            raise EmulatorError("recipient is required")
        key, local, is_group = _parse_chat_ref(recipient)
        chat = self._get_or_create_chat(profile, key, local, is_group, key if is_group else f"{local}@c.us")
        return self._record_sent(profile, chat, text, None)

    def _api_reply(self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        text = self._send_body(body)
        message_id = body.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise EmulatorError("message_id is required")
        key = profile.message_index.get(message_id)
        chat = profile.chats.get(key) if key is not None else None
        if chat is None:
            raise EmulatorError("message not found")
        return self._record_sent(profile, chat, text, message_id)

    @staticmethod
    def _mark_chat_read(chat: _Chat, message_id: str | None) -> None:
        for message in chat.messages:
            if not message["fromMe"] and (message_id is None or message["id"] == message_id):
                message["isRead"] = True
        chat.unread_count = 0

    def _api_mark_read(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        message_id = body.get("message_id") if isinstance(body, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise EmulatorError("message_id is required")
        key = profile.message_index.get(message_id)
        chat = profile.chats.get(key) if key is not None else None
        if chat is None:
            raise EmulatorError("message not found")
        self._mark_chat_read(chat, None if _query_bool(query, "mark_all") else message_id)
        return _envelope(uuid=profile.profile_id)

    def _api_media_download(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        message_id = query.get("message_id", "")
        media = self._files.get(message_id)
        if media is None or message_id not in profile.message_index or media.expired:
            raise EmulatorError("download media error")
        media_faults = self._media_faults
        if message_id in media_faults.fail_message_ids:
            raise EmulatorError(media_faults.fail_detail, media_faults.fail_status)
        if media_faults.cross_next > 0 and media_faults.cross_kind == "messages":
            # A crossed answer of another kind: the body of a concurrent messages/get.
            media_faults.cross_next -= 1
            media_faults.crossed += 1
            chat = next((c for c in profile.chats.values() if message_id in {m.get("id") for m in c.messages}),
                        None)
            page = list(reversed(chat.messages))[:50] if chat is not None else []
            return _envelope(messages=copy.deepcopy(page), total_count=len(page), uuid=profile.profile_id)
        if media_faults.cross_next > 0:
            # A crossed answer: another message's file (the newest other one), or a decoy.
            media_faults.cross_next -= 1
            media_faults.crossed += 1
            others = [other for other_id, other in self._files.items()
                      if other_id != message_id and other_id in profile.message_index]
            media = others[-1] if others else _MediaFile(
                data=b"OggS\x00crossed-answer-of-another-message", mimetype=media.mimetype,
                file_name=f"{uuid.uuid4()}.ogg", media_type=media.media_type, shape=media.shape,
                duration=media.duration)
        payload = _envelope(
            task_id=str(uuid.uuid4()),
            uuid=profile.profile_id,
            media_type=media.media_type,
            mime_type=media.mimetype,
            file_name=media.file_name,
        )
        if media.shape in ("b64", "both"):
            payload["file_b64"] = base64.b64encode(media.data).decode("ascii")
        if media.shape in ("link", "both"):
            payload["file_link"] = self._file_link(message_id, host)
            payload["file_link_expire"] = _now() + FILE_LINK_TTL_SECONDS
        return payload

    def _api_webhook_set(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        url = query.get("url", "")
        if not url.startswith(("http://", "https://")):
            raise EmulatorError("url must be http(s)")
        profile.webhook_url = url
        profile.webhook_secret = query.get("auth", "")
        return _envelope()

    def _api_webhook_get(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        if not profile.webhook_url:
            return {"detail": "WebHook не установлен", "status": "done", "url": "", "installed": False}
        return {
            "detail": f"WebHook установлен на адрес {profile.webhook_url}",
            "status": "done",
            "url": profile.webhook_url,
            "installed": True,
        }

    def _api_webhook_delete(
        self, profile: _Profile, query: Mapping[str, str], body: Any, host: str | None
    ) -> JSON:
        profile.webhook_url = ""
        profile.webhook_secret = ""
        return _envelope()

    # ------------------------------------------------------------------ control interface

    def _process_control(
        self, method: str, path: str, query: Mapping[str, str], raw_body: bytes
    ) -> _Response:
        if path.startswith("/_emulator/files/") and method == "GET":
            message_id = path.removeprefix("/_emulator/files/")
            with self._lock:
                media = self._files.get(message_id)
            if media is None:
                return _json_response(404, _error("file not found"))
            if media.expired:  # what an expired signed S3 link answers
                return _Response(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                                 content_type="application/xml")
            return _Response(200, media.data, content_type=media.mimetype)
        body: Any = {}
        if raw_body.strip():
            try:
                body = json.loads(raw_body)
            except (ValueError, UnicodeDecodeError):
                return _json_response(400, _error("Invalid JSON body"))
        if method == "POST" and not isinstance(body, dict):
            return _json_response(400, _error("JSON object body is required"))
        route = self._control_routes().get((method, path))
        if route is None:
            return _json_response(404, _error("Not found"))
        try:
            return _json_response(200, route(query, body))
        except EmulatorError as exc:
            return _json_response(exc.status, _error(exc.detail))

    def _control_routes(self) -> dict[tuple[str, str], Callable[[Mapping[str, str], Any], Any]]:
        return {
            ("GET", "/_emulator/health"): lambda q, b: {"status": "ok"},
            ("POST", "/_emulator/customer_message"): self._ctl_customer_message,
            ("POST", "/_emulator/phone_message"): self._ctl_phone_message,
            ("GET", "/_emulator/chat"): self._ctl_chat,
            ("GET", "/_emulator/sent"): self._ctl_sent,
            ("GET", "/_emulator/requests"): lambda q, b: {"requests": self.requests_log()},
            ("POST", "/_emulator/requests/clear"): self._ctl_clear_requests,
            ("POST", "/_emulator/reset"): self._ctl_reset,
            ("GET", "/_emulator/faults"): lambda q, b: self.faults(),
            ("POST", "/_emulator/faults"): self._ctl_faults,
            ("GET", "/_emulator/media_faults"): lambda q, b: self.media_faults(),
            ("POST", "/_emulator/media_faults"): self._ctl_media_faults,
            ("GET", "/_emulator/chat_faults"): lambda q, b: self.chat_faults(),
            ("POST", "/_emulator/chat_faults"): self._ctl_chat_faults,
            ("POST", "/_emulator/late_message"): self._ctl_late_message,
            ("POST", "/_emulator/channel_message"): self._ctl_channel_message,
            ("POST", "/_emulator/profile"): self._ctl_profile,
            ("POST", "/_emulator/webhook"): self._ctl_webhook,
            ("POST", "/_emulator/seed_chats"): self._ctl_seed_chats,
        }

    def _ctl_customer_message(self, query: Mapping[str, str], body: JSON) -> JSON:
        allowed = {
            "profile_id", "phone", "text", "type", "name", "full_name", "first_name", "business_name",
            "caption", "media_b64", "media_shape", "media_expired", "mimetype", "file_name", "duration", "time",
            "chat_suffix", "group", "group_id", "group_name", "stanza_id", "is_forwarded",
            "latitude", "longitude", "overrides",
        }  # fmt: skip
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise EmulatorError(f"unknown fields: {', '.join(unknown)}")
        latitude = body.get("latitude", 0.0)
        longitude = body.get("longitude", 0.0)
        if not isinstance(latitude, int | float) or not isinstance(longitude, int | float):
            raise EmulatorError("latitude and longitude must be numbers")
        overrides = body.get("overrides")
        if overrides is not None and not isinstance(overrides, dict):
            raise EmulatorError("overrides must be an object")
        media_b64 = body.get("media_b64")
        if media_b64 is not None and not isinstance(media_b64, str):
            raise EmulatorError("media_b64 must be a string")
        group_id = body.get("group_id")
        group_name = body.get("group_name")
        mimetype = body.get("mimetype")
        file_name = body.get("file_name")
        for label, value in (("group_id", group_id), ("group_name", group_name), ("mimetype", mimetype),
                             ("file_name", file_name)):  # fmt: skip
            if value is not None and not isinstance(value, str):
                raise EmulatorError(f"{label} must be a string")
        return self.customer_message(
            _require_str(body, "profile_id"),
            _require_str(body, "phone"),
            _require_str(body, "text", default=""),
            type=_require_str(body, "type", default="chat"),
            name=_require_str(body, "name", default=DEFAULT_CUSTOMER_NAME),
            full_name=_require_str(body, "full_name", default=""),
            first_name=_require_str(body, "first_name", default=""),
            business_name=_require_str(body, "business_name", default=""),
            caption=_require_str(body, "caption", default=""),
            media_b64=media_b64,
            media_shape=_require_str(body, "media_shape", default="both"),
            media_expired=bool(_optional_bool(body, "media_expired")),
            mimetype=mimetype,
            file_name=file_name,
            duration=_optional_int(body, "duration"),
            time=_optional_int(body, "time"),
            chat_suffix=_require_str(body, "chat_suffix", default="c.us"),
            group=bool(_optional_bool(body, "group")),
            group_id=group_id,
            group_name=group_name,
            stanza_id=_require_str(body, "stanza_id", default=""),
            is_forwarded=bool(_optional_bool(body, "is_forwarded")),
            latitude=float(latitude),
            longitude=float(longitude),
            overrides=overrides,
        )

    def _ctl_phone_message(self, query: Mapping[str, str], body: JSON) -> JSON:
        return self.phone_message(
            _require_str(body, "profile_id"),
            _require_str(body, "phone"),
            _require_str(body, "text"),
            time=_optional_int(body, "time"),
        )

    def _ctl_chat(self, query: Mapping[str, str], body: Any) -> JSON:
        profile_id = query.get("profile_id", "")
        phone = query.get("phone", "")
        if not phone:
            raise EmulatorError("phone is required")
        return {"messages": self.chat_messages(profile_id, phone)}

    def _ctl_sent(self, query: Mapping[str, str], body: Any) -> JSON:
        return {"messages": self.sent_messages(query.get("profile_id", ""))}

    def _ctl_clear_requests(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.clear_requests()
        return {"status": "done"}

    def _ctl_reset(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.reset()
        return {"status": "done"}

    def _ctl_faults(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.set_faults(body)
        return {"status": "done", "faults": self.faults()}

    def _ctl_media_faults(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.set_media_faults(body)
        return {"status": "done", "media_faults": self.media_faults()}

    def _ctl_chat_faults(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.set_chat_faults(body)
        return {"status": "done", "chat_faults": self.chat_faults()}

    def _ctl_late_message(self, query: Mapping[str, str], body: JSON) -> JSON:
        unknown = sorted(set(body) - {"profile_id", "phone", "text", "written_ago", "name"})
        if unknown:
            raise EmulatorError(f"unknown fields: {', '.join(unknown)}")
        written_ago = _optional_int(body, "written_ago")
        if written_ago is None or written_ago < 0:
            raise EmulatorError("written_ago (seconds, >= 0) is required")
        return self.late_message(_require_str(body, "profile_id"), _require_str(body, "phone"),
                                 _require_str(body, "text"), written_ago=written_ago,
                                 name=_require_str(body, "name", default=DEFAULT_CUSTOMER_NAME))

    def _ctl_channel_message(self, query: Mapping[str, str], body: JSON) -> JSON:
        unknown = sorted(set(body) - {"profile_id", "chat_id", "text", "sender"})
        if unknown:
            raise EmulatorError(f"unknown fields: {', '.join(unknown)}")
        return self.channel_message(_require_str(body, "profile_id"), _require_str(body, "chat_id"),
                                    _require_str(body, "text"), sender=_require_str(body, "sender", default=""))

    def _ctl_profile(self, query: Mapping[str, str], body: JSON) -> JSON:
        app_status = body.get("app_status")
        if app_status is not None and not isinstance(app_status, str):
            raise EmulatorError("app_status must be a string")
        self.set_profile(
            _require_str(body, "profile_id"),
            authorized=_optional_bool(body, "authorized"),
            app_status=app_status,
            paid=_optional_bool(body, "paid"),
        )
        return {"status": "done"}

    def _ctl_webhook(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.set_webhook(
            _require_str(body, "profile_id"),
            _require_str(body, "url", default=""),
            _require_str(body, "secret", default=""),
        )
        return {"status": "done"}

    def _ctl_seed_chats(self, query: Mapping[str, str], body: JSON) -> JSON:
        count = _optional_int(body, "count")
        if count is None:
            raise EmulatorError("count is required")
        messages_per_chat = _optional_int(body, "messages_per_chat")
        read = _optional_bool(body, "read")
        chat_ids = self.seed_chats(
            _require_str(body, "profile_id"),
            count,
            messages_per_chat=1 if messages_per_chat is None else messages_per_chat,
            start_time=_optional_int(body, "start_time"),
            read=True if read is None else read,
        )
        return {"status": "done", "created": len(chat_ids)}


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m emulators.wappi", description="Wappi WhatsApp API emulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument(
        "--profile", action="append", dest="profiles", help="profile id (repeatable; default a1b2c3d4-e5f6)"
    )
    parser.add_argument("--own-phone", default=DEFAULT_OWN_PHONE)
    parser.add_argument("--public-url", default=None, help="base URL used in file links (e.g. inside docker)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    emulator = WappiEmulator(
        host=args.host,
        port=args.port,
        token=args.token,
        profile_ids=args.profiles or [DEFAULT_PROFILE_ID],
        own_phone=args.own_phone,
        public_url=args.public_url,
    )
    stop_requested = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    emulator.start()
    try:
        print(f"Wappi emulator listening on {emulator.listen_url}", flush=True)
        while not stop_requested.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    main()
