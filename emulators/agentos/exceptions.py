"""The errors the AgentOS emulator raises for a request it rejects."""

from __future__ import annotations

from typing import Any


class AgentOSHttpError(Exception):
    """An AgentOS failure, rendered as FastAPI renders an `HTTPException`: ``{"detail": ...}``
    with `status`. `detail` is a string, or the list of a 422 validation error; `retry_after`
    becomes a ``Retry-After`` header."""

    def __init__(self, status: int, detail: Any, *, retry_after: int | None = None) -> None:
        super().__init__(detail if isinstance(detail, str) else f"HTTP {status}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class EmulatorError(ValueError):
    """A control request the emulator rejects; rendered as ``{"error": ...}``."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
