"""Rules that protect a number from bans, without I/O: the warm-up of a new profile's send limit,
and the day a proactive message counts towards."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

# Telegram's own limits for a bot (Bot FAQ): about 1 message a second to one chat, 30 a second in all.
TELEGRAM_BOT_PER_MINUTE = 30 * 60
TELEGRAM_CHAT_GAP = 1.2  # a margin over 1 s: Telegram times the gap between arrivals, we between calls


def warmup_rate(configured: int, schedule: tuple[int, ...], warmup_from: datetime | None,
                now: datetime) -> tuple[int, int | None]:
    """The send limit per minute now, and the warm-up day it comes from (1-based; None once the
    warm-up is over or there is none). Never above the configured limit."""
    if warmup_from is None or not schedule:
        return configured, None
    day = int((now - warmup_from) // timedelta(days=1))
    if day < 0:
        day = 0
    if day >= len(schedule):
        return configured, None
    return min(configured, schedule[day]), day + 1


def day_start(now: datetime, timezone: str) -> datetime:
    """Midnight of `now`'s day in the business's time zone (the proactive cap counts per day there)."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)
