"""The test environment, as an operator would set it: applied before any project module is imported
(the settings are read once per process), and passed on to every worker process the tests start."""

from __future__ import annotations

import os

from devstack import MACHINE_POSTGRES, database_url

TEST_DB = os.environ.get("TEST_DATABASE_NAME", "assistant_test")
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", MACHINE_POSTGRES)
TEST_DATABASE_URL = database_url(PG_ADMIN_URL, TEST_DB)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PROFILE_ID = "a1b2c3d4-e5f6"
WAPPI_TOKEN = "test-wappi-token-0123456789abcdef01234567"
GEMINI_KEY = "test-gemini-key"
# A private Wappi emulator (the unit tier's `private_wappi`), for client and wire-format tests.
PRIVATE_TOKEN = "private-wappi-token"
PRIVATE_PROFILE = "0a1b2c3d-4e5f"
WEBHOOK_SECRET = "webhook-secret-for-tests"  # the web app of the functional tests has it set
BOT_TOKEN = "7000000001:test-bot-token-AAbbCCddEEffGGhh"  # the shared Telegram emulator's bot
CREDENTIALS_KEY = "k2Ax1M3QK9yD0t4oC7cE6b5Yw8Z2n1q0P3r4s5t6u7o="  # a Fernet key, for tests only
# The login of the web app's operations surfaces (/dashboard, /stats, /health); the hash is
# `python -m web.users add` of the password, with a fixed salt.
DASHBOARD_USER = "owner"
DASHBOARD_PASSWORD = "dashboard-password-for-tests"
DASHBOARD_HASH = "scrypt:16384:8:1:dGVzdC1zYWx0LTAxMjNhYg:8kNycrMQR9n0GbaxTUVade_n4sUJRhLNgwjtCQhQXL8"

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
    "CREDENTIALS_KEY": CREDENTIALS_KEY,
    "DASHBOARD_USERS": f"{DASHBOARD_USER}:{DASHBOARD_HASH}",
}


def apply() -> None:
    os.environ.update(BASE_ENV)
