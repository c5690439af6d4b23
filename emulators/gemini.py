"""Local emulator of the Gemini REST API (``models/{model}:generateContent``) for offline tests.

The real google-genai SDK talks to it unchanged via ``HttpOptions(base_url=..., api_version="v1beta")``;
answers are deterministic Russian texts, JSON built from the response schema, or scripted by tests.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import json
import logging
import random
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

GENERATE_ROUTE = re.compile(
    r"^(?P<prefix>/.*?)?/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):generateContent$"
)
CONTROL_ROUTE = re.compile(r"^(?P<prefix>/.*?)?/_emulator/(?P<action>[a-z_]+)/?$")
ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?")
LONG_WORD = re.compile(r"[^\W\d_]{4,}")
WORD = re.compile(r"\w+")

JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
TRANSCRIPT_MARKER = b"TRANSCRIPT:"
NO_SPEECH_TEXT = "Голосовое сообщение без распознаваемой речи."
MAX_EXCERPT_CHARS = 60
MAX_GROUNDING_CHARS = 200
MAX_SCHEMA_DEPTH = 12

LEAD_WORDS = (
    "цена", "цены", "стоимост", "сколько", "купить", "заказ", "доставк", "прайс",
    "интересует", "хочу", "записаться", "оплат", "скидк",
)  # fmt: skip
NON_LEAD_WORDS = (
    "реклам", "поставщик", "сотрудничеств", "мам", "друг", "как дела", "спам", "вакансия",
)  # fmt: skip
YES_WORDS = frozenset({"да", "давайте", "согласен", "согласна", "хорошо", "ок", "окей", "ok"})
NO_PHRASES = ("не надо", "не интересно", "не интересует", "неинтересно", "не нужно")
# A demo heuristic, not a model: a boolean `opt_out` property is true when the last customer text
# asks us to stop writing (one of these) and is not a question or a purchase ("Стоп, а сколько
# стоит доставка?" is false). Tests that need another answer script it (`/_emulator/script`).
OPT_OUT_CUES = (
    "не пишите мне", "мне не пишите", "больше не пишите", "не пишите больше", "отпишите", "отписаться",
    "хватит писать", "хватит мне писать", "перестаньте писать", "не беспокойте", "удалите мой номер",
    "уберите меня", "unsubscribe", "stop messaging", "stop texting", "stop writing", "жазбаңыз",
)  # fmt: skip
# The first part of a user turn that is the product's contact data (names), not a customer message.
CONTACT_DATA_START = "=== ДАННЫЕ КОНТАКТА"
DECISION_SYNONYMS = {
    "yes": ("yes", "да", "agree", "accept", "accepted", "true", "y"),
    "no": ("no", "нет", "decline", "declined", "reject", "rejected", "false", "n"),
    "unclear": ("unclear", "unknown", "maybe", "неясно", "не ясно", "other"),
}

RPC_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report the issue.",
    ),
    501: ("UNIMPLEMENTED", "Method not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}


def _pick(mapping: dict[str, Any], *keys: str) -> Any:
    """Return the first present key: the API accepts both camelCase and snake_case spellings."""
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


def _normalize(text: str) -> str:
    return text.lower().replace("ё", "е")


def _decode_base64(data: str) -> bytes:
    """Decode either base64 alphabet, with or without padding; garbage decodes to b""."""
    cleaned = "".join(data.split()).replace("+", "-").replace("/", "_").rstrip("=")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.urlsafe_b64decode(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _parse_seconds(delay: str) -> float | None:
    try:
        return float(delay.strip().rstrip("s"))
    except ValueError:
        return None


def error_body(code: int, message: str | None = None, retry_delay: str | None = None) -> dict[str, Any]:
    """Google RPC error body, as the real API returns it."""
    status, default_message = RPC_STATUS.get(code, ("UNKNOWN", "Unknown error."))
    text = message or default_message
    error: dict[str, Any] = {"code": code, "message": text, "status": status}
    if code == 429 and retry_delay:
        seconds = _parse_seconds(retry_delay)
        if message is None and seconds is not None:
            error["message"] = f"{text} Please retry in {seconds:.1f}s."
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": retry_delay,
            }
        ]
    return {"error": error}


class _Conversation:
    """The parts of a generateContent request that the deterministic answers depend on."""

    def __init__(self, body: dict[str, Any]) -> None:
        contents = body.get("contents") or []
        self.contents: list[dict[str, Any]] = [c for c in contents if isinstance(c, dict)]
        system = _pick(body, "systemInstruction", "system_instruction")
        self.system_texts = self._texts(system) if isinstance(system, dict) else []
        config = _pick(body, "generationConfig", "generation_config") or {}
        self.config: dict[str, Any] = config if isinstance(config, dict) else {}

    @staticmethod
    def _parts(content: dict[str, Any]) -> list[dict[str, Any]]:
        parts = content.get("parts") or []
        return [p for p in parts if isinstance(p, dict)]

    @classmethod
    def _texts(cls, content: dict[str, Any]) -> list[str]:
        return [p["text"] for p in cls._parts(content) if isinstance(p.get("text"), str)]

    @staticmethod
    def _is_user(content: dict[str, Any]) -> bool:
        return content.get("role") in (None, "", "user")

    @classmethod
    def _customer_texts(cls, content: dict[str, Any]) -> list[str]:
        """A user turn's texts, without the product's contact data block (names are not messages)."""
        return [text for text in cls._texts(content) if not text.startswith(CONTACT_DATA_START)]

    @property
    def user_texts(self) -> list[str]:
        return [text for c in self.contents if self._is_user(c) for text in self._customer_texts(c)]

    @property
    def last_user_text(self) -> str:
        for content in reversed(self.contents):
            if self._is_user(content):
                return "\n".join(self._customer_texts(content))
        return ""

    @property
    def system_text(self) -> str:
        return "\n".join(self.system_texts)

    @property
    def prompt_chars(self) -> int:
        all_texts = [text for c in self.contents for text in self._texts(c)]
        return sum(len(text) for text in all_texts + self.system_texts)

    def inline_blobs(self) -> list[bytes]:
        blobs: list[bytes] = []
        for content in self.contents:
            for part in self._parts(content):
                blob = _pick(part, "inlineData", "inline_data")
                if isinstance(blob, dict):
                    data = blob.get("data")
                    blobs.append(_decode_base64(data) if isinstance(data, str) else b"")
        return blobs

    @property
    def response_mime_type(self) -> str:
        value = _pick(self.config, "responseMimeType", "response_mime_type")
        return value if isinstance(value, str) else ""

    @property
    def response_schema(self) -> dict[str, Any] | None:
        schema = _pick(
            self.config,
            "responseJsonSchema", "response_json_schema", "responseSchema", "response_schema",
        )  # fmt: skip
        return schema if isinstance(schema, dict) else None


def transcribe(blobs: Iterable[bytes]) -> str:
    """Fake ASR: tests embed ``TRANSCRIPT:<text>`` in otherwise meaningless Ogg bytes."""
    for blob in blobs:
        position = blob.find(TRANSCRIPT_MARKER)
        if position >= 0:
            tail = blob[position + len(TRANSCRIPT_MARKER) :].split(b"\x00", 1)[0]
            return tail.decode("utf-8", errors="replace").strip()
    return NO_SPEECH_TEXT


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= MAX_EXCERPT_CHARS:
        return flat
    return flat[: MAX_EXCERPT_CHARS - 1].rstrip() + "…"


def _long_words(text: str) -> set[str]:
    return set(LONG_WORD.findall(_normalize(text)))


KB_START = "=== БАЗА ЗНАНИЙ ==="
KB_END = "=== КОНЕЦ БАЗЫ ЗНАНИЙ ==="
SLOTS_PREFIX = "СВОБОДНОЕ ВРЕМЯ:"


def _stems(text: str) -> set[str]:
    """Crude Russian stemming: the first five letters of each long word ("доставку" ~ "доставка")."""
    return {word[:5] for word in _long_words(text)}


def knowledge_block(system_text: str) -> str:
    """The knowledge-base part of a system instruction (between the markers), or ""."""
    start = system_text.find(KB_START)
    if start < 0:
        return ""
    end = system_text.find(KB_END, start)
    return system_text[start + len(KB_START) : end if end >= 0 else None]


def grounding_line(system_text: str, question: str) -> str | None:
    """The knowledge-base line sharing most word stems with the question (first on ties)."""
    question_words = _stems(question)
    best_line, best_score = None, 0
    for raw_line in knowledge_block(system_text).splitlines():
        line = raw_line.strip().lstrip("-*•").strip()
        score = len(_stems(line) & question_words)
        if score > best_score:
            best_line, best_score = line, score
    if best_line is None:
        return None
    if len(best_line) > MAX_GROUNDING_CHARS:
        return best_line[: MAX_GROUNDING_CHARS - 1].rstrip() + "…"
    return best_line


def sales_reply(conversation: _Conversation) -> str:
    """A polite, deterministic Russian reply that imitates grounding in the knowledge base."""
    question = conversation.last_user_text
    excerpt = _excerpt(question)
    if not excerpt:
        return "Здравствуйте! Спасибо за сообщение. Чем могу помочь?"
    sentences = ["Здравствуйте!", f"Вы спросили: «{excerpt}»."]
    line = grounding_line(conversation.system_text, question)
    if line:
        end = "" if line.endswith((".", "!", "?", "…")) else "."
        sentences.append(f"По нашим данным: {line}{end}")
    for raw_line in conversation.system_text.splitlines():
        if raw_line.strip().startswith(SLOTS_PREFIX):
            slots = raw_line.strip()[len(SLOTS_PREFIX) :].strip()
            sentences.append(f"Это время не подходит, могу предложить созвон: {slots}.")
            break
    sentences.append("Чем ещё могу помочь?")
    return " ".join(sentences)


def detect_lead(user_text: str) -> tuple[bool | None, float, str]:
    """Keyword lead detector: (is_client, confidence, reasoning)."""
    text = _normalize(user_text)
    for word in LEAD_WORDS:
        if word in text:
            return (
                True,
                0.9,
                f"Клиент интересуется покупкой: в сообщении есть «{word}».",
            )
    for word in NON_LEAD_WORDS:
        if word in text:
            return (
                False,
                0.85,
                f"Сообщение не похоже на обращение клиента: найдено «{word}».",
            )
    return None, 0.5, "Недостаточно признаков, чтобы понять, клиент ли это."


def detect_opt_out(text: str) -> bool:
    """The demo heuristic behind `opt_out` (see OPT_OUT_CUES)."""
    flat = " ".join(WORD.findall(_normalize(text)))
    if "?" in text or any(word in flat for word in LEAD_WORDS):
        return False
    return any(cue in flat for cue in OPT_OUT_CUES)


def detect_decision(text: str) -> str:
    """Classify a reply to a yes/no question as "yes", "no" or "unclear"."""
    joined = f" {' '.join(WORD.findall(_normalize(text)))} "
    joined = joined.replace(" нет проблем ", " ок ").replace(" без проблем ", " ок ")  # idioms for yes
    tokens = joined.split()
    if "нет" in tokens or any(f" {phrase} " in joined for phrase in NO_PHRASES):
        return "no"
    if YES_WORDS.intersection(tokens):
        return "yes"
    return "unclear"


class _SchemaFiller:
    """Build a value satisfying a response schema, in OpenAPI-subset or JSON-Schema form."""

    def __init__(self, root: dict[str, Any], conversation: _Conversation, transcript: str | None) -> None:
        self.root = root
        self.conversation = conversation
        self.transcript = transcript

    # --- schema helpers -------------------------------------------------------------------

    def resolve(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str) or depth > MAX_SCHEMA_DEPTH:
            return schema
        target: Any = self.root
        for token in ref.lstrip("#").strip("/").split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            target = target.get(token) if isinstance(target, dict) else None
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return self.resolve({**(target if isinstance(target, dict) else {}), **siblings}, depth + 1)

    def variants(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        options = _pick(schema, "anyOf", "any_of", "oneOf", "one_of")
        if not isinstance(options, list):
            return []
        return [self.resolve(option) for option in options]

    def merged(self, schema: dict[str, Any]) -> dict[str, Any]:
        parts = _pick(schema, "allOf", "all_of")
        if not isinstance(parts, list):
            return schema
        result = {k: v for k, v in schema.items() if k not in ("allOf", "all_of")}
        for part in map(self.resolve, parts):
            for key, value in part.items():
                if key == "properties" and isinstance(value, dict):
                    result["properties"] = {**result.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    result["required"] = [*result.get("required", []), *value]
                else:
                    result.setdefault(key, value)
        return result

    @staticmethod
    def types(schema: dict[str, Any]) -> tuple[list[str], bool]:
        raw = schema.get("type")
        names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        lowered = [str(name).lower() for name in names]
        nullable = schema.get("nullable") is True or "null" in lowered
        concrete = [name for name in lowered if name not in ("null", "type_unspecified")]
        if not concrete:
            if isinstance(schema.get("properties"), dict):
                concrete = ["object"]
            elif "items" in schema:
                concrete = ["array"]
        return concrete, nullable

    def is_nullable(self, schema: dict[str, Any]) -> bool:
        schema = self.merged(self.resolve(schema))
        _, nullable = self.types(schema)
        return nullable or any(self.is_nullable(v) for v in self.variants(schema))

    def conforms(self, value: Any, schema: Any, depth: int = 0) -> bool:
        schema = self.merged(self.resolve(schema))
        if depth > MAX_SCHEMA_DEPTH:
            return True
        variants = self.variants(schema)
        if variants and not any(self.conforms(value, v, depth + 1) for v in variants):
            return False
        enum = schema.get("enum")
        if isinstance(enum, list) and value not in enum:
            return False
        names, nullable = self.types(schema)
        if not names:
            return True  # untyped, or already checked against its anyOf variants
        if value is None:
            return nullable
        if isinstance(value, bool):
            ok = "boolean" in names
        elif isinstance(value, int):
            ok = "integer" in names or "number" in names
        elif isinstance(value, float):
            ok = "number" in names
        elif isinstance(value, str):
            ok = "string" in names
        elif isinstance(value, list):
            ok = "array" in names
        elif isinstance(value, dict):
            required = schema.get("required") or []
            ok = "object" in names and all(key in value for key in required)
        else:
            ok = False
        if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = self.bounds(schema)
            ok = (low is None or value >= low) and (high is None or value <= high)
        return ok

    @staticmethod
    def bounds(schema: dict[str, Any]) -> tuple[float | None, float | None]:
        def number(*keys: str) -> float | None:
            value = _pick(schema, *keys)
            try:
                return float(value) if value is not None and not isinstance(value, bool) else None
            except (TypeError, ValueError):
                return None

        low = number("minimum")
        high = number("maximum")
        exclusive_low = number("exclusiveMinimum", "exclusive_minimum")
        exclusive_high = number("exclusiveMaximum", "exclusive_maximum")
        if exclusive_low is not None:
            low = max(low if low is not None else exclusive_low, exclusive_low)
        if exclusive_high is not None:
            high = min(high if high is not None else exclusive_high, exclusive_high)
        return low, high

    # --- generic filling -----------------------------------------------------------------

    def fill(self, schema: Any, overrides: dict[str, Any] | None = None, depth: int = 0) -> Any:
        schema = self.merged(self.resolve(schema))
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        names, nullable = self.types(schema)
        if not names:
            variants = self.variants(schema)
            concrete = [v for v in variants if self.types(v)[0] or self.variants(v) or "enum" in v]
            if concrete:
                return self.fill(concrete[0], overrides, depth + 1)
            return None if nullable or variants else "ок"
        if depth > MAX_SCHEMA_DEPTH:
            return None if nullable else self.scalar(names[0], schema)
        kind = names[0]
        if kind == "object":
            return self.fill_object(schema, overrides or {}, depth)
        if kind == "array":
            count = _pick(schema, "minItems", "min_items")
            try:
                size = max(int(count), 0) if count is not None else 0
            except (TypeError, ValueError):
                size = 0
            return [self.fill(schema.get("items", {}), None, depth + 1) for _ in range(size)]
        return self.scalar(kind, schema)

    def scalar(self, kind: str, schema: dict[str, Any]) -> Any:
        low, high = self.bounds(schema)
        if kind in ("integer", "number"):
            value: float = 1 if kind == "integer" else 0.5
            if low is not None and value < low:
                value = low
            if high is not None and value > high:
                value = high
            return int(value) if kind == "integer" else float(value)
        if kind == "boolean":
            return True
        if kind == "string":
            formatted = {
                "date-time": "2025-01-01T10:00:00Z",
                "date": "2025-01-01",
                "time": "10:00:00",
                "email": "client@example.com",
                "uri": "https://example.com",
                "uuid": "00000000-0000-4000-8000-000000000000",
            }.get(str(schema.get("format", "")))
            if formatted:
                return formatted
            text = "ок"
            min_length = _pick(schema, "minLength", "min_length")
            max_length = _pick(schema, "maxLength", "max_length")
            if isinstance(min_length, (int, str)) and str(min_length).isdigit():
                text = (text * int(min_length))[: max(int(min_length), len(text))]
            if isinstance(max_length, (int, str)) and str(max_length).isdigit():
                text = text[: int(max_length)]
            return text
        return None

    def fill_object(self, schema: dict[str, Any], overrides: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return dict(overrides)
        ordering = _pick(schema, "propertyOrdering", "property_ordering")
        names = [n for n in ordering if n in properties] if isinstance(ordering, list) else []
        names += [n for n in properties if n not in names]
        required = schema.get("required")
        wanted = set(required) if isinstance(required, list) else set(properties)
        special = self.special_values(properties)
        wanted |= set(special) | set(overrides)
        result: dict[str, Any] = {}
        for name in names:
            if name not in wanted:
                continue
            prop_schema = properties[name]
            if name in overrides:
                result[name] = overrides[name]
                continue
            candidates = special.get(name, [])
            chosen = next((c for c in candidates if self.conforms(c, prop_schema)), _MISSING)
            result[name] = self.fill(prop_schema, None, depth + 1) if chosen is _MISSING else chosen
        return result

    # --- knowledge by property name --------------------------------------------------------

    def special_values(self, properties: dict[str, Any]) -> dict[str, list[Any]]:
        """Candidate values for well-known property names, tried in order before generic filling."""
        values: dict[str, list[Any]] = {}
        conversation = self.conversation
        if "is_client" in properties:
            is_client, confidence, reasoning = detect_lead("\n".join(conversation.user_texts))
            values["is_client"] = [is_client, False] if is_client is None else [is_client]
            values["confidence"] = [confidence]
            values["reasoning"] = [reasoning]
        if "reply" in properties:
            values["reply"] = [sales_reply(conversation)]
            if "call" in properties:
                values["call"] = self.call_candidates(properties["call"])
        if "opt_out" in properties:
            values["opt_out"] = [detect_opt_out(conversation.last_user_text)]
        for name in ("answer", "decision"):
            if name in properties:
                values[name] = self.decision_candidates(properties[name])
        if self.transcript is not None:
            for name in properties:
                if "transcri" in name or name == "text":
                    values[name] = [self.transcript]
        return values

    def call_candidates(self, schema: Any) -> list[Any]:
        match = ISO_DATETIME.search(self.conversation.last_user_text)
        if match is None:
            return [None]
        moment = match.group(0).replace(" ", "T")
        resolved = self.merged(self.resolve(schema))
        options = [resolved, *self.variants(resolved)]
        objects = [o for o in options if "object" in self.types(self.merged(o))[0]]
        candidates: list[Any] = [self.fill(o, {"at": moment}) for o in objects]
        return [*candidates, {"at": moment}, moment]

    def decision_candidates(self, schema: Any) -> list[Any]:
        decision = detect_decision(self.conversation.last_user_text)
        resolved = self.merged(self.resolve(schema))
        enums = [
            resolved.get("enum"),
            *(v.get("enum") for v in self.variants(resolved)),
        ]
        enum = next((e for e in enums if isinstance(e, list) and e), None)
        if enum is None:
            return [decision]
        for synonym in DECISION_SYNONYMS[decision]:
            for value in enum:
                if isinstance(value, str) and _normalize(value) == synonym:
                    return [value]
        return [enum[0]]


_MISSING = object()


class _FaultInjector:
    """Random 429/5xx replies when nothing scripted is consumed, reproducible through a seed."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.rate_429 = float(config.get("rate_429", 0.0))
        self.rate_5xx = float(config.get("rate_5xx", 0.0))
        self.retry_delay = str(config.get("retry_delay", "1s"))
        self.status_5xx = int(config.get("status_5xx", 503))
        seed = config.get("seed", 0)
        self.random = random.Random(seed)
        if not (0.0 <= self.rate_429 <= 1.0 and 0.0 <= self.rate_5xx <= 1.0):
            raise ValueError("fault rates must be between 0 and 1")
        if not 500 <= self.status_5xx <= 599:
            raise ValueError("status_5xx must be a 5xx status")
        self.config = {
            "rate_429": self.rate_429,
            "rate_5xx": self.rate_5xx,
            "retry_delay": self.retry_delay,
            "status_5xx": self.status_5xx,
            "seed": seed,
        }

    def draw(self) -> dict[str, Any] | None:
        if not self.rate_429 and not self.rate_5xx:
            return None
        roll = self.random.random()
        if roll < self.rate_429:
            return {"status": 429, "retry_delay": self.retry_delay}
        if roll < self.rate_429 + self.rate_5xx:
            return {"status": self.status_5xx}
        return None


