"""Fault injection of the Wappi emulator: what the real service does that is inconvenient.

`Faults` hits any API path (5xx, timeouts, sends accepted and then failed, a lagging history, a
clock that is off); `MediaFaults` and `ChatFaults` hit media/download and messages/get of chosen
messages or chats, and cross answers between concurrent calls as Wappi did. Each hits every
profile, or with `profile_ids` only those (message ids and customers' numbers repeat across
profiles). Each is built from the JSON the control interface takes and rendered back by
`public()`; the lock is the caller's.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulators.wappi.exceptions import EmulatorError
from emulators.wappi.models import JSON, parse_chat_ref

# The sends that the accept-then faults hit: Wappi accepted the message and then the caller saw
# a timeout or a 5xx.
SEND_PATHS = frozenset({"/api/sync/message/send", "/api/sync/message/reply",
                        "/tapi/sync/message/send", "/tapi/sync/message/reply"})
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
        "profile_ids",
        "seed",
    }
)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _is_count(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


def _is_error_status(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 400 <= value <= 599


def _only(payload: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise EmulatorError(f"unknown {what} fault keys: {', '.join(unknown)}")


def _ids(payload: Mapping[str, Any], name: str, what: str) -> list[str]:
    ids = payload.get(name) or []
    if not isinstance(ids, list) or not all(isinstance(item, str) and item for item in ids):
        raise EmulatorError(f"{name} must be a list of {what}")
    return ids


class _ProfileScope:
    """Faults that hit only the profiles in `profile_ids` (empty: every profile)."""

    profile_ids: frozenset[str]

    def hits(self, profile_id: str) -> bool:
        return not self.profile_ids or profile_id in self.profile_ids


def _crossing(payload: Mapping[str, Any], kinds: tuple[str, str], status: int) -> tuple[int, int, str]:
    """(fail_status, cross_next, cross_kind), each checked; the first kind is the default."""
    fail_status = payload.get("fail_status", status)
    if not _is_error_status(fail_status):
        raise EmulatorError("fail_status must be an HTTP error status (400-599)")
    cross_next = payload.get("cross_next", 0)
    if not _is_count(cross_next):
        raise EmulatorError("cross_next must be a non-negative integer")
    cross_kind = payload.get("cross_kind", kinds[0])
    if cross_kind not in kinds:
        raise EmulatorError(f"cross_kind must be {kinds[0]!r} or {kinds[1]!r}")
    return fail_status, cross_next, cross_kind


@dataclass
class Fault:
    """What one API request suffers."""

    kind: str  # "status" | "timeout" | "accept_then_timeout" | "accept_then_5xx"
    status: int = 500
    seconds: float = 0.0


@dataclass
class Faults(_ProfileScope):
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
    # Only these profiles' requests and sends (empty: every profile's); `clock_offset_seconds`
    # stays the whole service's, as Wappi has one clock.
    profile_ids: frozenset[str] = frozenset()
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Faults:
        unknown = sorted(set(payload) - FAULT_KEYS)
        if unknown:
            raise EmulatorError(f"unknown fault keys: {', '.join(unknown)}")
        faults = cls()
        for name in ("rate_5xx", "rate_timeout", "rate_accept_then_timeout", "rate_accept_then_5xx"):
            value = payload.get(name, 0.0)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise EmulatorError(f"{name} must be a number in [0, 1]")
            setattr(faults, name, float(value))
        timeout_seconds = payload.get("timeout_seconds", 3.0)
        if not _is_number(timeout_seconds) or timeout_seconds < 0:
            raise EmulatorError("timeout_seconds must be a non-negative number")
        faults.timeout_seconds = float(timeout_seconds)
        lag = payload.get("history_lag_seconds", 0.0)
        if not _is_number(lag) or lag < 0:
            raise EmulatorError("history_lag_seconds must be a non-negative number")
        faults.history_lag_seconds = float(lag)
        offset = payload.get("clock_offset_seconds", 0.0)
        if not _is_number(offset):
            raise EmulatorError("clock_offset_seconds must be a number")
        faults.clock_offset_seconds = float(offset)
        fail_next = payload.get("fail_next", 0)
        if not _is_count(fail_next):
            raise EmulatorError("fail_next must be a non-negative integer")
        faults.fail_next = fail_next
        fail_status = payload.get("fail_status", 500)
        if not _is_error_status(fail_status):
            raise EmulatorError("fail_status must be an HTTP error status (400-599)")
        faults.fail_status = fail_status
        paths = payload.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise EmulatorError("paths must be a list of non-empty strings")
        faults.paths = tuple(paths)
        faults.profile_ids = frozenset(_ids(payload, "profile_ids", "profile ids"))
        seed = payload.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise EmulatorError("seed must be an integer")
        faults.seed = seed
        faults.rng = random.Random(seed)
        return faults

    def matches(self, path: str, profile_id: str) -> bool:
        return self.hits(profile_id) and (not self.paths or any(fragment in path for fragment in self.paths))

    def decide(self, path: str, profile_id: str) -> Fault | None:
        """The fault this request to `path` for `profile_id` suffers, if any (draws from the seeded
        generator)."""
        if not self.matches(path, profile_id):
            return None
        server_error = self.fail_status if self.fail_status >= 500 else 500
        if self.fail_next > 0:
            self.fail_next -= 1
            return Fault("status", status=self.fail_status)
        if self.rate_5xx and self.rng.random() < self.rate_5xx:
            return Fault("status", status=server_error)
        if self.rate_timeout and self.rng.random() < self.rate_timeout:
            return Fault("timeout", seconds=self.timeout_seconds)
        if path in SEND_PATHS and self.rate_accept_then_timeout and self.rng.random() < self.rate_accept_then_timeout:
            return Fault("accept_then_timeout", seconds=self.timeout_seconds)
        if path in SEND_PATHS and self.rate_accept_then_5xx and self.rng.random() < self.rate_accept_then_5xx:
            return Fault("accept_then_5xx", status=server_error)
        return None

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
            "profile_ids": sorted(self.profile_ids),
            "seed": self.seed,
        }


class _Crossing:
    """The next `cross_next` answers of kind `cross_kind` are crossed (another call's), as Wappi's were
    for concurrent calls; `crossed` counts those given."""

    cross_next: int
    cross_kind: str
    crossed: int

    def take_crossed(self, kind: str) -> bool:
        """Whether this answer is a crossed one of `kind` (counted when it is)."""
        if self.cross_next <= 0 or self.cross_kind != kind:
            return False
        self.cross_next -= 1
        self.crossed += 1
        return True


@dataclass
class MediaFaults(_Crossing, _ProfileScope):
    """media/download faults: fail for chosen messages only, or answer the next downloads with
    another message's file, as Wappi did for concurrent calls."""

    fail_message_ids: frozenset[str] = frozenset()
    fail_status: int = 400
    fail_detail: str = "download media error"
    cross_next: int = 0
    cross_kind: str = "file"  # "file": another message's file; "messages": a messages/get body
    crossed: int = 0  # crossed answers given so far (read back by tests)
    profile_ids: frozenset[str] = frozenset()

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> MediaFaults:
        _only(payload, {"fail_message_ids", "fail_status", "fail_detail", "cross_next", "cross_kind",
                        "profile_ids"}, "media")
        ids = _ids(payload, "fail_message_ids", "message ids")
        status, cross_next, cross_kind = _crossing(payload, ("file", "messages"), 400)
        detail = payload.get("fail_detail", "download media error")
        if not isinstance(detail, str):
            raise EmulatorError("fail_detail must be a string")
        return cls(fail_message_ids=frozenset(ids), fail_status=status, fail_detail=detail,
                   cross_next=cross_next, cross_kind=cross_kind,
                   profile_ids=frozenset(_ids(payload, "profile_ids", "profile ids")))

    def public(self) -> JSON:
        return {"fail_message_ids": sorted(self.fail_message_ids), "fail_status": self.fail_status,
                "fail_detail": self.fail_detail, "cross_next": self.cross_next, "cross_kind": self.cross_kind,
                "crossed": self.crossed, "profile_ids": sorted(self.profile_ids)}


@dataclass
class ChatFaults(_Crossing, _ProfileScope):
    """messages/get faults: chosen chats always fail, and the next `cross_next` answers hold
    another chat's messages, as Wappi did for concurrent calls. `dialog_overrides` replaces
    fields of chosen chats' chats/get dialogs."""

    fail_chats: frozenset[str] = frozenset()  # chat keys (phone digits, or the full id of a group)
    fail_status: int = 500
    cross_next: int = 0
    cross_kind: str = "chat"  # "chat": another chat's messages; "media": a media/download body
    dialog_overrides: Mapping[str, JSON] = field(default_factory=dict)  # chat key -> chats/get fields
    crossed: int = 0  # crossed answers given so far (read back by tests)
    failed: int = 0  # failed answers given so far
    profile_ids: frozenset[str] = frozenset()

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ChatFaults:
        _only(payload, {"fail_chats", "fail_status", "cross_next", "cross_kind", "dialog_overrides", "profile_ids"},
              "chat")
        chats = _ids(payload, "fail_chats", "phones or chat ids")
        status, cross_next, cross_kind = _crossing(payload, ("chat", "media"), 500)
        overrides = payload.get("dialog_overrides") or {}
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise EmulatorError("dialog_overrides must map a phone or chat id to an object of dialog fields")
        return cls(fail_chats=frozenset(parse_chat_ref(item)[0] for item in chats), fail_status=status,
                   cross_next=cross_next, cross_kind=cross_kind,
                   dialog_overrides={parse_chat_ref(k)[0]: copy.deepcopy(v) for k, v in overrides.items()},
                   profile_ids=frozenset(_ids(payload, "profile_ids", "profile ids")))

    def public(self) -> JSON:
        return {"fail_chats": sorted(self.fail_chats), "fail_status": self.fail_status,
                "cross_next": self.cross_next, "cross_kind": self.cross_kind, "crossed": self.crossed,
                "failed": self.failed, "dialog_overrides": dict(self.dialog_overrides),
                "profile_ids": sorted(self.profile_ids)}
