"""Time as people read it, in the business's time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from domain.working_hours import DAY_NAMES

MONTHS_GENITIVE = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
                   "сентября", "октября", "ноября", "декабря")
ZONE_NAMES = {"Asia/Almaty": "время Астаны", "Europe/Moscow": "московское время"}


def human_datetime(moment: datetime, timezone: str) -> str:
    """`5 октября 2025, 14:30 (время Астаны)`: the wording the model is given as "now"."""
    local = moment.astimezone(ZoneInfo(timezone))
    zone = ZONE_NAMES.get(timezone, timezone)
    return f"{local.day} {MONTHS_GENITIVE[local.month - 1]} {local.year}, {local:%H:%M} ({zone})"


def human_slot(moment: datetime, timezone: str) -> str:
    """`понедельник, 24 ноября, 10:00`."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{DAY_NAMES[local.weekday()]}, {local.day} {MONTHS_GENITIVE[local.month - 1]}, {local:%H:%M}"
