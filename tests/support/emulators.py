"""The emulators' control endpoints as a test uses them: reset, make a customer write, read what
reached the chat."""

from __future__ import annotations

from typing import Any

import requests

from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support.env import PROFILE_ID


def reset_emulators(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    for emulator in (wappi, gemini):
        requests.post(f"{emulator.url}/_emulator/reset", timeout=5).raise_for_status()


def customer_says(wappi: WappiEmulator, phone: str, text: str, **extra: Any) -> str:
    """A customer writes in the chat Wappi shows; returns Wappi's message id."""
    response = requests.post(f"{wappi.url}/_emulator/customer_message", timeout=5,
                             json={"profile_id": PROFILE_ID, "phone": phone, "text": text, **extra})
    response.raise_for_status()
    return str(response.json()["message_id"])


def replies_to(wappi: WappiEmulator, phone: str) -> list[dict[str, Any]]:
    """What the pipeline sent to this customer, oldest first."""
    return [item for item in wappi.sent_messages(PROFILE_ID) if item["phone"] == phone]
