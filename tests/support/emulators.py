"""The emulators' control endpoints as a test uses them: reset, make a customer write, read what
reached the chat."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from devstack import ROOT, free_port
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


@contextmanager
def emulator_command(module: str, *args: str) -> Iterator[tuple[int, str, subprocess.Popen[str]]]:
    """`python -m <module> --host 127.0.0.1 --port <free port> <args>` as an operator runs it:
    (the port, the banner it printed, the process). Killed on the way out if it is still running."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *args],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout is not None
        yield port, process.stdout.readline().strip(), process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
