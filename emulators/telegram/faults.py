"""Fault injection of the Telegram emulator: what the real Bot API does that is inconvenient.

Deterministic counts (`rate_limited_next`, `fail_next`, `timeout_next`, `duplicate_updates`) for
tests, random rates (`rate_5xx`, `rate_timeout`, with a `seed`) for soak runs; `methods` limits
them to some Bot API methods (``file`` is a file download). Blocked and deactivated users are
chat state (`TelegramEmulator.user_blocks`), not faults. Built from the JSON the control interface
takes and rendered back by `public()`; the lock is the caller's.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulators.telegram.exceptions import EmulatorError
from emulators.telegram.models import JSON

FAULT_KEYS = frozenset({
    "rate_limited_next", "retry_after", "fail_next", "fail_status", "rate_5xx", "timeout_next",
    "rate_timeout", "timeout_seconds", "duplicate_updates", "methods", "seed",
})  # fmt: skip


@dataclass(frozen=True)
class Fault:
    kind: str  # "status" (an error envelope) or "timeout" (no answer)
    status: int = 0
    retry_after: int = 0
    seconds: float = 0.0


def _count(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EmulatorError(f"{name} must be a non-negative integer")
    return value


def _rate(payload: Mapping[str, Any], name: str) -> float:
    value = payload.get(name, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise EmulatorError(f"{name} must be a number between 0 and 1")
    return float(value)


@dataclass
class Faults:
    rate_limited_next: int = 0  # the next N calls answer 429 with parameters.retry_after
    retry_after: int = 5
    fail_next: int = 0  # the next N calls answer fail_status (a 5xx)
    fail_status: int = 502
    rate_5xx: float = 0.0
    timeout_next: int = 0  # the next N calls get no answer for timeout_seconds
    rate_timeout: float = 0.0
    timeout_seconds: float = 30.0
    duplicate_updates: int = 0  # the next N updates are delivered twice (same update_id)
    methods: frozenset[str] = frozenset()  # lower-cased method names; empty: every method
    seed: int | None = None
    _random: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Faults:
        unknown = sorted(set(payload) - FAULT_KEYS)
        if unknown:
            raise EmulatorError(f"unknown fault keys: {', '.join(unknown)}")
        retry_after = _count(payload, "retry_after") if "retry_after" in payload else 5
        fail_status = payload.get("fail_status", 502)
        if isinstance(fail_status, bool) or not isinstance(fail_status, int) or not 500 <= fail_status <= 599:
            raise EmulatorError("fail_status must be a 5xx status")
        seconds = payload.get("timeout_seconds", 30.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise EmulatorError("timeout_seconds must be a non-negative number")
        methods = payload.get("methods") or []
        if not isinstance(methods, list) or not all(isinstance(item, str) and item for item in methods):
            raise EmulatorError("methods must be a list of method names")
        seed = payload.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise EmulatorError("seed must be an integer")
        return cls(
            rate_limited_next=_count(payload, "rate_limited_next"), retry_after=retry_after,
            fail_next=_count(payload, "fail_next"), fail_status=fail_status, rate_5xx=_rate(payload, "rate_5xx"),
            timeout_next=_count(payload, "timeout_next"), rate_timeout=_rate(payload, "rate_timeout"),
            timeout_seconds=float(seconds), duplicate_updates=_count(payload, "duplicate_updates"),
            methods=frozenset(item.lower() for item in methods), seed=seed, _random=random.Random(seed),
        )

    def public(self) -> JSON:
        return {
            "rate_limited_next": self.rate_limited_next, "retry_after": self.retry_after,
            "fail_next": self.fail_next, "fail_status": self.fail_status, "rate_5xx": self.rate_5xx,
            "timeout_next": self.timeout_next, "rate_timeout": self.rate_timeout,
            "timeout_seconds": self.timeout_seconds, "duplicate_updates": self.duplicate_updates,
            "methods": sorted(self.methods), "seed": self.seed,
        }

    def decide(self, method: str) -> Fault | None:
        """The fault this call of `method` meets, if any (counts are used up in this order)."""
        if self.methods and method.lower() not in self.methods:
            return None
        if self.rate_limited_next:
            self.rate_limited_next -= 1
            return Fault("status", status=429, retry_after=self.retry_after)
        if self.fail_next:
            self.fail_next -= 1
            return Fault("status", status=self.fail_status)
        if self.timeout_next:
            self.timeout_next -= 1
            return Fault("timeout", seconds=self.timeout_seconds)
        if self.rate_timeout and self._random.random() < self.rate_timeout:
            return Fault("timeout", seconds=self.timeout_seconds)
        if self.rate_5xx and self._random.random() < self.rate_5xx:
            return Fault("status", status=self.fail_status)
        return None

    def take_duplicate(self) -> bool:
        if self.duplicate_updates:
            self.duplicate_updates -= 1
            return True
        return False
