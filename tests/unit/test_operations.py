"""What an operator reads, computed by the functions the web process calls (pipeline.ops) at an
injected time: /health's checks, /stats' figures for the business's day; and the JSON log lines."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from celeryconfig import QUEUES, redbeat_key_prefix
from db.session import SessionFactory, transaction
from emulators.wappi import WappiEmulator
from infra.logging import JsonFormatter, log_context
from infra.redis import get_redis
from pipeline.ops import health, overall, stats
from pipeline.profiles import mark_profile
from settings import get_settings
from tests.support import chain
from tests.support.emulators import customer_says, replies_to
from tests.support.env import PROFILE_ID, WAPPI_TOKEN


def health_at(sessions: SessionFactory, now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    return health(sessions, get_redis(), poll_interval=get_settings().poll_interval,
                  redbeat_prefix=redbeat_key_prefix, now=now)


def test_health_reports_each_check(sessions: SessionFactory, wappi: WappiEmulator) -> None:
    chain.poll(sessions)
    wappi.clear_requests()
    status, checks = health_at(sessions)
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert checks[f"wappi:{PROFILE_ID}"] == {**checks[f"wappi:{PROFILE_ID}"], "ok": True, "state": "up"}
    assert checks[f"poll:{PROFILE_ID}"]["ok"] and checks[f"send:{PROFILE_ID}"]["ok"]
    assert checks[f"chats:{PROFILE_ID}"] == {**checks[f"chats:{PROFILE_ID}"], "ok": True, "retrying": 0}
    # No beat runs here: the check says so, and the whole answer is failing.
    assert not checks["beat"]["ok"] and "redbeat lock" in checks["beat"]["error"]
    assert checks["beat"]["kind"] == "not_running"
    assert status == "failing"
    # It read what the poll recorded: no call to Wappi per request.
    assert wappi.requests_log() == []

    # Ten minutes without a successful poll, and a profile the poll found logged out, that cannot send.
    with sessions() as marking:
        mark_profile(marking, PROFILE_ID, "not authorized", datetime.now(UTC))
    _ok, later = health_at(sessions, now=datetime.now(UTC) + timedelta(minutes=10))
    poll = later[f"poll:{PROFILE_ID}"]
    assert not poll["ok"] and poll["kind"] == "stale" and "last successful poll" in poll["error"]
    unauthorized = later[f"wappi:{PROFILE_ID}"]
    assert not unauthorized["ok"] and unauthorized["kind"] == "not_authorized"
    assert "profile down: not authorized" in unauthorized["error"]
    held = later[f"send:{PROFILE_ID}"]
    assert not held["ok"] and "profile down: not authorized" in held["error"] and "sends are held" in held["error"]
    assert wappi.requests_log() == []


def test_health_names_a_failure_by_its_kind_never_its_host() -> None:
    """A database that cannot be reached is `unreachable`; the driver's text, which names the host
    and the port, stays out of the answer."""
    unreachable = create_engine("postgresql+psycopg2://assistant:secret-password@127.0.0.1:1/x",
                                connect_args={"connect_timeout": 1})

    def sessions() -> Any:
        return transaction(Session(bind=unreachable))

    status, checks = health(sessions, get_redis(), poll_interval=5.0, redbeat_prefix=redbeat_key_prefix)
    assert status == "failing" and not checks["database"]["ok"]
    assert checks["database"]["kind"] == "unreachable"
    answer = json.dumps(checks)
    assert "127.0.0.1" not in answer and "port 1" not in answer and "secret-password" not in answer


def test_one_profile_down_of_several_is_degraded_not_failing() -> None:
    """The overall status: shared parts failing, or every profile down, is failing; some of several
    profiles down is degraded (the others keep answering)."""
    def checks(**states: bool) -> dict[str, Any]:
        return {name: {"ok": ok} for name, ok in states.items()}

    profiles = {"a": ["wappi:a", "poll:a"], "b": ["telegram:b", "poll:b"]}
    everything = {"database": True, "redis": True, "beat": True,
                  "wappi:a": True, "poll:a": True, "telegram:b": True, "poll:b": True}
    assert overall(checks(**everything), profiles) == "ok"
    assert overall(checks(**{**everything, "poll:b": False}), profiles) == "degraded"
    assert overall(checks(**{**everything, "poll:b": False, "wappi:a": False}), profiles) == "failing"
    assert overall(checks(**{**everything, "beat": False}), profiles) == "failing"
    assert overall(checks(**{"database": True, "redis": True, "beat": True, "wappi:a": False, "poll:a": True}),
                   {"a": ["wappi:a", "poll:a"]}) == "failing", "the only profile down is no degraded service"


def test_stats_count_todays_work(sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    chain.poll(sessions)
    customer_says(wappi, "77600000001", "Хочу заказать торт, сколько стоит доставка?")
    for message_id in chain.poll(sessions):
        chain.answer(sessions, message_id)
    assert replies_to(wappi, "77600000001")
    timezone = get_settings().timezone
    today = stats(session, get_redis(), timezone)
    assert today["timezone"] == "Asia/Almaty"
    assert today["messages"]["received"] == 1 and today["messages"]["sent"] == 1
    assert today["classified"]["lead"] == 1 and today["replies"] == 1
    assert set(today["queues"]) == set(QUEUES)
    assert today["dead_letters"] == 0 and today["model_tokens"]["total"] > 0
    # The business's next day starts from zero.
    tomorrow = stats(session, get_redis(), timezone, now=datetime.now(UTC) + timedelta(days=1))
    assert tomorrow["messages"] == {"received": 0, "sent": 0, "transcribed": 0}
    assert tomorrow["replies"] == 0 and tomorrow["model_tokens"]["total"] == 0


def test_logs_are_json_with_context_and_no_secrets() -> None:
    formatter = JsonFormatter([WAPPI_TOKEN])
    record = logging.LogRecord("pipeline", logging.WARNING, __file__, 1,
                               "call to 77011234567 failed with token %s", (WAPPI_TOKEN,), None)
    with log_context(profile=PROFILE_ID, message_id=42):
        line = json.loads(formatter.format(record))
    assert line["level"] == "WARNING" and line["profile"] == PROFILE_ID and line["message_id"] == 42
    assert WAPPI_TOKEN not in line["msg"] and "***" in line["msg"]
    assert "77011234567" not in line["msg"] and "*******4567" in line["msg"]
