"""Per-profile settings: the overrides a profile stores (`profiles.settings`, by variable name) laid
over the global settings, each parsed exactly as the environment's value would be."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from db.models import Contact, Message, Profile
from db.session import execute_core
from pipeline.credentials import decrypt, encrypt, reencrypt
from settings import Settings, SettingsError, get_settings, parse_setting, setting_named

# Where a business may differ from the global settings. Names are the environment variables'.
PROFILE_KEYS: tuple[str, ...] = (
    "BUSINESS_NAME", "KB_DIR", "BUSINESS_TIMEZONE", "WORKING_DAYS", "WORKING_HOURS", "SEND_RATE_PER_MINUTE",
    "SEND_BURST", "BATCH_WINDOW", "ANSWER_UNDECIDED", "WEBHOOK_SECRET", "WARMUP_SCHEDULE", "PROACTIVE_DAILY_CAP",
    "TELEGRAM_UPDATES", "REPLY_AGENT", "AGENT_BASE_URL", "AGENT_ID", "AGENT_API_KEY", "AGENT_TIMEOUT",
    "AGENT_RUN_PATH", "FOLLOW_UP_AGENT",
)
# A secret override (WEBHOOK_SECRET, …) is stored sealed: "fernet:" + a Fernet token under
# CREDENTIALS_KEY, never in plaintext (pipeline/credentials.py; rotated by `profiles rotate-key`).
SEALED = "fernet:"
PROFILE = "profile"
ENVIRONMENT = "environment"
DEFAULT = "default"


def _raw(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)  # true / 20 / 1.5, as they would be written in the environment
    raise SettingsError(f"{key} must be a text value, not {type(value).__name__}")


def is_secret(key: str) -> bool:
    return bool(setting_named(key).metadata["secret"])


def seal_overrides(overrides: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The overrides as they are stored: each secret value sealed, the rest as given."""
    return {key: SEALED + encrypt(value, settings).decode("ascii")
            if key in PROFILE_KEYS and is_secret(key) and isinstance(value, str) and value.strip()
            and not value.startswith(SEALED) else value
            for key, value in overrides.items()}


