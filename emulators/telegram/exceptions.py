"""The errors the Telegram emulator raises for a request it rejects."""

from __future__ import annotations

from typing import Any


class BotApiError(Exception):
    """A Bot API failure, rendered as ``{"ok": false, "error_code", "description"[, "parameters"]}``
    with the HTTP status equal to `error_code`, as the real server builds both from one value."""

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters or {}


class EmulatorError(ValueError):
    """A control request the emulator rejects; rendered as ``{"error": ...}``."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
