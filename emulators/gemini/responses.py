"""The ``models/{model}:generateContent`` handler: record the call, then answer with the next
scripted item that matches it, a drawn fault, or the default answer (`answers`)."""

from __future__ import annotations

import json
import threading
from typing import Any

from emulators.gemini import wire
from emulators.gemini.answers import default_answer
from emulators.gemini.conversation import Conversation
from emulators.gemini.models import GeminiBackend


class GenerateContent:
    def __init__(self, backend: GeminiBackend, stopping: threading.Event) -> None:
        self.backend = backend
        self.stopping = stopping  # set when the server stops: scripted delays end early

    def __call__(self, version: str, model: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Record the call and produce ``(status, json_body)``."""
        self.backend.record(version, model, body)
        item = self.backend.take_item(body)
        if item is not None and "delay" in item:
            self.stopping.wait(max(float(item["delay"]), 0.0))
        conversation = Conversation(body)
        if item is not None:
            scripted = self._scripted(item, model, conversation)
            if scripted is not None:
                return scripted
        return 200, wire.text_response(model, conversation.prompt_chars, default_answer(conversation))

    @staticmethod
    def _scripted(item: dict[str, Any], model: str, conversation: Conversation) -> tuple[int, Any] | None:
        status = int(item.get("status", 200))
        if "raw" in item:
            return status, item["raw"]
        if "body" in item:
            return status, wire.RawBody(str(item["body"]))
        if status != 200:
            return status, wire.error_body(status, item.get("message"), str(item.get("retry_delay", "1s")))
        chars = conversation.prompt_chars
        if item.get("blocked"):
            return 200, wire.blocked_response(model, chars, str(item.get("block_reason", "SAFETY")))
        finish_reason = str(item.get("finish_reason", "STOP"))
        if "json" in item:
            text = json.dumps(item["json"], ensure_ascii=False)
            return 200, wire.text_response(model, chars, text, finish_reason)
        if "text" in item:
            return 200, wire.text_response(model, chars, str(item["text"]), finish_reason)
        if "finish_reason" in item:
            return 200, wire.text_response(model, chars, None, finish_reason)
        return None
