"""The error the Wappi emulator raises for a request it rejects."""

from __future__ import annotations


class EmulatorError(ValueError):
    """A request the emulator rejects; rendered as ``{"status": "error", "detail": ...}``."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
