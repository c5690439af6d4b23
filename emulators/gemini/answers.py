"""The answer to a generateContent call that nothing scripted: chosen from what the product sets
on purpose, never from the wording of its prompts.

- Inline audio is transcribed (fake ASR: tests embed ``TRANSCRIPT:<text>`` in the audio bytes).
- A JSON response with a schema is built from the schema; the property names the product's
  schemas use pick the meaning: ``is_client``/``confidence``/``reasoning`` (a lead verdict),
  ``reply``/``call`` (a sales-agent turn), ``opt_out``, ``answer``/``decision`` (yes/no), a
  ``text`` or ``*transcri*`` property (the transcript).
- Plain text (a follow-up touch, or anything else) is a sales reply.

The values themselves come from the demo heuristics in `heuristics`. The model name is echoed in
the answer but chooses nothing: the schema already tells each kind of call apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from emulators.gemini import heuristics
from emulators.gemini.conversation import Conversation
from emulators.gemini.schema import SchemaFiller

TRANSCRIPT_MARKER = b"TRANSCRIPT:"
NO_SPEECH_TEXT = "Голосовое сообщение без распознаваемой речи."


def transcribe(blobs: Iterable[bytes]) -> str:
    """Fake ASR: tests embed ``TRANSCRIPT:<text>`` in otherwise meaningless Ogg bytes."""
    for blob in blobs:
        position = blob.find(TRANSCRIPT_MARKER)
        if position >= 0:
            tail = blob[position + len(TRANSCRIPT_MARKER) :].split(b"\x00", 1)[0]
            return tail.decode("utf-8", errors="replace").strip()
    return NO_SPEECH_TEXT


def sales_reply(conversation: Conversation) -> str:
    return heuristics.sales_reply(conversation.last_user_text, conversation.system_text)


def default_answer(conversation: Conversation) -> str:
    """The text of the answer (JSON text for a JSON response)."""
    blobs = conversation.inline_blobs()
    transcript = transcribe(blobs) if blobs else None
    schema = conversation.response_schema
    if conversation.response_mime_type == "application/json":
        if schema is None:
            return json.dumps({"text": transcript or sales_reply(conversation)}, ensure_ascii=False)
        value = AnswerFiller(schema, conversation, transcript).fill(schema)
        return json.dumps(value, ensure_ascii=False)
    if transcript is not None:
        return transcript
    return sales_reply(conversation)


class AnswerFiller(SchemaFiller):
    """A schema filler that knows the property names of the product's schemas."""

    def __init__(self, root: dict[str, Any], conversation: Conversation, transcript: str | None) -> None:
        super().__init__(root)
        self.conversation = conversation
        self.transcript = transcript

    def special_values(self, properties: dict[str, Any]) -> dict[str, list[Any]]:
        values: dict[str, list[Any]] = {}
        conversation = self.conversation
        if "is_client" in properties:
            is_client, confidence, reasoning = heuristics.detect_lead("\n".join(conversation.user_texts))
            values["is_client"] = [is_client, False] if is_client is None else [is_client]
            values["confidence"] = [confidence]
            values["reasoning"] = [reasoning]
        if "reply" in properties:
            values["reply"] = [sales_reply(conversation)]
            if "call" in properties:
                values["call"] = self.call_candidates(properties["call"])
        if "opt_out" in properties:
            values["opt_out"] = [heuristics.detect_opt_out(conversation.last_user_text)]
        for name in ("answer", "decision"):
            if name in properties:
                values[name] = self.decision_candidates(properties[name])
        if self.transcript is not None:
            for name in properties:
                if "transcri" in name or name == "text":
                    values[name] = [self.transcript]
        return values

    def call_candidates(self, schema: Any) -> list[Any]:
        moment = heuristics.requested_call(self.conversation.last_user_text)
        if moment is None:
            return [None]
        resolved = self.merged(self.resolve(schema))
        options = [resolved, *self.variants(resolved)]
        objects = [o for o in options if "object" in self.types(self.merged(o))[0]]
        candidates: list[Any] = [self.fill(o, {"at": moment}) for o in objects]
        return [*candidates, {"at": moment}, moment]

    def decision_candidates(self, schema: Any) -> list[Any]:
        decision = heuristics.detect_decision(self.conversation.last_user_text)
        resolved = self.merged(self.resolve(schema))
        enums = [
            resolved.get("enum"),
            *(v.get("enum") for v in self.variants(resolved)),
        ]
        enum = next((e for e in enums if isinstance(e, list) and e), None)
        if enum is None:
            return [decision]
        for synonym in heuristics.DECISION_SYNONYMS[decision]:
            for value in enum:
                if isinstance(value, str) and heuristics.normalize(value) == synonym:
                    return [value]
        return [enum[0]]
