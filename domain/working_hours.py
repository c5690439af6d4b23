"""Working hours: when a call may be booked, and the next free slots to offer. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # the type only: domain modules read no environment
    from settings import Settings

DAY_NAMES = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")
SHORT_DAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")


@dataclass(frozen=True)
class WorkingHours:
    timezone: str
    days: tuple[int, ...]  # Monday = 0
    start_minute: int  # minutes after midnight
    end_minute: int
    call_minutes: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkingHours:
        start, end = settings.working_hours
        return cls(timezone=settings.timezone, days=settings.working_days, start_minute=start,
                   end_minute=end, call_minutes=settings.call_minutes)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("working hours need an aware datetime")
        return moment.astimezone(self.zone)

    def refusal(self, requested: datetime, now: datetime) -> str | None:
        """Why a call can't start at `requested`, or None when it can.

        The whole call must fit: with 10:00-18:00 and 30-minute calls, 17:30 is the last start
        and 18:00 itself is refused."""
        local = self.local(requested)
        if requested <= now:
            return "past"
        if local.weekday() not in self.days:
            return "day_off"
        start = local.hour * 60 + local.minute + (1 if local.second or local.microsecond else 0)
        if start < self.start_minute or start + self.call_minutes > self.end_minute:
            return "outside_hours"
        return None

    def next_slots(self, after: datetime, count: int = 3, step_minutes: int = 60) -> list[datetime]:
        """The first `count` call starts on the hour (or step) strictly after `after`."""
        local = self.local(after)
        candidate = local.replace(second=0, microsecond=0)
        minutes = candidate.hour * 60 + candidate.minute
        candidate += timedelta(minutes=step_minutes - minutes % step_minutes)
        slots: list[datetime] = []
        for _ in range(14 * 24 * 60 // step_minutes):  # two weeks of steps at most
            if self.refusal(candidate, after) is None:
                slots.append(candidate)
                if len(slots) == count:
                    break
            candidate += timedelta(minutes=step_minutes)
        return slots

    def next_open(self, moment: datetime) -> datetime:
        """`moment` if it is inside working hours, else the next start of working hours."""
        local = self.local(moment)
        for offset in range(15):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            opens = datetime.combine(day, time(self.start_minute // 60, self.start_minute % 60), self.zone)
            closes = datetime.combine(day, time(0), self.zone) + timedelta(minutes=self.end_minute)
            if local < opens:
                return opens
            if local < closes:
                return local
        raise ValueError("no working day within two weeks")

    def describe(self) -> str:
        """`пн–пт, 10:00–18:00`."""
        days = sorted(self.days)
        if days == list(range(days[0], days[-1] + 1)) and len(days) > 1:
            day_text = f"{SHORT_DAYS[days[0]]}–{SHORT_DAYS[days[-1]]}"
        else:
            day_text = ", ".join(SHORT_DAYS[day] for day in days)
        return (f"{day_text}, {self.start_minute // 60:02d}:{self.start_minute % 60:02d}–"
                f"{self.end_minute // 60:02d}:{self.end_minute % 60:02d}")


def parse_requested(value: str, timezone: str) -> datetime | None:
    """The model's ISO datetime; without an offset it is the business's local time."""
    text = value.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))
