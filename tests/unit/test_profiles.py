"""Profiles are first-class (issue 13, first step): encrypted credentials with key rotation,
per-profile settings over the global ones, and `celery -A tasks profiles ...`.

The CLI runs in-process with click's CliRunner against the test's rolled-back session (the commands
take a session factory from their context object); one test runs the real `celery` command in a
subprocess to prove the entry point is registered.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.profiles import profiles
from db.models import Profile
from db.session import SessionFactory
from domain.states import Provider
from emulators.telegram import TelegramEmulator
from pipeline.credentials import CredentialsError, decrypt, encrypt, profile_token, reencrypt
from pipeline.profile_settings import effective_settings, parse_overrides
from settings import Settings, SettingsError, load_settings
from tests.support.cli import celery
from tests.support.env import PROFILE_ID, WAPPI_TOKEN

KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()
BOT_TOKEN = "424242:bot-secret-token-for-profile-tests"
BOT_TOKEN_ENV = "PROFILE_TEST_BOT_TOKEN"


def product_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the product logged; the emulators' own request log (the Bot API path holds the token,
    as Telegram's own server log would) is the other side's, not ours."""
    return "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("emulators"))


def settings_with(**overrides: str) -> Settings:
    return load_settings({**os.environ, **overrides})


@pytest.fixture()
def bot() -> Iterator[TelegramEmulator]:
    with TelegramEmulator(token=BOT_TOKEN) as emulator:
        yield emulator


@pytest.fixture()
def run(sessions: SessionFactory, bot: TelegramEmulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = settings_with(CREDENTIALS_KEY=KEY_OLD, TELEGRAM_BASE_URL=bot.url)
    monkeypatch.setenv(BOT_TOKEN_ENV, BOT_TOKEN)

    def invoke(*args: str, stdin: str | None = None) -> Result:
        # `app` stands in for the Celery app that `celery -A tasks` puts on the context.
        return CliRunner().invoke(profiles, list(args), input=stdin,
                                  obj=SimpleNamespace(app=object(), sessions=sessions, settings=settings))
    return invoke


# -- credentials -------------------------------------------------------------------------------

def test_a_token_round_trips_and_is_not_stored_in_plaintext() -> None:
    settings = settings_with(CREDENTIALS_KEY=KEY_OLD)
    stored = encrypt(BOT_TOKEN, settings)
    assert BOT_TOKEN.encode() not in stored
    assert decrypt(stored, settings) == BOT_TOKEN


def test_rotation_the_first_key_encrypts_every_key_decrypts() -> None:
    stored_under_old = encrypt(BOT_TOKEN, settings_with(CREDENTIALS_KEY=KEY_OLD))
    rotating = settings_with(CREDENTIALS_KEY=f"{KEY_NEW}, {KEY_OLD}")
    assert decrypt(stored_under_old, rotating) == BOT_TOKEN
    moved = reencrypt(stored_under_old, rotating)
    # Once re-encrypted, the old key can be dropped from the list.
    assert decrypt(moved, settings_with(CREDENTIALS_KEY=KEY_NEW)) == BOT_TOKEN
    with pytest.raises(CredentialsError, match="CREDENTIALS_KEY") as caught:
        decrypt(moved, settings_with(CREDENTIALS_KEY=KEY_OLD))
    assert BOT_TOKEN not in str(caught.value)


def test_a_missing_key_is_an_error_naming_credentials_key() -> None:
    settings = settings_with(CREDENTIALS_KEY="")
    with pytest.raises(CredentialsError, match="CREDENTIALS_KEY is not set"):
        encrypt(BOT_TOKEN, settings)
    stored = encrypt(BOT_TOKEN, settings_with(CREDENTIALS_KEY=KEY_OLD))
    with pytest.raises(CredentialsError, match="CREDENTIALS_KEY is not set"):
        profile_token(Profile(provider="telegram_bot", profile_id="bot", credentials=stored), settings)


def test_a_malformed_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError, match=r"CREDENTIALS_KEY=\*\*\* is invalid: key 2 is not a Fernet key"):
        settings_with(CREDENTIALS_KEY=f"{KEY_OLD},not-a-key-at-all")


