"""The flood limits Telegram enforces on a bot's sends (reference A8, Bot FAQ): about one message
per second in a chat (short bursts tolerated), 20 a minute in a group, about 30 a second for the
whole bot. Off until a test turns them on; over a limit `sendMessage` answers 429 with
``retry_after`` and nothing is sent. The lock is the caller's; times are the backend's clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulators.telegram.exceptions import BotApiError, EmulatorError
from emulators.telegram.models import JSON

FLOOD_KEYS = frozenset({"enabled", "chat_burst", "bot_per_second", "group_per_minute"})
CHAT_INTERVAL_SECONDS = 1.0  # one message a second in a chat, once the burst is spent
BOT_WINDOW_SECONDS = 1.0
GROUP_WINDOW_SECONDS = 60.0


def _positive(payload: Mapping[str, Any], name: str, default: int) -> int:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EmulatorError(f"{name} must be a positive integer")
    return value


def _wait_in_window(sends: deque[float], limit: int, window: float, now: float) -> float:
    """Seconds until a sliding `window` holds fewer than `limit` of `sends` (0: room now);
    forgets the sends that left the window."""
    while sends and sends[0] <= now - window:
        sends.popleft()
    return sends[0] + window - now if len(sends) >= limit else 0.0


@dataclass
class FloodLimits:
    enabled: bool = False
    chat_burst: int = 1  # sends a chat may take back to back before the 1/s pace applies (1: none)
    bot_per_second: int = 30
    group_per_minute: int = 20
    refusals: list[JSON] = field(default_factory=list)  # every 429 given, oldest first
    # A chat's token bucket: (tokens, when last counted); a send spends one, a second refills one.
    _chat_buckets: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)
    _bot_sends: deque[float] = field(default_factory=deque, repr=False)
    _group_sends: dict[int, deque[float]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> FloodLimits:
        unknown = sorted(set(payload) - FLOOD_KEYS)
        if unknown:
            raise EmulatorError(f"unknown flood limit keys: {', '.join(unknown)}")
        enabled = payload.get("enabled", True)
        if not isinstance(enabled, bool):
            raise EmulatorError("enabled must be a boolean")
        return cls(enabled=enabled, chat_burst=_positive(payload, "chat_burst", 1),
                   bot_per_second=_positive(payload, "bot_per_second", 30),
                   group_per_minute=_positive(payload, "group_per_minute", 20))

    def public(self) -> JSON:
        return {"enabled": self.enabled, "chat_burst": self.chat_burst, "bot_per_second": self.bot_per_second,
                "group_per_minute": self.group_per_minute, "refused": len(self.refusals)}

    def admit(self, chat_id: int, *, group: bool, now: float) -> None:
        """Count a send to `chat_id` at `now`, or raise the 429 Telegram answers when a limit is
        reached (a refused send counts against no limit)."""
        if not self.enabled:
            return
        tokens, counted_at = self._chat_buckets.get(chat_id, (float(self.chat_burst), now))
        tokens = min(float(self.chat_burst), tokens + max(0.0, now - counted_at) / CHAT_INTERVAL_SECONDS)
        waits = {"chat": (1.0 - tokens) * CHAT_INTERVAL_SECONDS if tokens < 1.0 else 0.0,
                 "bot": _wait_in_window(self._bot_sends, self.bot_per_second, BOT_WINDOW_SECONDS, now)}
        group_sends = self._group_sends.setdefault(chat_id, deque()) if group else None
        if group_sends is not None:
            waits["group"] = _wait_in_window(group_sends, self.group_per_minute, GROUP_WINDOW_SECONDS, now)
        limit, wait = max(waits.items(), key=lambda item: item[1])
        if wait > 0:
            # Whole seconds, rounded up, at least 1, as the server's "retry after N" is.
            retry_after = max(1, math.ceil(wait - 1e-9))
            self.refusals.append({"chat_id": chat_id, "limit": limit, "retry_after": retry_after, "at": now})
            raise BotApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        self._chat_buckets[chat_id] = (tokens - 1.0, now)
        self._bot_sends.append(now)
        if group_sends is not None:
            group_sends.append(now)