def unseal_overrides(overrides: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The stored overrides with their sealed values opened (a value stored before sealing is taken
    as it is). CredentialsError, naming no value, when CREDENTIALS_KEY cannot open one."""
    return {key: decrypt(value[len(SEALED):].encode("ascii"), settings)
            if isinstance(value, str) and value.startswith(SEALED) else value
            for key, value in overrides.items()}


def reseal_overrides(overrides: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Every sealed value moved to CREDENTIALS_KEY's first key (key rotation)."""
    return {key: SEALED + reencrypt(value[len(SEALED):].encode("ascii"), settings).decode("ascii")
            if isinstance(value, str) and value.startswith(SEALED) else value
            for key, value in overrides.items()}


def parse_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Field name -> parsed value for each set override; SettingsError naming the first bad key.
    A blank value is unset (the global value applies), as a blank variable is in the environment."""
    parsed: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in PROFILE_KEYS:
            raise SettingsError(f"{key} is not a per-profile setting (allowed: {', '.join(PROFILE_KEYS)})")
        raw = _raw(key, value)
        if raw.strip():
            parsed[setting_named(key).name] = parse_setting(key, raw)
    return parsed


class HasOverrides(Protocol):
    """A profile as the settings read it: a `Profile`, or `ProfileOverrides`."""

    @property
    def id(self) -> int: ...
    @property
    def profile_id(self) -> str: ...
    @property
    def settings(self) -> dict[str, Any] | None: ...


_effective: dict[tuple[int, str, Settings], Settings] = {}


def settings_for(profile: HasOverrides, base: Settings | None = None) -> Settings:
    """`effective_settings` without the sources, cached per process by the profile's stored overrides
    (a stage asks for every message; parsing them again each time would be waste)."""
    base = get_settings() if base is None else base
    stored = json.dumps(profile.settings or {}, sort_keys=True, default=str)
    cache_key = (profile.id, stored, base)
    settings = _effective.get(cache_key)
    if settings is None:
        if len(_effective) > 1024:
            _effective.clear()
        settings = _effective[cache_key] = effective_settings(profile, base)[0]
    return settings


def effective_settings(profile: HasOverrides, base: Settings | None = None,
                       environ: Mapping[str, str] | None = None) -> tuple[Settings, dict[str, str]]:
    """The settings this profile runs with, and for each per-profile key where its value comes from
    (`profile`, `environment` or `default`)."""
    base = get_settings() if base is None else base
    env = os.environ if environ is None else environ
    stored = profile.settings or {}
    if not isinstance(stored, Mapping):
        raise SettingsError(f"profile {profile.profile_id}: its settings are not a JSON object")
    parsed = parse_overrides(unseal_overrides(stored, base))
    sources: dict[str, str] = {}
    for key in PROFILE_KEYS:
        if setting_named(key).name in parsed:
            sources[key] = PROFILE
        elif (env.get(key) or "").strip():
            sources[key] = ENVIRONMENT
        else:
            sources[key] = DEFAULT
    return dataclasses.replace(base, **parsed), sources


def profile_settings(session: Session, profile_id: int, base: Settings | None = None) -> Settings:
    """The settings of the profile with our id `profile_id` (the base settings if it is gone)."""
    profile = session.get(Profile, profile_id)
    base = get_settings() if base is None else base
    return base if profile is None else settings_for(profile, base)


class ProfileOverrides(NamedTuple):
    """What `settings_for` reads of a profile, when a statement read only that."""

    id: int
    profile_id: str
    settings: dict[str, Any] | None


# The columns of a message a stage reads, as a plain row (`stage_message`).
_STAGE_COLUMNS = (Message.id, Message.profile_id, Message.contact_id, Message.provider_message_id,
                  Message.direction, Message.status, Message.text, Message.created_at, Message.next_attempt_at)
# Built once: building a statement costs about as much Python as sending it (docs/benchmarks.md).
MESSAGE_AND_PROFILE = select(*_STAGE_COLUMNS, Profile.profile_id.label("provider_profile"),
                             Profile.settings.label("overrides")).join(
    Profile, Profile.id == Message.profile_id).where(Message.id == bindparam("message_id"))
STAGE_MESSAGE = select(*_STAGE_COLUMNS).where(Message.id == bindparam("message_id"))
_HELD = "stage_message"


def message_settings(session: Session, message_id: int, base: Settings | None = None) -> Settings:
    """The settings of the profile a stored message belongs to. One statement reads the message and
    its profile as a plain row, and the session keeps the message's part for the stage
    (`stage_message`): reading it again costs no statement, and no ORM object is built."""
    base = get_settings() if base is None else base
    row = execute_core(session, MESSAGE_AND_PROFILE, {"message_id": message_id}).first()
    if row is None:
        return base
    session.info[_HELD] = row
    return settings_for(ProfileOverrides(row.profile_id, row.provider_profile, row.overrides), base)


def forget_stage_message(session: Session, message_id: int) -> None:
    """The stage changed its message: the row `message_settings` read no longer says how it is."""
    held = session.info.get(_HELD)
    if held is not None and held.id == message_id:
        del session.info[_HELD]


def stage_message(session: Session, message_id: int, *, read: bool = True) -> Row[Any] | None:
    """The stage's message (`_STAGE_COLUMNS`) as this session's `message_settings` read it, or, with
    `read`, as a statement reads it now; None when it does not exist (or was not read)."""
    held = session.info.get(_HELD)
    if held is not None and held.id == message_id:
        return cast(Row[Any], held)
    return execute_core(session, STAGE_MESSAGE, {"message_id": message_id}).first() if read else None


def contact_settings(session: Session, contact_id: int, base: Settings | None = None) -> Settings:
    """The settings of the profile a contact belongs to."""
    profile_id = session.scalar(select(Contact.profile_id).where(Contact.id == contact_id))
    base = get_settings() if base is None else base
    return base if profile_id is None else profile_settings(session, profile_id, base)
