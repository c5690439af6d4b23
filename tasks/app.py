"""The Celery application, configured from `celeryconfig` (which reads the one settings object)."""

from __future__ import annotations

import sys

from celery import Celery

from infra import kombu_patch
from settings import SettingsError, get_settings

try:
    get_settings()
except SettingsError as exc:  # a clean message naming the setting, not a traceback
    sys.exit(str(exc))

kombu_patch.apply(get_settings().redis_url)

app = Celery("tasks")
app.config_from_object("celeryconfig")
