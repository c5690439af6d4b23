"""The model's side of a brain test: scripted Gemini answers, and which calls the product made.

A call is told apart by what the product sets on purpose, never by a prompt's wording: the response
schema's fields (the moderator's `is_client`, the sales agent's `opt_out`), the note that asks for a
follow-up touch, and, for the undecided mode, a line taken from its prompt file. A scripted answer
goes to the first call whose request holds its `match`.
"""

from __future__ import annotations

import json
from typing import Any

from emulators.gemini import GeminiEmulator
from pipeline.followup import TOUCH_NOTE
from prompts import load

MODERATOR = '"is_client"'  # a field of the moderator's response schema only
AGENT = '"opt_out"'  # a field of the sales agent's response schema only
CLARIFY = next(line.strip() for line in load("approach_undecided").splitlines() if line.strip())
TOUCH = TOUCH_NOTE
TRANSCRIBE = next(line.strip() for line in load("transcribe").splitlines() if line.strip())


def verdict(is_client: bool | None, confidence: float) -> dict[str, Any]:
    """The moderator's next answer."""
    return {"json": {"is_client": is_client, "confidence": confidence, "reasoning": "проверка"}, "match": MODERATOR}


def agent_answer(reply: str, call_at: str | None = None) -> dict[str, Any]:
    """The sales agent's next answer, with a call request at `call_at` (ISO 8601) or none."""
    return {"json": {"reply": reply, "call": {"at": call_at} if call_at else None}, "match": AGENT}


def calls_to(gemini: GeminiEmulator, marker: str) -> list[dict[str, Any]]:
    """The request bodies that hold `marker`, oldest first."""
    return [call["body"] for call in gemini.requests_log() if marker in json.dumps(call["body"], ensure_ascii=False)]


def system_of(body: dict[str, Any]) -> str:
    return "".join(part["text"] for part in body["systemInstruction"]["parts"])


def system_texts(gemini: GeminiEmulator, marker: str) -> list[str]:
    """The system instructions that hold `marker`, oldest first."""
    return [system_of(body) for body in calls_to(gemini, marker)]