def test_the_key_never_shows_in_redacted_settings_or_the_repr() -> None:
    settings = settings_with(CREDENTIALS_KEY=KEY_OLD)
    assert settings.redacted()["CREDENTIALS_KEY"] == "***"
    assert KEY_OLD not in repr(settings)
    assert WAPPI_TOKEN not in repr(settings)


def test_the_environment_profile_keeps_the_environment_token_with_zero_configuration() -> None:
    settings = settings_with(CREDENTIALS_KEY="")
    assert profile_token(Profile(provider="wappi", profile_id=PROFILE_ID, credentials=None), settings) == WAPPI_TOKEN
    with pytest.raises(CredentialsError, match="has no token"):
        profile_token(Profile(provider="telegram_bot", profile_id="bot", credentials=None), settings)


# -- per-profile settings ----------------------------------------------------------------------

def test_effective_settings_overlay_the_profile_on_the_global_ones_and_say_where_each_comes_from() -> None:
    base = settings_with()
    environ = {"BATCH_WINDOW": "1.5"}
    profile = Profile(provider="wappi", profile_id="b2b2b2b2-0001", settings={
        "BUSINESS_NAME": "Цветы у дома", "WORKING_DAYS": "mon-sat", "WORKING_HOURS": "09:00-21:00",
        "SEND_BURST": 5, "ANSWER_UNDECIDED": False, "BUSINESS_TIMEZONE": "Europe/Moscow", "KB_DIR": " "})
    effective, sources = effective_settings(profile, base, environ)
    assert effective.business_name == "Цветы у дома"
    assert effective.working_days == (0, 1, 2, 3, 4, 5)
    assert effective.working_hours == (540, 1260)
    assert effective.send_burst == 5
    assert effective.answer_undecided is False
    assert effective.timezone == "Europe/Moscow"
    assert effective.kb_dir == base.kb_dir  # blank is unset
    assert effective.batch_window == base.batch_window
    assert effective.gemini_model == base.gemini_model  # not a per-profile key: untouched
    assert sources["BUSINESS_NAME"] == "profile"
    assert sources["BATCH_WINDOW"] == "environment"
    assert sources["KB_DIR"] == "default"


def test_the_environment_profile_without_overrides_runs_with_the_global_settings() -> None:
    base = settings_with()
    effective, sources = effective_settings(Profile(provider="wappi", profile_id=PROFILE_ID, settings={}), base)
    assert effective == base
    assert "profile" not in sources.values()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"GEMINI_API_KEY": "x"}, "GEMINI_API_KEY is not a per-profile setting"),
    ({"WORKING_HOURS": "18:00-10:00"}, "WORKING_HOURS='18:00-10:00' is invalid"),
    ({"SEND_RATE_PER_MINUTE": "0"}, "SEND_RATE_PER_MINUTE='0' is invalid: must be a positive integer"),
    ({"BUSINESS_TIMEZONE": "Mars/Olympus"}, "BUSINESS_TIMEZONE='Mars/Olympus' is invalid"),
    ({"ANSWER_UNDECIDED": "perhaps"}, "ANSWER_UNDECIDED='perhaps' is invalid"),
    ({"WORKING_DAYS": ["mon"]}, "WORKING_DAYS must be a text value"),
])
def test_unknown_keys_and_bad_values_are_refused_naming_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_overrides(overrides)
    assert message in str(caught.value)


