"""Fixtures both tiers share: the test environment (set before any project module is imported),
the Wappi and Gemini emulators over HTTP, a fresh migrated PostgreSQL database and Redis, all from
the dev stack (`devstack`). The unit tier adds a rolled-back session (tests/unit/conftest.py), the
functional tier real worker processes (tests/functional/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import env

env.apply()

# isort: split
import redis  # noqa: E402 - after the environment is set, like every project module

from devstack import create_database, migrate, shared_emulators, shared_telegram  # noqa: E402
from emulators.gemini import GeminiEmulator  # noqa: E402
from emulators.telegram import TelegramEmulator  # noqa: E402
from emulators.wappi import WappiEmulator  # noqa: E402

# Started before any test imports the settings, so every process sees the emulators' URLs; the dev
# stack keeps one pair per process.
_WAPPI, _GEMINI = shared_emulators(env.WAPPI_TOKEN, env.PROFILE_ID, env.GEMINI_KEY)
os.environ["WAPPI_BASE_URL"] = _WAPPI.url
os.environ["GEMINI_BASE_URL"] = _GEMINI.url
_TELEGRAM = shared_telegram(env.BOT_TOKEN)
os.environ["TELEGRAM_BASE_URL"] = _TELEGRAM.url


@pytest.fixture(scope="session")
def wappi() -> Iterator[WappiEmulator]:
    yield _WAPPI
    _WAPPI.stop()


@pytest.fixture(scope="session")
def gemini() -> Iterator[GeminiEmulator]:
    yield _GEMINI
    _GEMINI.stop()


@pytest.fixture(scope="session")
def telegram() -> Iterator[TelegramEmulator]:
    """The shared Telegram Bot API emulator (one bot, env.BOT_TOKEN), reset before each test that uses it."""
    yield _TELEGRAM
    _TELEGRAM.stop()


@pytest.fixture()
def bot(telegram: TelegramEmulator) -> TelegramEmulator:
    telegram.reset()
    return telegram


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    create_database(env.PG_ADMIN_URL, env.TEST_DB)
    migrate(os.environ)
    yield env.TEST_DATABASE_URL


@pytest.fixture(scope="session")
def redis_client() -> Iterator[Any]:
    client = redis.Redis.from_url(env.TEST_REDIS_URL)
    client.flushdb()
    yield client
    client.close()
