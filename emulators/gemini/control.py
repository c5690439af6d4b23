"""The Gemini emulator's control interface under ``/_emulator/`` (no authentication): the call
log, scripted answers, random faults, reset and health."""

from __future__ import annotations

from typing import Any

from emulators.gemini.models import GeminiBackend
from emulators.gemini.wire import error_body


def control(backend: GeminiBackend, method: str, action: str, payload: Any) -> tuple[int, Any]:
    """``(status, json_body)`` for ``<method> /_emulator/<action>`` with the parsed JSON `payload`."""
    if method == "GET" and action == "requests":
        return 200, {"requests": backend.requests_log()}
    if method == "GET" and action == "health":
        return 200, {"ok": True}
    if method == "POST" and action == "reset":
        backend.reset()
        return 200, {"ok": True}
    if method == "POST" and action == "script":
        responses = payload.get("responses") if isinstance(payload, dict) else payload
        if not isinstance(responses, list) or not all(isinstance(item, dict) for item in responses):
            return 400, error_body(400, "responses must be a list of JSON objects")
        return 200, {"ok": True, "queued": backend.script(responses)}
    if method == "POST" and action == "faults":
        try:
            config = backend.set_faults(payload if isinstance(payload, dict) else {})
        except (TypeError, ValueError) as error:
            return 400, error_body(400, str(error))
        return 200, {"ok": True, "faults": config}
    return 404, error_body(404, f"no route /_emulator/{action}")
