"""The Telegram emulator's control interface under ``/_emulator/`` (no authentication): a user
writes, sends media, edits, blocks the bot, upgrades a group; read what the bot sent; faults, flood
limits; reset.

Each handler checks the JSON it is given and calls the matching `TelegramEmulator` method, so the
HTTP and the Python control interfaces cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from emulators.telegram.exceptions import EmulatorError
from emulators.telegram.limits import FLOOD_KEYS
from emulators.telegram.models import DEFAULT_USER_NAME, JSON

if TYPE_CHECKING:  # the emulator builds its control interface: a type-only import the other way
    from emulators.telegram.emulator import TelegramEmulator


def _only(body: JSON, *allowed: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise EmulatorError(f"unknown fields: {', '.join(unknown)}")


def _chat_id(body: JSON) -> int:
    value = body.get("chat_id")
    if isinstance(value, bool) or not isinstance(value, int):
        raise EmulatorError("chat_id must be an integer")
    return value


def _str(body: JSON, name: str, default: str = "") -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise EmulatorError(f"{name} must be a string")
    return value


def _int(body: JSON, name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EmulatorError(f"{name} must be an integer")
    return value


def _data(body: JSON) -> bytes:
    try:
        return base64.b64decode(_str(body, "data_b64"), validate=True)
    except (binascii.Error, ValueError):
        raise EmulatorError("data_b64 is not valid base64") from None


class ControlApi:
    def __init__(self, emulator: TelegramEmulator) -> None:
        self.emulator = emulator

    def health(self, query: Mapping[str, str], body: JSON) -> JSON:
        return {"status": "ok"}

    def text(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id", "text", "user_id", "first_name", "username", "chat_type", "title")
        user_id = body.get("user_id")
        if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, int)):
            raise EmulatorError("user_id must be an integer")
        return self.emulator.user_writes(
            _chat_id(body), _str(body, "text"), user_id=user_id, first_name=_str(body, "first_name", DEFAULT_USER_NAME),
            username=_str(body, "username"), chat_type=_str(body, "chat_type", "private"), title=_str(body, "title"))

    def voice(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id", "data_b64", "duration", "kind", "mime_type", "file_name", "caption")
        mime_type = body.get("mime_type")
        if mime_type is not None and not isinstance(mime_type, str):
            raise EmulatorError("mime_type must be a string")
        return self.emulator.user_sends_voice(
            _chat_id(body), _data(body), duration=_int(body, "duration", 5), kind=_str(body, "kind", "voice"),
            mime_type=mime_type, file_name=_str(body, "file_name"), caption=_str(body, "caption"))

    def photo(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id", "data_b64", "caption")
        return self.emulator.user_sends_photo(_chat_id(body), _data(body), caption=_str(body, "caption"))

    def document(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id", "data_b64", "file_name", "mime_type", "caption")
        return self.emulator.user_sends_document(
            _chat_id(body), _data(body), file_name=_str(body, "file_name", "invoice.pdf"),
            mime_type=_str(body, "mime_type", "application/pdf"), caption=_str(body, "caption"))

    def sticker(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id", "emoji")
        return self.emulator.user_sends_sticker(_chat_id(body), _str(body, "emoji", "👍"))

    def edit(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id", "message_id", "text")
        text = _str(body, "text")
        if not text:
            raise EmulatorError("text is required")
        return self.emulator.user_edits(_chat_id(body), _int(body, "message_id", 0), text)

    def block(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id", "notify", "deactivated")
        notify, deactivated = body.get("notify", True), body.get("deactivated", False)
        if not isinstance(notify, bool) or not isinstance(deactivated, bool):
            raise EmulatorError("notify and deactivated must be booleans")
        return {"update": self.emulator.user_blocks(_chat_id(body), notify=notify, deactivated=deactivated)}

    def unblock(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id")
        return self.emulator.user_unblocks(_chat_id(body))

    def migrate(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, "chat_id", "migrate_to_chat_id")
        target = body.get("migrate_to_chat_id")
        if target is not None and (isinstance(target, bool) or not isinstance(target, int)):
            raise EmulatorError("migrate_to_chat_id must be an integer")
        return {"migrate_to_chat_id": self.emulator.migrate_group(_chat_id(body), target)}

    def sent(self, query: Mapping[str, str], body: JSON) -> list[JSON]:
        raw = query.get("chat_id", "")
        if raw and not raw.lstrip("-").isdigit():
            raise EmulatorError("chat_id must be an integer")
        return self.emulator.sent_messages(int(raw) if raw else None)

    def updates(self, query: Mapping[str, str], body: JSON) -> JSON:
        return {"all": self.emulator.updates(), "pending": self.emulator.pending_updates()}

    def webhook(self, query: Mapping[str, str], body: JSON) -> JSON:
        return self.emulator.webhook_info()

    def get_faults(self, query: Mapping[str, str], body: JSON) -> JSON:
        return self.emulator.faults()

    def set_faults(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.emulator.set_faults(body)
        return self.emulator.faults()

    def get_flood_limits(self, query: Mapping[str, str], body: JSON) -> JSON:
        return {**self.emulator.flood_limits(), "refusals": self.emulator.flood_refusals()}

    def set_flood_limits(self, query: Mapping[str, str], body: JSON) -> JSON:
        _only(body, *sorted(FLOOD_KEYS))  # the values are checked by the emulator
        self.emulator.set_flood_limits(**body)
        return self.get_flood_limits(query, {})

    def reset(self, query: Mapping[str, str], body: Any) -> JSON:
        self.emulator.reset()
        return {"status": "ok"}
