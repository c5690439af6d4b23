"""Local emulator of the Gemini REST API (``models/{model}:generateContent``) for offline tests.

The real google-genai SDK talks to it unchanged via ``HttpOptions(base_url=..., api_version="v1beta")``;
answers are deterministic Russian texts, JSON built from the response schema, or scripted by tests.
What it answers is decided from what the product sets on purpose (the response schema, inline
audio, the markers of `prompts.markers`), never from prompt prose; see `answers`.

Split the way moto splits a service: `models` (state: call log, script, faults), `wire` (wire
format), `conversation` (reading a request), `answers`, `schema` and `heuristics` (the default
answers; the heuristics are demo keyword rules), `responses` (generateContent), `urls` (routes),
`control` (the control endpoints), `faults`; `emulator` holds the `GeminiEmulator` facade.

Run standalone::

    python -m emulators.gemini --host 127.0.0.1 --port 8702 --api-key K
"""

from __future__ import annotations

from emulators.gemini.answers import transcribe
from emulators.gemini.cli import main
from emulators.gemini.emulator import GeminiEmulator
from emulators.gemini.wire import error_body

__all__ = ["GeminiEmulator", "error_body", "main", "transcribe"]
