"""Fault injection of the AgentOS emulator: what the real platform (or the proxy before it) does
that is inconvenient, as deterministic counts for tests.

HTTP-level faults meet a run request before anything else (auth, validation): `rate_limited_next`
(429 with ``Retry-After``), `fail_next` (`fail_status`, ``Internal server error (RuntimeError)``),
`busy_next` (409, a session busy), `timeout_next` (no answer for `timeout_seconds`), `drop_next`
(the connection closed at once), `garbage_next` (HTTP 200 with an HTML page, as a misrouted proxy
answers). Run-level faults meet a run that got through and found no
scripted item: `error_next` (HTTP 200, status ERROR, `error_text` as content) and `paused_next`
(HTTP 200, status PAUSED). `agents` limits them all to some agent ids. The lock is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulators.agentos.exceptions import EmulatorError
from emulators.agentos.models import JSON, PROVIDER_ERROR_TEXT

FAULT_KEYS = frozenset({
    "rate_limited_next", "retry_after", "fail_next", "fail_status", "busy_next", "timeout_next",
    "timeout_seconds", "drop_next", "garbage_next", "error_next", "error_text", "paused_next", "agents",
})  # fmt: skip


@dataclass(frozen=True)
class Fault:
    kind: str  # "status" (an error body), "timeout" (no answer after `seconds`), "drop" (no answer), "garbage"
    status: int = 0
    detail: str = ""
    retry_after: int | None = None
    seconds: float = 0.0


def _count(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EmulatorError(f"{name} must be a non-negative integer")
    return value


@dataclass
class Faults:
    rate_limited_next: int = 0
    retry_after: int = 7
    fail_next: int = 0
    fail_status: int = 500
    busy_next: int = 0
    timeout_next: int = 0
    timeout_seconds: float = 30.0
    drop_next: int = 0
    garbage_next: int = 0
    error_next: int = 0
    error_text: str = PROVIDER_ERROR_TEXT
    paused_next: int = 0
    agents: frozenset[str] = frozenset()  # empty: every agent

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Faults:
        unknown = sorted(set(payload) - FAULT_KEYS)
        if unknown:
            raise EmulatorError(f"unknown fault keys: {', '.join(unknown)}")
        fail_status = payload.get("fail_status", 500)
        if isinstance(fail_status, bool) or not isinstance(fail_status, int) or not 500 <= fail_status <= 599:
            raise EmulatorError("fail_status must be a 5xx status")
        seconds = payload.get("timeout_seconds", 30.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise EmulatorError("timeout_seconds must be a non-negative number")
        error_text = payload.get("error_text", PROVIDER_ERROR_TEXT)
        if not isinstance(error_text, str):
            raise EmulatorError("error_text must be a string")
        agents = payload.get("agents") or []
        if not isinstance(agents, list) or not all(isinstance(item, str) and item for item in agents):
            raise EmulatorError("agents must be a list of agent ids")
        return cls(
            rate_limited_next=_count(payload, "rate_limited_next"),
            retry_after=_count(payload, "retry_after") if "retry_after" in payload else 7,
            fail_next=_count(payload, "fail_next"), fail_status=fail_status, busy_next=_count(payload, "busy_next"),
            timeout_next=_count(payload, "timeout_next"), timeout_seconds=float(seconds),
            drop_next=_count(payload, "drop_next"), garbage_next=_count(payload, "garbage_next"),
            error_next=_count(payload, "error_next"), error_text=error_text,
            paused_next=_count(payload, "paused_next"), agents=frozenset(agents),
        )

    def public(self) -> JSON:
        return {
            "rate_limited_next": self.rate_limited_next, "retry_after": self.retry_after,
            "fail_next": self.fail_next, "fail_status": self.fail_status, "busy_next": self.busy_next,
            "timeout_next": self.timeout_next, "timeout_seconds": self.timeout_seconds,
            "drop_next": self.drop_next, "garbage_next": self.garbage_next, "error_next": self.error_next,
            "error_text": self.error_text,
            "paused_next": self.paused_next, "agents": sorted(self.agents),
        }

    def _applies(self, agent_id: str) -> bool:
        return not self.agents or agent_id in self.agents

    def decide(self, agent_id: str) -> Fault | None:
        """The HTTP-level fault this run request meets, if any (counts are used up in this order)."""
        if not self._applies(agent_id):
            return None
        if self.rate_limited_next:
            self.rate_limited_next -= 1
            return Fault("status", status=429, detail="Too many requests", retry_after=self.retry_after)
        if self.fail_next:
            self.fail_next -= 1
            # Agno's handler of unhandled exceptions names the type, never the message.
            return Fault("status", status=self.fail_status, detail="Internal server error (RuntimeError)")
        if self.busy_next:
            self.busy_next -= 1
            return Fault("status", status=409, detail="Session is busy: another run is in progress")
        if self.timeout_next:
            self.timeout_next -= 1
            return Fault("timeout", seconds=self.timeout_seconds)
        if self.drop_next:
            self.drop_next -= 1
            return Fault("drop")
        if self.garbage_next:
            self.garbage_next -= 1
            return Fault("garbage", status=200)
        return None

    def run_outcome(self, agent_id: str) -> tuple[str, str | None] | None:
        """(status, content) of a run that met a run-level fault, if any."""
        if not self._applies(agent_id):
            return None
        if self.error_next:
            self.error_next -= 1
            return "ERROR", self.error_text
        if self.paused_next:
            self.paused_next -= 1
            return "PAUSED", None
        return None
