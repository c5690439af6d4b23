"""Test fixtures: real PostgreSQL, real Redis, real Celery worker processes, HTTP emulators, all
from the dev stack (`devstack`).

The environment is set here, before any project module is imported, exactly as an operator
would set it; the workers are started as `celery -A tasks worker` subprocesses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import (
    MACHINE_POSTGRES,
    ROOT,  # noqa: F401 - test modules import it from here
    WorkerPool,
    create_database,
    database_url,
    migrate,
    shared_emulators,
    wait_for,
)

TEST_DB = os.environ.get("TEST_DATABASE_NAME", "assistant_test")
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", MACHINE_POSTGRES)
TEST_DATABASE_URL = database_url(PG_ADMIN_URL, TEST_DB)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PROFILE_ID = "a1b2c3d4-e5f6"
WAPPI_TOKEN = "test-wappi-token-0123456789abcdef01234567"
GEMINI_KEY = "test-gemini-key"

BASE_ENV = {
    "WAPPI_TOKEN": WAPPI_TOKEN,
    "WAPPI_PROFILE_ID": PROFILE_ID,
    "WAPPI_TIMEOUT": "3",
    "GEMINI_API_KEY": GEMINI_KEY,
    "GEMINI_TIMEOUT_MS": "5000",
    "DATABASE_URL": TEST_DATABASE_URL,
    "REDIS_URL": TEST_REDIS_URL,
    "LOG_LEVEL": "INFO",
    # The global send limit and the chat gap have tests of their own; here they would only slow.
    "SEND_RATE_PER_MINUTE": "6000",
    "SEND_BURST": "100",
    "SEND_CHAT_GAP_MIN": "0",
    "SEND_CHAT_GAP_MAX": "0",
    # A short burst window keeps the suite quick; the batching tests set their own.
    "BATCH_WINDOW": "1.5",
}
# The emulators' URLs are added once they listen (see the session fixtures).
for name, value in BASE_ENV.items():
    os.environ[name] = value

from emulators.gemini import GeminiEmulator  # noqa: E402
from emulators.wappi import WappiEmulator  # noqa: E402

# Started before any test imports the settings, so every process sees the emulators' URLs. Test
# modules import this file again as `tests.conftest`; the dev stack keeps one pair per process.
_WAPPI, _GEMINI = shared_emulators(WAPPI_TOKEN, PROFILE_ID, GEMINI_KEY)
os.environ["WAPPI_BASE_URL"] = _WAPPI.url
os.environ["GEMINI_BASE_URL"] = _GEMINI.url


@pytest.fixture(scope="session")
def wappi() -> Iterator[WappiEmulator]:
    yield _WAPPI
    _WAPPI.stop()


@pytest.fixture(scope="session")
def gemini() -> Iterator[GeminiEmulator]:
    yield _GEMINI
    _GEMINI.stop()


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    create_database(PG_ADMIN_URL, TEST_DB)
    migrate(os.environ)
    yield TEST_DATABASE_URL


@pytest.fixture(scope="session")
def redis_client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def workers(wappi: WappiEmulator, gemini: GeminiEmulator, database: str, redis_client: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    pool = WorkerPool(tmp_path_factory.mktemp("workers"))
    pool.start("main", concurrency=3)  # every queue
    yield pool
    pool.stop_all()


@pytest.fixture()
def clean(wappi: WappiEmulator, gemini: GeminiEmulator, database: str, redis_client: Any) -> Iterator[None]:
    """Empty tables, a fresh emulator state and no leftover Redis keys of ours."""
    import sqlalchemy as sa

    from db.session import get_engine

    engine = get_engine()
    with engine.begin() as connection:
        connection.execute(sa.text(
            "TRUNCATE model_usage, dead_letters, scheduled_calls, follow_ups, whitelist, outbox, "  # not kb_*
            "messages, contacts, profiles RESTART IDENTITY CASCADE"))
    for redis_key in redis_client.scan_iter("assistant:*"):
        redis_client.delete(redis_key)
    wappi_reset(wappi)
    gemini_reset(gemini)
    yield


def wappi_reset(wappi: WappiEmulator) -> None:
    import requests

    requests.post(f"{wappi.url}/_emulator/reset", timeout=5).raise_for_status()


def gemini_reset(gemini: GeminiEmulator) -> None:
    import requests

    requests.post(f"{gemini.url}/_emulator/reset", timeout=5).raise_for_status()


def run_poll() -> None:
    """Ask the workers for one poll, as beat would, and wait until it ran."""
    from tasks import app

    before = _poll_count()
    app.send_task("pipeline.poll", queue="poll")
    wait_for(lambda: _poll_count() > before, timeout=30, message="a poll to finish")


def _poll_count() -> int:
    import sqlalchemy as sa

    from db.session import get_engine

    with get_engine().connect() as connection:
        value = connection.execute(sa.text("SELECT extract(epoch FROM max(last_poll_at)) FROM profiles")).scalar()
    return int(float(value) * 1000) if value is not None else 0
