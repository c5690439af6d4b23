"""Fault injection of the Gemini emulator: random 429/5xx replies when nothing scripted is
consumed, reproducible through a seed."""

from __future__ import annotations

import random
from typing import Any


class FaultInjector:
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
        """A scripted-item-shaped fault for this call, or None."""
        if not self.rate_429 and not self.rate_5xx:
            return None
        roll = self.random.random()
        if roll < self.rate_429:
            return {"status": 429, "retry_delay": self.retry_delay}
        if roll < self.rate_429 + self.rate_5xx:
            return {"status": self.status_5xx}
        return None