def test_a_profile_secret_is_taken_as_set_and_a_bad_one_refused_without_echoing_it() -> None:
    base = settings_with()
    profile = Profile(provider="wappi", profile_id="x", settings={"WEBHOOK_SECRET": "s3cr3t-value"})
    assert effective_settings(profile, base)[0].webhook_secret == "s3cr3t-value"
    profile.settings = {"WEBHOOK_SECRET": {"value": "s3cr3t-value"}}
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET must be a text value") as caught:
        effective_settings(profile, base)
    assert "s3cr3t-value" not in str(caught.value)


# -- the command line --------------------------------------------------------------------------

def test_add_stores_the_bot_token_encrypted_and_never_prints_it(run: Any, session: Session,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    result = run("add", "--provider", "telegram_bot", "--profile-id", "flowers_bot", "--name", "Flowers",
                 "--token-env", BOT_TOKEN_ENV)
    assert result.exit_code == 0, result.output
    profile = session.scalars(select(Profile).where(Profile.profile_id == "flowers_bot")).one()
    assert profile.provider == Provider.TELEGRAM_BOT and profile.active
    assert profile.credentials is not None and BOT_TOKEN.encode() not in profile.credentials
    assert decrypt(profile.credentials, settings_with(CREDENTIALS_KEY=KEY_OLD)) == BOT_TOKEN
    assert BOT_TOKEN not in repr(profile)

    shown = run("show", "flowers_bot")
    checked = run("check", "flowers_bot")
    assert shown.exit_code == 0 and "credentials: set (encrypted)" in shown.output
    assert checked.exit_code == 0, checked.output
    assert "ok, bot @" in checked.output
    for text in (result.output, shown.output, checked.output, product_log(caplog)):
        assert BOT_TOKEN not in text
        assert BOT_TOKEN.split(":")[1] not in text


def test_add_reads_the_token_from_stdin(run: Any, session: Session) -> None:
    result = run("add", "--provider", "wappi_telegram", "--profile-id", "c3c3c3c3-0002", "--token-stdin",
                 stdin="wappi-account-token-two\n")
    assert result.exit_code == 0, result.output
    profile = session.scalars(select(Profile).where(Profile.profile_id == "c3c3c3c3-0002")).one()
    assert decrypt(profile.credentials or b"", settings_with(CREDENTIALS_KEY=KEY_OLD)) == "wappi-account-token-two"


@pytest.mark.parametrize(("args", "message"), [
    (("--provider", "whatsapp", "--profile-id", "d4d4d4d4-0003"), "'whatsapp' is not one of"),
    (("--provider", "wappi", "--profile-id", "nonsense"), "must look like 8+4 hex digits"),
    (("--provider", "telegram_bot", "--profile-id", "tokenless_bot"), "needs its bot token"),
    (("--provider", "wappi", "--profile-id", "d4d4d4d4-0003", "--token-env", "NO_SUCH_VARIABLE_HERE"),
     "the variable NO_SUCH_VARIABLE_HERE is not set"),
    (("--provider", "wappi", "--profile-id", PROFILE_ID), "exists already"),
])
def test_add_refuses_bad_input_naming_it(run: Any, session: Session, args: tuple[str, ...], message: str) -> None:
    run("list")  # creates the environment's profile, as every entry point does
    result = run("add", *args)
    assert result.exit_code != 0
    assert message in result.output


def test_list_shows_the_environment_profile_with_zero_configuration(run: Any) -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    assert PROFILE_ID in result.output and "wappi" in result.output and "never" in result.output


def test_set_overrides_validates_and_unsets_and_show_says_where_each_value_comes_from(
        run: Any, session: Session) -> None:
    run("list")
    result = run("set", PROFILE_ID, "BUSINESS_NAME=Цветы у дома", "working_hours=09:00-21:00",
                 "WEBHOOK_SECRET=hook-secret-value")
    assert result.exit_code == 0, result.output
    assert "hook-secret-value" not in result.output
    profile = session.scalars(select(Profile).where(Profile.profile_id == PROFILE_ID)).one()
    assert profile.settings == {"BUSINESS_NAME": "Цветы у дома", "WORKING_HOURS": "09:00-21:00",
                                "WEBHOOK_SECRET": "hook-secret-value"}

    shown = run("show", PROFILE_ID)
    assert "BUSINESS_NAME=Цветы у дома  [profile]" in shown.output
    assert "WORKING_HOURS=(540, 1260)  [profile]" in shown.output
    assert "WEBHOOK_SECRET=***  [profile]" in shown.output
    assert "BATCH_WINDOW=1.5  [environment]" in shown.output
    assert "KB_DIR=" in shown.output and "[default]" in shown.output
    assert "credentials: not set (uses WAPPI_TOKEN)" in shown.output
    assert "hook-secret-value" not in shown.output

    assert run("set", PROFILE_ID, "BUSINESS_NAME=").exit_code == 0
    session.refresh(profile)  # the command wrote through its own session
    assert profile.settings == {"WORKING_HOURS": "09:00-21:00", "WEBHOOK_SECRET": "hook-secret-value"}


@pytest.mark.parametrize(("assignment", "message"), [
    ("GEMINI_MODEL=other", "GEMINI_MODEL is not a per-profile setting"),
    ("SEND_BURST=many", "SEND_BURST='many' is invalid"),
    ("BUSINESS_NAME", "'BUSINESS_NAME' is not KEY=VALUE"),
])
def test_set_refuses_bad_input_and_stores_nothing(run: Any, session: Session, assignment: str, message: str) -> None:
    run("list")
    result = run("set", PROFILE_ID, "BUSINESS_NAME=kept out", assignment)
    assert result.exit_code != 0
    assert message in result.output
    assert session.scalars(select(Profile.settings).where(Profile.profile_id == PROFILE_ID)).one() == {}


def test_disable_and_enable(run: Any, session: Session) -> None:
    run("list")
    assert run("disable", PROFILE_ID).exit_code == 0
    profile = session.scalars(select(Profile).where(Profile.profile_id == PROFILE_ID)).one()
    assert profile.active is False and profile.disabled_at is not None
    assert "disabled" in run("show", PROFILE_ID).output
    assert run("enable", str(profile.id)).exit_code == 0  # our numeric id works too
    session.refresh(profile)  # the command wrote through its own session
    assert profile.active is True and profile.disabled_at is None
    missing = run("enable", "no-such-profile")
    assert missing.exit_code != 0 and "no profile 'no-such-profile'" in missing.output


def test_check_asks_wappi_for_the_environment_profile(run: Any) -> None:
    run("list")
    result = run("check", PROFILE_ID)
    assert result.exit_code == 0, result.output
    assert "ok, authorized yes" in result.output
    assert WAPPI_TOKEN not in result.output


def test_check_fails_non_zero_when_the_provider_refuses(run: Any, bot: TelegramEmulator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "424242:a-revoked-bot-token-never-shown"
    added = run("add", "--provider", "telegram_bot", "--profile-id", "revoked_bot", "--token-stdin",
                stdin=wrong + "\n")
    assert added.exit_code == 0, added.output
    result = run("check", "revoked_bot")
    assert result.exit_code != 0
    assert "profile revoked_bot" in result.output
    assert wrong not in result.output and wrong not in product_log(caplog)
    unknown = run("add", "--provider", "wappi", "--profile-id", "e5e5e5e5-0004", "--token-stdin",
                  stdin="not-the-wappi-token\n")
    assert unknown.exit_code == 0
    refused = run("check", "e5e5e5e5-0004")
    assert refused.exit_code != 0 and "not-the-wappi-token" not in refused.output


def test_the_celery_command_has_the_profiles_group() -> None:
    result = celery("profiles", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("add", "list", "show", "enable", "disable", "set", "check"):
        assert command in result.stdout
    missing = celery("profiles", "show", "no-such-profile")
    assert missing.returncode != 0
    assert "no profile 'no-such-profile'" in missing.stderr
