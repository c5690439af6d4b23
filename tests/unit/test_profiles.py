"""Profiles are first-class (issue 13): encrypted credentials with key rotation, per-profile settings
over the global ones, and `celery -A tasks profiles ...` (the send-limit warm-up, the proactive cap,
the at-a-glance list, a bot's webhook).

The CLI runs in-process with click's CliRunner against the test's rolled-back session (the commands
take a session factory from their context object); one test runs the real `celery` command in a
subprocess to prove the entry point is registered.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from sqlalchemy import Connection, event, select
from sqlalchemy.orm import Session

from cli.profiles import profiles
from db.models import Contact, Message, Outbox, Profile
from db.session import SessionFactory
from domain.sending import day_start
from domain.states import Author, Direction, MessageStatus, OutboxKind, OutboxStatus, Provider
from emulators.telegram import TelegramEmulator
from pipeline.bot_updates import ALLOWED_UPDATES
from pipeline.credentials import CredentialsError, decrypt, encrypt, profile_token, reencrypt
from pipeline.profile_settings import effective_settings, parse_overrides
from settings import Settings, SettingsError, load_settings, parse_setting, setting_named
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
    # The warm-up and the proactive cap at their shipped values (the test environment lifts the send limit).
    settings = settings_with(CREDENTIALS_KEY=KEY_OLD, TELEGRAM_BASE_URL=bot.url, SEND_RATE_PER_MINUTE="20",
                             WARMUP_SCHEDULE="2,4,6,10,15", PROACTIVE_DAILY_CAP="50")
    monkeypatch.setenv(BOT_TOKEN_ENV, BOT_TOKEN)

    def invoke(*args: str, stdin: str | None = None, **changes: str) -> Result:
        # `app` stands in for the Celery app that `celery -A tasks` puts on the context.
        used = dataclasses.replace(settings, **{setting_named(name).name: parse_setting(name, value)
                                                for name, value in changes.items()})
        return CliRunner().invoke(profiles, list(args), input=stdin,
                                  obj=SimpleNamespace(app=object(), sessions=sessions, settings=used))
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
    sealed = profile.settings.pop("WEBHOOK_SECRET")
    assert sealed.startswith("fernet:") and "hook-secret-value" not in sealed  # never stored in plaintext
    assert profile.settings == {"BUSINESS_NAME": "Цветы у дома", "WORKING_HOURS": "09:00-21:00"}
    profile.settings = {**profile.settings, "WEBHOOK_SECRET": sealed}

    shown = run("show", PROFILE_ID)
    assert "BUSINESS_NAME=Цветы у дома  [profile]" in shown.output
    assert "WORKING_HOURS=09:00-21:00  [profile]" in shown.output
    assert "WORKING_DAYS=mon,tue,wed,thu,fri  [default]" in shown.output
    assert "WARMUP_SCHEDULE=2,4,6,10,15  [default]" in shown.output
    assert "WEBHOOK_SECRET=***  [profile]" in shown.output
    assert "BATCH_WINDOW=1.5  [environment]" in shown.output
    assert "KB_DIR=" in shown.output and "[default]" in shown.output
    assert "credentials: not set (uses WAPPI_TOKEN)" in shown.output
    assert "hook-secret-value" not in shown.output

    assert run("set", PROFILE_ID, "BUSINESS_NAME=").exit_code == 0
    session.refresh(profile)  # the command wrote through its own session
    assert profile.settings == {"WORKING_HOURS": "09:00-21:00", "WEBHOOK_SECRET": sealed}


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
    for command in ("add", "list", "show", "enable", "disable", "set", "check", "resume-proactive", "rotate-key",
                    "webhook"):
        assert command in result.stdout
    missing = celery("profiles", "show", "no-such-profile")
    assert missing.returncode != 0
    assert "no profile 'no-such-profile'" in missing.stderr


# -- warm-up, the proactive cap, the overview --------------------------------------------------

def the_profile(session: Session, profile_id: str) -> Profile:
    profile = session.scalars(select(Profile).where(Profile.profile_id == profile_id)).one()
    session.refresh(profile)  # the commands write through their own session
    return profile


def test_add_starts_the_send_limit_warm_up_unless_the_number_is_already_in_use(run: Any, session: Session) -> None:
    before = datetime.now(UTC)
    new_number = run("add", "--provider", "wappi", "--profile-id", "f6f6f6f6-0005")
    used_number = run("add", "--provider", "wappi", "--profile-id", "f7f7f7f7-0006", "--no-warmup")
    after = datetime.now(UTC)
    assert new_number.exit_code == 0, new_number.output
    assert used_number.exit_code == 0, used_number.output
    assert "warm-up starts now: 2,4,6,10,15 sends/min on its first 5 days, then 20" in new_number.output
    assert "warm-up: none (--no-warmup)" in used_number.output
    warming = the_profile(session, "f6f6f6f6-0005").warmup_from
    assert warming is not None and before <= warming <= after
    assert the_profile(session, "f7f7f7f7-0006").warmup_from is None
    assert "warm-up: day 1 of 5, 2 sends/min (then 20)" in run("show", "f6f6f6f6-0005").output
    assert "warm-up: none, 20 sends/min" in run("show", "f7f7f7f7-0006").output


def test_show_tells_the_warm_up_day_and_when_it_is_over(run: Any, session: Session) -> None:
    run("list")
    profile = the_profile(session, PROFILE_ID)
    profile.warmup_from = datetime.now(UTC) - timedelta(days=1, hours=1)
    session.flush()
    assert "warm-up: day 2 of 5, 4 sends/min (then 20)" in run("show", PROFILE_ID).output
    profile.warmup_from = datetime.now(UTC) - timedelta(days=5, hours=1)
    session.flush()
    assert re.search(r"warm-up: over \(began \d{4}-\d\d-\d\d \d\d:\d\d UTC\), 20 sends/min\n",
                     run("show", PROFILE_ID).output)


def a_customer(session: Session, profile: Profile, phone: str) -> Contact:
    contact = Contact(profile_id=profile.id, phone=phone, chat_id=f"{phone}@c.us")
    session.add(contact)
    session.flush()
    return contact


def outbox(session: Session, contact: Contact, status: OutboxStatus, *, kind: OutboxKind = OutboxKind.REPLY,
           sent_at: datetime | None = None) -> None:
    session.add(Outbox(profile_id=contact.profile_id, contact_id=contact.id, idempotency_key=f"test-{uuid4()}",
                       kind=kind, body="Здравствуйте", status=status, sent_at=sent_at, last_send_at=sent_at))
    session.flush()


def inbound(session: Session, contact: Contact, status: MessageStatus) -> None:
    session.add(Message(profile_id=contact.profile_id, contact_id=contact.id, provider_message_id=f"in-{uuid4()}",
                        direction=Direction.IN, author=Author.CUSTOMER, text="Сколько стоит?", status=status))
    session.flush()


def test_show_counts_proactive_sends_today_and_says_how_to_resume_a_tripped_cap(run: Any, session: Session) -> None:
    run("list")
    profile = the_profile(session, PROFILE_ID)
    contact = a_customer(session, profile, "77011110001")
    now = datetime.now(UTC)
    for _ in range(3):
        outbox(session, contact, OutboxStatus.SENT, kind=OutboxKind.FOLLOW_UP, sent_at=now)
    outbox(session, contact, OutboxStatus.SENT, kind=OutboxKind.FOLLOW_UP, sent_at=now - timedelta(days=2))
    outbox(session, contact, OutboxStatus.SENT, kind=OutboxKind.REPLY, sent_at=now)  # replies are not capped
    assert "proactive today: 3 of 50" in run("show", PROFILE_ID).output

    profile.proactive_tripped_at = now
    session.flush()
    shown = run("show", PROFILE_ID).output
    assert "proactive: TRIPPED at " in shown and "(3 of 50 today)" in shown
    assert f"resume with `celery -A tasks profiles resume-proactive {PROFILE_ID}`" in shown


def test_show_tells_a_bot_s_update_mode_and_stored_offset(run: Any, session: Session) -> None:
    assert run("add", "--provider", "telegram_bot", "--profile-id", "flowers_bot", "--token-env",
               BOT_TOKEN_ENV).exit_code == 0
    assert "updates: poll [default], stored getUpdates offset none yet" in run("show", "flowers_bot").output
    the_profile(session, "flowers_bot").update_offset = 7702
    session.flush()
    assert "updates: poll [default], stored getUpdates offset 7702" in run("show", "flowers_bot").output
    assert "updates:" not in run("show", PROFILE_ID).output  # a Wappi profile has no Bot API updates


def column(header: str, line: str, name: str, width: int) -> str:
    start = header.index(name)
    return line[start:start + width].strip()


def overview(result: Result, profile_id: str) -> dict[str, str]:
    header, *lines = result.output.splitlines()
    line = next(line for line in lines if f"  {profile_id} " in line)
    return {"state": column(header, line, "STATE", 20), "queue": column(header, line, "QUEUE", 5),
            "sent today": column(header, line, "SENT TODAY", 10), "flags": line[header.index("FLAGS"):].strip()}


def test_list_shows_each_profile_s_queue_sends_today_and_a_tripped_cap_with_one_query_per_figure(
        run: Any, session: Session, connection: Connection) -> None:
    run("list")
    assert run("add", "--provider", "wappi", "--profile-id", "b7b7b7b7-0008", "--name", "Other shop").exit_code == 0
    assert run("set", "b7b7b7b7-0008", "BUSINESS_TIMEZONE=America/Los_Angeles").exit_code == 0
    ours, theirs = the_profile(session, PROFILE_ID), the_profile(session, "b7b7b7b7-0008")
    now = datetime.now(UTC)

    customer = a_customer(session, ours, "77011110002")
    for message_status in (MessageStatus.RECEIVED, MessageStatus.RECEIVED, MessageStatus.ANSWERED,
                           MessageStatus.IGNORED):
        inbound(session, customer, message_status)
    for outbox_status in (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED, OutboxStatus.CANCELLED):
        outbox(session, customer, outbox_status)
    our_day = day_start(now, "Asia/Almaty")  # the environment's BUSINESS_TIMEZONE
    for sent_at in (our_day + timedelta(seconds=1), now, our_day - timedelta(seconds=1)):
        outbox(session, customer, OutboxStatus.SENT, sent_at=sent_at)

    # The other business: its own rows, its own day (Los Angeles), its cap tripped, its number down.
    their_customer = a_customer(session, theirs, "77011110002")
    inbound(session, their_customer, MessageStatus.RECEIVED)
    outbox(session, their_customer, OutboxStatus.PENDING)
    their_day = day_start(now, "America/Los_Angeles")
    for sent_at in (their_day + timedelta(seconds=1), their_day - timedelta(seconds=1)):
        outbox(session, their_customer, OutboxStatus.SENT, sent_at=sent_at)
    theirs.proactive_tripped_at, theirs.down_reason = now, "not authorized"
    session.flush()

    statements: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(connection, "before_cursor_execute", record)
    try:
        result = run("list")
    finally:
        event.remove(connection, "before_cursor_execute", record)
    assert result.exit_code == 0, result.output
    assert overview(result, PROFILE_ID) == {"state": "ok", "queue": "4", "sent today": "2", "flags": "-"}
    assert overview(result, "b7b7b7b7-0008") == {"state": "not authorized", "queue": "2", "sent today": "1",
                                                  "flags": "PROACTIVE CAP TRIPPED"}
    figures = [statement for statement in statements if "FROM outbox" in statement or "FROM messages" in statement]
    assert len(figures) == 2, figures  # queue depth and sends today, for every profile at once


def test_resume_proactive_clears_a_tripped_cap_and_says_when_there_was_none(run: Any, session: Session) -> None:
    run("list")
    profile = the_profile(session, PROFILE_ID)
    profile.proactive_tripped_at = datetime.now(UTC)
    session.flush()
    resumed = run("resume-proactive", PROFILE_ID)
    assert resumed.exit_code == 0, resumed.output
    assert f"profile {PROFILE_ID}: proactive messages resumed" in resumed.output
    assert the_profile(session, PROFILE_ID).proactive_tripped_at is None
    assert "PROACTIVE CAP TRIPPED" not in run("list").output

    again = run("resume-proactive", str(profile.id))
    assert again.exit_code == 0
    assert "the proactive cap is not tripped, nothing to resume" in again.output


def test_resume_proactive_warns_when_today_s_count_still_trips_the_cap(run: Any, session: Session) -> None:
    run("list")
    profile = the_profile(session, PROFILE_ID)
    contact = a_customer(session, profile, "77011110003")
    for _ in range(2):
        outbox(session, contact, OutboxStatus.SENT, kind=OutboxKind.FOLLOW_UP, sent_at=datetime.now(UTC))
    profile.proactive_tripped_at = datetime.now(UTC)
    session.flush()
    resumed = run("resume-proactive", PROFILE_ID, PROACTIVE_DAILY_CAP="2")
    assert resumed.exit_code == 0
    assert "note: 2 of 2 went out today already" in resumed.output


# -- key rotation ------------------------------------------------------------------------------

def test_rotate_key_moves_every_stored_token_to_the_first_key(run: Any, session: Session) -> None:
    run("list")  # the environment's profile: no stored token, nothing to move
    assert run("add", "--provider", "telegram_bot", "--profile-id", "flowers_bot", "--token-env",
               BOT_TOKEN_ENV).exit_code == 0
    assert run("add", "--provider", "wappi_telegram", "--profile-id", "c3c3c3c3-0002", "--token-stdin",
               stdin="wappi-account-token-two\n").exit_code == 0

    rotated = run("rotate-key", CREDENTIALS_KEY=f"{KEY_NEW},{KEY_OLD}")
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 2 stored token(s) and the sealed settings under the first key of CREDENTIALS_KEY" \
        in rotated.output
    assert BOT_TOKEN not in rotated.output and "wappi-account-token-two" not in rotated.output
    only_new = settings_with(CREDENTIALS_KEY=KEY_NEW)
    bot_credentials = the_profile(session, "flowers_bot").credentials
    assert decrypt(bot_credentials or b"", only_new) == BOT_TOKEN
    assert decrypt(the_profile(session, "c3c3c3c3-0002").credentials or b"", only_new) == "wappi-account-token-two"
    with pytest.raises(CredentialsError):
        decrypt(bot_credentials or b"", settings_with(CREDENTIALS_KEY=KEY_OLD))
    assert the_profile(session, PROFILE_ID).credentials is None
    # The old key dropped: the bot still works.
    assert run("check", "flowers_bot", CREDENTIALS_KEY=KEY_NEW).exit_code == 0


def test_rotate_key_without_the_old_key_changes_nothing(run: Any, session: Session) -> None:
    assert run("add", "--provider", "telegram_bot", "--profile-id", "flowers_bot", "--token-env",
               BOT_TOKEN_ENV).exit_code == 0
    stored = the_profile(session, "flowers_bot").credentials
    refused = run("rotate-key", CREDENTIALS_KEY=KEY_NEW)
    assert refused.exit_code != 0
    assert "profile flowers_bot: a stored token cannot be decrypted with CREDENTIALS_KEY; no token was changed" \
        in refused.output
    assert the_profile(session, "flowers_bot").credentials == stored


# -- a bot's webhook ---------------------------------------------------------------------------

HOOK_SECRET = "hook_secret-0123456789"


@pytest.fixture()
def flowers_bot(run: Any) -> str:
    assert run("add", "--provider", "telegram_bot", "--profile-id", "flowers_bot", "--token-env",
               BOT_TOKEN_ENV).exit_code == 0
    return "flowers_bot"


def test_webhook_points_the_bot_at_our_route_and_delete_goes_back_to_polling(
        run: Any, session: Session, bot: TelegramEmulator, flowers_bot: str) -> None:
    assert run("set", flowers_bot, f"WEBHOOK_SECRET={HOOK_SECRET}").exit_code == 0
    sealed = the_profile(session, flowers_bot).settings["WEBHOOK_SECRET"]
    assert sealed.startswith("fernet:")
    url = f"https://shop.example.com/webhooks/telegram/{flowers_bot}"
    result = run("webhook", flowers_bot, "--url", url)
    assert result.exit_code == 0, result.output
    assert f"profile {flowers_bot}: webhook set to {url}" in result.output
    assert "warning" not in result.output and HOOK_SECRET not in result.output
    assert (bot.backend.webhook.url, bot.backend.webhook.secret_token) == (url, HOOK_SECRET)
    assert bot.webhook_info()["allowed_updates"] == sorted(ALLOWED_UPDATES)
    assert the_profile(session, flowers_bot).settings == {"WEBHOOK_SECRET": sealed,
                                                          "TELEGRAM_UPDATES": "webhook"}
    assert "updates: webhook [profile]" in run("show", flowers_bot).output

    deleted = run("webhook", flowers_bot, "--delete")
    assert deleted.exit_code == 0, deleted.output
    assert "webhook deleted; TELEGRAM_UPDATES=poll" in deleted.output
    assert bot.backend.webhook.url == ""
    assert the_profile(session, flowers_bot).settings == {"WEBHOOK_SECRET": sealed}
    assert "updates: poll [default]" in run("show", flowers_bot).output


def test_webhook_delete_keeps_the_bot_polling_when_the_global_mode_is_webhook(
        run: Any, session: Session, flowers_bot: str) -> None:
    assert run("webhook", flowers_bot, "--delete", TELEGRAM_UPDATES="webhook").exit_code == 0
    assert the_profile(session, flowers_bot).settings == {"TELEGRAM_UPDATES": "poll"}


def test_webhook_needs_the_bot_s_secret_first_and_changes_nothing_without_it(
        run: Any, session: Session, bot: TelegramEmulator, flowers_bot: str) -> None:
    result = run("webhook", flowers_bot, "--url", f"https://shop.example.com/webhooks/telegram/{flowers_bot}")
    assert result.exit_code != 0
    assert f"set it first: celery -A tasks profiles set {flowers_bot} WEBHOOK_SECRET=..." in result.output
    assert bot.backend.webhook.url == ""
    assert the_profile(session, flowers_bot).settings == {}


@pytest.mark.parametrize(("args", "message"), [
    (("--url", "ftp://shop.example.com/webhooks/telegram/flowers_bot"), "is not an http(s) URL"),
    (("--url", "shop.example.com/webhooks/telegram/flowers_bot"), "is not an http(s) URL"),
    ((), "give --url URL or --delete"),
    (("--url", "https://shop.example.com/webhooks/telegram/flowers_bot", "--delete"), "give --url URL or --delete"),
])
def test_webhook_refuses_a_bad_url_or_no_choice(run: Any, session: Session, bot: TelegramEmulator,
                                                flowers_bot: str, args: tuple[str, ...], message: str) -> None:
    assert run("set", flowers_bot, f"WEBHOOK_SECRET={HOOK_SECRET}").exit_code == 0
    result = run("webhook", flowers_bot, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert bot.backend.webhook.url == ""
    assert "TELEGRAM_UPDATES" not in the_profile(session, flowers_bot).settings


def test_webhook_warns_when_the_url_is_not_our_route_for_this_bot(run: Any, bot: TelegramEmulator,
                                                                  flowers_bot: str) -> None:
    assert run("set", flowers_bot, f"WEBHOOK_SECRET={HOOK_SECRET}").exit_code == 0
    result = run("webhook", flowers_bot, "--url", "https://shop.example.com/webhooks/telegram/other_bot")
    assert result.exit_code == 0, result.output
    assert f"warning: https://shop.example.com/webhooks/telegram/other_bot does not end with " \
           f"/webhooks/telegram/{flowers_bot}" in result.stderr
    assert bot.backend.webhook.url == "https://shop.example.com/webhooks/telegram/other_bot"


def test_webhook_of_a_wappi_profile_points_to_wappi_s_own_setting(run: Any, session: Session) -> None:
    run("list")
    result = run("webhook", PROFILE_ID, "--url", "https://shop.example.com/webhooks/wappi")
    assert result.exit_code != 0
    assert "Wappi's webhooks are set in Wappi's cabinet or with its webhook/url/set method" in result.output
    assert "https://<host>/webhooks/wappi" in result.output
    assert the_profile(session, PROFILE_ID).settings == {}


def test_webhook_with_a_refused_token_fails_without_showing_it(run: Any, session: Session,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "424242:a-revoked-bot-token-never-shown"
    assert run("add", "--provider", "telegram_bot", "--profile-id", "revoked_bot", "--token-stdin",
               stdin=wrong + "\n").exit_code == 0
    assert run("set", "revoked_bot", f"WEBHOOK_SECRET={HOOK_SECRET}").exit_code == 0
    result = run("webhook", "revoked_bot", "--url", "https://shop.example.com/webhooks/telegram/revoked_bot")
    assert result.exit_code != 0
    assert "profile revoked_bot: " in result.output
    assert wrong not in result.output and wrong.split(":")[1] not in product_log(caplog)
    assert "TELEGRAM_UPDATES" not in the_profile(session, "revoked_bot").settings


def test_a_secret_setting_is_stored_sealed_and_read_back_and_rotated(run: Any, session: Session) -> None:
    """WEBHOOK_SECRET set for one profile is never stored in plaintext; the pipeline reads it back,
    and key rotation moves it to the new key."""
    run("list")
    result = run("set", PROFILE_ID, "WEBHOOK_SECRET=florist-hook-secret")
    assert result.exit_code == 0, result.output
    assert "florist-hook-secret" not in result.output
    profile = session.scalars(select(Profile).where(Profile.profile_id == PROFILE_ID)).one()
    assert profile.settings["WEBHOOK_SECRET"].startswith("fernet:")
    assert "florist-hook-secret" not in json.dumps(profile.settings)
    assert effective_settings(profile, settings_with(CREDENTIALS_KEY=KEY_OLD))[0].webhook_secret \
        == "florist-hook-secret"
    assert run("rotate-key", CREDENTIALS_KEY=f"{KEY_NEW},{KEY_OLD}").exit_code == 0
    session.refresh(profile)
    assert effective_settings(profile, settings_with(CREDENTIALS_KEY=KEY_NEW))[0].webhook_secret \
        == "florist-hook-secret"
