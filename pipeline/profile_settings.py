"""Per-profile settings: the overrides a profile stores (`profiles.settings`, by variable name) laid
over the global settings, each parsed exactly as the environment's value would be."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from db.models import Profile
from settings import Settings, SettingsError, get_settings, parse_setting, setting_named

# Where a business may differ from the global settings. Names are the environment variables'.
PROFILE_KEYS: tuple[str, ...] = (
    "BUSINESS_NAME", "KB_DIR", "BUSINESS_TIMEZONE", "WORKING_DAYS", "WORKING_HOURS", "SEND_RATE_PER_MINUTE",
    "SEND_BURST", "BATCH_WINDOW", "ANSWER_UNDECIDED", "WEBHOOK_SECRET",
)
PROFILE = "profile"
ENVIRONMENT = "environment"
DEFAULT = "default"


def _raw(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)  # true / 20 / 1.5, as they would be written in the environment
    raise SettingsError(f"{key} must be a text value, not {type(value).__name__}")


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


def effective_settings(profile: Profile, base: Settings | None = None,
                       environ: Mapping[str, str] | None = None) -> tuple[Settings, dict[str, str]]:
    """The settings this profile runs with, and for each per-profile key where its value comes from
    (`profile`, `environment` or `default`)."""
    base = get_settings() if base is None else base
    env = os.environ if environ is None else environ
    stored = profile.settings or {}
    if not isinstance(stored, Mapping):
        raise SettingsError(f"profile {profile.profile_id}: its settings are not a JSON object")
    parsed = parse_overrides(stored)
    sources: dict[str, str] = {}
    for key in PROFILE_KEYS:
        if setting_named(key).name in parsed:
            sources[key] = PROFILE
        elif (env.get(key) or "").strip():
            sources[key] = ENVIRONMENT
        else:
            sources[key] = DEFAULT
    return dataclasses.replace(base, **parsed), sources
