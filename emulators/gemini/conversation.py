"""What the default answers read from a generateContent request: the turns, the system
instruction, the generation config (response MIME type and schema) and the inline audio."""

from __future__ import annotations

from typing import Any

from emulators.gemini.wire import decode_base64, pick
from prompts.markers import CONTACT_DATA_START


class Conversation:
    """The parts of a generateContent request that the deterministic answers depend on."""

    def __init__(self, body: dict[str, Any]) -> None:
        contents = body.get("contents") or []
        self.contents: list[dict[str, Any]] = [c for c in contents if isinstance(c, dict)]
        system = pick(body, "systemInstruction", "system_instruction")
        self.system_texts = self._texts(system) if isinstance(system, dict) else []
        config = pick(body, "generationConfig", "generation_config") or {}
        self.config: dict[str, Any] = config if isinstance(config, dict) else {}

    @staticmethod
    def _parts(content: dict[str, Any]) -> list[dict[str, Any]]:
        parts = content.get("parts") or []
        return [p for p in parts if isinstance(p, dict)]

    @classmethod
    def _texts(cls, content: dict[str, Any]) -> list[str]:
        return [p["text"] for p in cls._parts(content) if isinstance(p.get("text"), str)]

    @staticmethod
    def _is_user(content: dict[str, Any]) -> bool:
        return content.get("role") in (None, "", "user")

    @classmethod
    def _customer_texts(cls, content: dict[str, Any]) -> list[str]:
        """A user turn's texts, without the product's contact data block (names are not messages)."""
        return [text for text in cls._texts(content) if not text.startswith(CONTACT_DATA_START)]

    @property
    def user_texts(self) -> list[str]:
        return [text for c in self.contents if self._is_user(c) for text in self._customer_texts(c)]

    @property
    def last_user_text(self) -> str:
        for content in reversed(self.contents):
            if self._is_user(content):
                return "\n".join(self._customer_texts(content))
        return ""

    @property
    def system_text(self) -> str:
        return "\n".join(self.system_texts)

    @property
    def prompt_chars(self) -> int:
        all_texts = [text for c in self.contents for text in self._texts(c)]
        return sum(len(text) for text in all_texts + self.system_texts)

    def inline_blobs(self) -> list[bytes]:
        blobs: list[bytes] = []
        for content in self.contents:
            for part in self._parts(content):
                blob = pick(part, "inlineData", "inline_data")
                if isinstance(blob, dict):
                    data = blob.get("data")
                    blobs.append(decode_base64(data) if isinstance(data, str) else b"")
        return blobs

    @property
    def response_mime_type(self) -> str:
        value = pick(self.config, "responseMimeType", "response_mime_type")
        return value if isinstance(value, str) else ""

    @property
    def response_schema(self) -> dict[str, Any] | None:
        schema = pick(
            self.config,
            "responseJsonSchema", "response_json_schema", "responseSchema", "response_schema",
        )  # fmt: skip
        return schema if isinstance(schema, dict) else None
