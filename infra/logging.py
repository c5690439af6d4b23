"""Structured JSON logs: one object a line, with the task id, profile, contact (phone masked) and
message id when known. Tokens and keys are redacted from every line. With LOG_DIR set, a daily
file is written too and kept 30 days.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from settings import get_settings

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_context", default=None)
PHONE = re.compile(r"(?<![\w])(\+?\d{6,11})(\d{4})(?![\w])")


# `token=…`, `key: …`, `"api_key": "…"`, `Authorization: …`: the value goes, the name stays.
SECRET_VALUE = re.compile(r"(?i)\b(api[_-]?key|key|token|secret|password|authorization)"
                          r"(\s*[=:]\s*|\"\s*:\s*\")([^\s\"'&,;]{4,})")


def mask_phone(text: str) -> str:
    """`77011234567` -> `*******4567`: enough to tell contacts apart, not enough to call them."""
    return PHONE.sub(lambda match: "*" * len(match.group(1)) + match.group(2), text)


def configured_secrets() -> list[str]:
    settings = get_settings()
    return [settings.wappi_token, settings.gemini_api_key, settings.webhook_secret,
            *settings.credentials_key.split(",")]


def mask_text(text: str, secrets: list[str] | None = None) -> str:
    """What logs and stored failures (dead letters) show: the configured secrets (default: the
    settings' token and keys) and any `token=…`-like value redacted, phone numbers masked."""
    for secret in configured_secrets() if secrets is None else secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = SECRET_VALUE.sub(lambda match: f"{match.group(1)}{match.group(2)}***", text)
    return mask_phone(text)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Fields added to every log line inside the block (profile, contact, message_id, ...)."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret and len(secret) >= 4]

    def redact(self, text: str) -> str:
        return mask_text(text, self._secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        try:
            from celery import current_task  # deferred: `kb build` and the emulators log too, without Celery

            if current_task and current_task.request.id:
                entry["task_id"] = current_task.request.id
                entry["task"] = current_task.name
        except Exception:  # noqa: BLE001 - logging must never fail because Celery is absent or odd
            pass
        entry.update(_context.get() or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        text = json.dumps(entry, ensure_ascii=False, default=str)
        return self.redact(text)


def configure_logging(level: str, secrets: list[str], log_dir: str = "") -> None:
    formatter = JsonFormatter(secrets)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.TimedRotatingFileHandler(
            Path(log_dir) / "assistant.log", when="midnight", backupCount=30, encoding="utf-8"))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("google_genai.models", "httpx", "httpx2", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "<name> ready." and broker reconnects are what operators and supervisors look for.
    for lifecycle in ("celery.apps.worker", "celery.worker.consumer.consumer"):
        logging.getLogger(lifecycle).setLevel(min(logging.INFO, root.level))


def configure_from_settings() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, [settings.wappi_token, settings.gemini_api_key, settings.webhook_secret],
                      settings.log_dir)
