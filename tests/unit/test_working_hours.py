"""Working hours and call slots: the edge cases, with the business in Asia/Almaty."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from domain.clock import human_datetime, human_slot
from domain.working_hours import WorkingHours, parse_requested

ALMATY = ZoneInfo("Asia/Almaty")
HOURS = WorkingHours(timezone="Asia/Almaty", days=(0, 1, 2, 3, 4), start_minute=600, end_minute=1080,
                     call_minutes=30)
NOW = datetime(2025, 10, 1, 12, 0, tzinfo=ALMATY)  # a Wednesday


@pytest.mark.parametrize(("requested", "reason"), [
    (datetime(2025, 10, 2, 15, 0, tzinfo=ALMATY), None),            # Thursday afternoon
    (datetime(2025, 10, 2, 10, 0, tzinfo=ALMATY), None),            # the first minute of the day
    (datetime(2025, 10, 2, 17, 30, tzinfo=ALMATY), None),           # the last start that fits
    (datetime(2025, 10, 2, 18, 0, tzinfo=ALMATY), "outside_hours"),  # 18:00 exactly
    (datetime(2025, 10, 2, 17, 45, tzinfo=ALMATY), "outside_hours"),  # would end after 18:00
    (datetime(2025, 10, 2, 9, 59, tzinfo=ALMATY), "outside_hours"),
    (datetime(2025, 10, 3, 19, 0, tzinfo=ALMATY), "outside_hours"),  # Friday evening
    (datetime(2025, 10, 4, 12, 0, tzinfo=ALMATY), "day_off"),        # Saturday
    (datetime(2025, 10, 5, 12, 0, tzinfo=ALMATY), "day_off"),        # Sunday
    (datetime(2025, 10, 1, 11, 0, tzinfo=ALMATY), "past"),           # earlier today
])
def test_refusal(requested: datetime, reason: str | None) -> None:
    assert HOURS.refusal(requested, NOW) == reason


def test_client_in_another_time_zone_is_converted() -> None:
    # 15:00 in Moscow (+03:00) is 17:00 in Almaty (+05:00): fits; 16:00 Moscow is 18:00 Almaty: not.
    fits = parse_requested("2025-10-02T15:00:00+03:00", "Asia/Almaty")
    late = parse_requested("2025-10-02T16:00:00+03:00", "Asia/Almaty")
    assert fits is not None and HOURS.refusal(fits, NOW) is None
    assert late is not None and HOURS.refusal(late, NOW) == "outside_hours"
    naive = parse_requested("2025-10-02 15:00", "Asia/Almaty")
    assert naive == datetime(2025, 10, 2, 15, 0, tzinfo=ALMATY)
    assert parse_requested("завтра после обеда", "Asia/Almaty") is None


def test_next_slots_skip_evening_and_weekend() -> None:
    friday_evening = datetime(2025, 10, 3, 18, 20, tzinfo=ALMATY)
    slots = HOURS.next_slots(friday_evening)
    assert slots == [datetime(2025, 10, 6, hour, 0, tzinfo=ALMATY) for hour in (10, 11, 12)]
    assert human_slot(slots[0], "Asia/Almaty") == "понедельник, 6 октября, 10:00"


def test_next_open_moves_a_weekend_moment_to_monday_morning() -> None:
    saturday = datetime(2025, 10, 4, 15, 0, tzinfo=ALMATY)
    assert HOURS.next_open(saturday) == datetime(2025, 10, 6, 10, 0, tzinfo=ALMATY)
    inside = datetime(2025, 10, 2, 11, 15, tzinfo=ALMATY)
    assert HOURS.next_open(inside) == inside
    assert HOURS.next_open(datetime(2025, 10, 2, 18, 0, tzinfo=ALMATY)) == datetime(2025, 10, 3, 10, 0, tzinfo=ALMATY)


def test_current_time_for_people() -> None:
    moment = datetime(2025, 10, 5, 9, 30, tzinfo=UTC)
    assert human_datetime(moment, "Asia/Almaty") == "5 октября 2025, 14:30 (время Астаны)"
    assert HOURS.describe() == "пн–пт, 10:00–18:00"