class GeminiEmulator:
    """A threaded HTTP server speaking the Gemini ``generateContent`` wire format.

    Use as a context manager or call ``start()``/``stop()``. ``port=0`` picks a free port.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str = "emulator-key") -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._script: list[dict[str, Any]] = []
        self._faults = _FaultInjector()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("GeminiEmulator is not started")
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("GeminiEmulator is already started")
        server_class = _Server6 if ":" in self.host else _Server
        server = server_class((self.host, self.port), _Handler)
        server.emulator = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="gemini-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.info("Gemini emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- control -----------------------------------------------------------------------------

    def script(self, responses: list[dict[str, Any]]) -> None:
        """Queue scripted answers, consumed one per generateContent call (see module docs)."""
        if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
            raise TypeError("responses must be a list of JSON objects")
        with self._lock:
            self._script.extend(copy.deepcopy(responses))

    def set_faults(self, config: dict[str, Any]) -> dict[str, Any]:
        """Random faults applied when no scripted item is consumed; returns the active config."""
        faults = _FaultInjector(config)
        with self._lock:
            self._faults = faults
        return faults.config

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self._script.clear()
            self._faults = _FaultInjector()

    def requests_log(self) -> list[dict[str, Any]]:
        """Recorded generateContent calls: ``{"version", "model", "body"}`` each, oldest first."""
        with self._lock:
            return copy.deepcopy(self._log)

    # --- generateContent -----------------------------------------------------------------------

    def _take_item(self, body: dict[str, Any]) -> dict[str, Any] | None:
        haystacks = (json.dumps(body, ensure_ascii=False), json.dumps(body))
        with self._lock:
            for index, item in enumerate(self._script):
                needle = item.get("match")
                if needle is None or any(str(needle) in text for text in haystacks):
                    return self._script.pop(index)
            return self._faults.draw()

    def generate(self, version: str, model: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Record the call and produce ``(status, json_body)``."""
        with self._lock:
            # received_at (float seconds) serves the latency benchmarks.
            self._log.append({"version": version, "model": model, "body": copy.deepcopy(body),
                              "received_at": time.time()})
        item = self._take_item(body)
        if item is not None and "delay" in item:
            time.sleep(max(float(item["delay"]), 0.0))
        conversation = _Conversation(body)
        if item is not None:
            scripted = self._scripted(item, model, conversation)
            if scripted is not None:
                return scripted
        return 200, self._text_response(model, conversation, self._default_answer(conversation))

    def _scripted(
        self, item: dict[str, Any], model: str, conversation: _Conversation
    ) -> tuple[int, Any] | None:
        status = int(item.get("status", 200))
        if "raw" in item:
            return status, item["raw"]
        if status != 200:
            return status, error_body(status, item.get("message"), str(item.get("retry_delay", "1s")))
        if item.get("blocked"):
            usage = self._usage(conversation, None)
            body = {"promptFeedback": {"blockReason": str(item.get("block_reason", "SAFETY"))}}
            return 200, {
                **body,
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": _response_id(),
            }
        finish_reason = str(item.get("finish_reason", "STOP"))
        if "json" in item:
            text = json.dumps(item["json"], ensure_ascii=False)
            return 200, self._text_response(model, conversation, text, finish_reason)
        if "text" in item:
            return 200, self._text_response(model, conversation, str(item["text"]), finish_reason)
        if "finish_reason" in item:
            return 200, self._text_response(model, conversation, None, finish_reason)
        return None

    @staticmethod
    def _default_answer(conversation: _Conversation) -> str:
        blobs = conversation.inline_blobs()
        transcript = transcribe(blobs) if blobs else None
        schema = conversation.response_schema
        if conversation.response_mime_type == "application/json":
            if schema is None:
                return json.dumps(
                    {"text": transcript or sales_reply(conversation)},
                    ensure_ascii=False,
                )
            value = _SchemaFiller(schema, conversation, transcript).fill(schema)
            return json.dumps(value, ensure_ascii=False)
        if transcript is not None:
            return transcript
        return sales_reply(conversation)

    @staticmethod
    def _usage(conversation: _Conversation, answer: str | None) -> dict[str, Any]:
        prompt = max(conversation.prompt_chars // 4, 1)
        candidates = max(len(answer) // 4, 1) if answer is not None else 0
        return {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates,
            "thoughtsTokenCount": 0,
            "cachedContentTokenCount": 0,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }

    def _text_response(
        self,
        model: str,
        conversation: _Conversation,
        text: str | None,
        finish_reason: str = "STOP",
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
        if text is not None:
            candidate["content"] = {"role": "model", "parts": [{"text": text}]}
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(conversation, text),
            "modelVersion": model,
            "responseId": _response_id(),
        }

    def control(self, method: str, action: str, payload: Any) -> tuple[int, Any]:
        """The ``/_emulator/*`` routes; no authentication."""
        if method == "GET" and action == "requests":
            return 200, {"requests": self.requests_log()}
        if method == "GET" and action == "health":
            return 200, {"ok": True}
        if method == "POST" and action == "reset":
            self.reset()
            return 200, {"ok": True}
        if method == "POST" and action == "script":
            responses = payload.get("responses") if isinstance(payload, dict) else payload
            if not isinstance(responses, list) or not all(isinstance(item, dict) for item in responses):
                return 400, error_body(400, "responses must be a list of JSON objects")
            self.script(responses)
            with self._lock:
                queued = len(self._script)
            return 200, {"ok": True, "queued": queued}
        if method == "POST" and action == "faults":
            try:
                config = self.set_faults(payload if isinstance(payload, dict) else {})
            except (TypeError, ValueError) as error:
                return 400, error_body(400, str(error))
            return 200, {"ok": True, "faults": config}
        return 404, error_body(404, f"no route /_emulator/{action}")


def _response_id() -> str:
    return secrets.token_hex(12)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: GeminiEmulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop idle keep-alive connections so handler threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add about 40 ms to every keep-alive answer.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server_version = "GeminiEmulator/1.0"
    timeout = 120  # idle keep-alive connections end instead of pinning a thread forever
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        # The whole body is always consumed so the keep-alive connection stays in sync.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(400, error_body(400, "Malformed request body."))
            return
        path = unquote(urlsplit(self.path).path)
        emulator = self.server.emulator
        control = CONTROL_ROUTE.match(path)
        if control:
            payload: Any = None
            if raw.strip():
                try:
                    payload = json.loads(raw)
                except ValueError:
                    self._send(400, error_body(400, "Invalid JSON payload received."))
                    return
            self._send(*emulator.control(method, control["action"], payload))
            return
        route = GENERATE_ROUTE.match(path)
        if route is None or method != "POST":
            self._send(404, error_body(404, f"no route {path}"))
            return
        if self.headers.get("x-goog-api-key") != emulator.api_key:
            self._send(400, error_body(400, "API key not valid."))
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send(400, error_body(400, "Invalid JSON payload received."))
            return
        version, model = route["version"], route["model"]
        try:
            status, payload = emulator.generate(version, model, body)
        except Exception:  # a bug here must surface to the client as a 500, not a dropped socket
            logger.exception("Gemini emulator failed on %s", path)
            status, payload = 500, error_body(500)
        logger.info("generateContent %s/%s -> %s", version, model, status)
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", JSON_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout fired during a scripted delay).
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m emulators.gemini", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8702)
    parser.add_argument("--api-key", default="emulator-key")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    emulator = GeminiEmulator(host=args.host, port=args.port, api_key=args.api_key).start()
    try:
        print(f"Gemini emulator listening on {emulator.url}", flush=True)
        while not stop_requested.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    main()
