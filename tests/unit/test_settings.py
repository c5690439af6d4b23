"""Settings are read once and validated; a bad one stops the process with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from settings import ROOT, SettingsError, database_url_only, describe, load_settings

VALID = {"WAPPI_TOKEN": "t" * 40, "WAPPI_PROFILE_ID": "71ad40e9-b023", "GEMINI_API_KEY": "key"}


def test_valid_environment_gives_defaults() -> None:
    settings = load_settings(VALID)
    assert settings.timezone == "Asia/Almaty"
    assert settings.database_url == "postgresql+psycopg2://assistant@127.0.0.1:5432/assistant"
    assert database_url_only({}) == settings.database_url  # what migrations use, from the same default
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("missing", ["WAPPI_TOKEN", "WAPPI_PROFILE_ID", "GEMINI_API_KEY"])
def test_missing_setting_is_named(missing: str) -> None:
    environ = {name: value for name, value in VALID.items() if name != missing}
    with pytest.raises(SettingsError, match=missing):
        load_settings(environ)


@pytest.mark.parametrize(("name", "value"), [
    ("WAPPI_PROFILE_ID", "not-a-profile"),
    ("POLL_INTERVAL", "soon"),
    ("BUSINESS_TIMEZONE", "Mars/Olympus"),
    ("REDIS_URL", "localhost:6379"),
    ("WAPPI_BASE_URL", "wappi.pro"),
    ("DATABASE_URL", "sqlite:///var/assistant.db"),
])
def test_malformed_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**VALID, name: value})


def test_migrations_refuse_a_database_url_that_is_not_postgresql() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        database_url_only({"DATABASE_URL": "sqlite:///var/assistant.db"})


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**VALID, "GEMINI_TIMEOUT_MS": "abc", "WAPPI_PROFILE_ID": "bad"})
    assert "t" * 40 not in str(caught.value)
    redacted = load_settings(VALID).redacted()
    assert redacted["WAPPI_TOKEN"] == "***" and redacted["GEMINI_API_KEY"] == "***"


def test_env_example_lists_every_setting() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name, _help, _default, _required in describe():
        assert f"{name}=" in example, f"{name} is missing from .env.example"


def test_worker_without_a_token_exits_naming_it() -> None:
    environ = {key: value for key, value in os.environ.items() if key != "WAPPI_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "send"],
                            cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "WAPPI_TOKEN is not set" in result.stderr
    assert "Traceback" not in result.stderr
