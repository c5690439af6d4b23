"""When a burst of customer messages is answered: one reply per burst. No I/O."""

from __future__ import annotations

from datetime import datetime, timedelta


def burst_due(first_at: datetime, last_at: datetime, count: int, *, window: float, max_wait: float,
              cap: int) -> datetime:
    """`window` seconds after the last message, but never later than `max_wait` after the first
    (so a long burst still gets an answer), and at once when the burst reaches `cap` messages."""
    if count >= cap:
        return last_at
    return min(last_at + timedelta(seconds=window), first_at + timedelta(seconds=max_wait))
