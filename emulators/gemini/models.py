"""State of the Gemini emulator, behind one lock: the log of generateContent calls, the queue of
scripted answers and the fault injector.

A scripted item is a JSON object consumed by one call: ``{"text": ...}``, ``{"json": ...}``,
``{"raw": <whole response body>}``, ``{"body": "<text sent as it is, not JSON>"}``,
``{"status": 429, "retry_delay": "2s"}``, ``{"blocked": true}``,
``{"finish_reason": "SAFETY"}``, optionally with ``"delay"`` (seconds) and ``"match"``: the item
then goes only to a call whose request JSON contains that string (a contact's name, say).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any

from emulators.gemini.faults import FaultInjector


class GeminiBackend:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._script: list[dict[str, Any]] = []
        self._faults = FaultInjector()

    def record(self, version: str, model: str, body: dict[str, Any]) -> None:
        with self.lock:
            # received_at (float seconds) serves the latency benchmarks.
            self._log.append({"version": version, "model": model, "body": copy.deepcopy(body),
                              "received_at": time.time()})

    def requests_log(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self._log)

    def script(self, responses: list[dict[str, Any]]) -> int:
        """Queue scripted answers; returns how many are queued now."""
        if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
            raise TypeError("responses must be a list of JSON objects")
        with self.lock:
            self._script.extend(copy.deepcopy(responses))
            return len(self._script)

    def set_faults(self, config: dict[str, Any]) -> dict[str, Any]:
        faults = FaultInjector(config)
        with self.lock:
            self._faults = faults
        return faults.config

    def reset(self) -> None:
        with self.lock:
            self._log.clear()
            self._script.clear()
            self._faults = FaultInjector()

    def take_item(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The first scripted item this request matches, else a drawn fault, else None."""
        haystacks = (json.dumps(body, ensure_ascii=False), json.dumps(body))
        with self.lock:
            for index, item in enumerate(self._script):
                needle = item.get("match")
                if needle is None or any(str(needle) in text for text in haystacks):
                    return self._script.pop(index)
            return self._faults.draw()
