"""The Bot API methods the emulator answers: each takes the call's parameters and returns its
`result`, or raises `BotApiError` with the real server's code and description."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from emulators.telegram.backend import TelegramBackend
from emulators.telegram.exceptions import BotApiError
from emulators.telegram.models import JSON, UPDATE_TYPES
from emulators.telegram.wire import bool_param, int_param, json_param

Method = Callable[[JSON], tuple[Any, str | None]]  # (result, description)


def _allowed_updates(values: JSON) -> list[str] | None:
    allowed = json_param(values, "allowed_updates")
    if allowed is None:
        return None
    if not isinstance(allowed, list) or not all(isinstance(item, str) for item in allowed):
        raise BotApiError(400, "Bad Request: can't parse allowed_updates JSON array")
    return [item for item in allowed if item in UPDATE_TYPES]


class BotApi:
    def __init__(self, backend: TelegramBackend) -> None:
        self.backend = backend

    def methods(self) -> dict[str, Method]:
        """By lower-cased name: Telegram's method names are case-insensitive."""
        return {
            "getme": self.get_me,
            "getupdates": self.get_updates,
            "sendmessage": self.send_message,
            "getfile": self.get_file,
            "setwebhook": self.set_webhook,
            "deletewebhook": self.delete_webhook,
            "getwebhookinfo": self.get_webhook_info,
        }

    def get_me(self, values: JSON) -> tuple[Any, str | None]:
        with self.backend.lock:
            return copy.deepcopy(self.backend.bot), None

    def get_updates(self, values: JSON) -> tuple[Any, str | None]:
        offset = int_param(values, "offset")
        limit = int_param(values, "limit", 100) or 100
        timeout = int_param(values, "timeout", 0) or 0
        return self.backend.get_updates(offset, limit, timeout, _allowed_updates(values)), None

    def send_message(self, values: JSON) -> tuple[Any, str | None]:
        if "chat_id" not in values:
            raise BotApiError(400, "Bad Request: chat_id is empty")
        chat_ref = values["chat_id"]
        if isinstance(chat_ref, str) and chat_ref.lstrip("-").isdigit():
            chat_ref = int(chat_ref)
        reply = json_param(values, "reply_parameters")
        if reply is None and values.get("reply_to_message_id") is not None:
            reply = {"message_id": int_param(values, "reply_to_message_id"),
                     "allow_sending_without_reply": bool_param(values, "allow_sending_without_reply")}
        return self.backend.send_message(chat_ref, values.get("text"), reply), None

    def get_file(self, values: JSON) -> tuple[Any, str | None]:
        return self.backend.get_file(values.get("file_id")), None

    def set_webhook(self, values: JSON) -> tuple[Any, str | None]:
        url = values.get("url", "")
        secret = values.get("secret_token", "")
        if not isinstance(url, str) or not isinstance(secret, str):
            raise BotApiError(400, "Bad Request: url and secret_token must be strings")
        self.backend.set_webhook(url, secret, _allowed_updates(values), bool_param(values, "drop_pending_updates"))
        return True, "Webhook was set" if url else "Webhook was deleted"

    def delete_webhook(self, values: JSON) -> tuple[Any, str | None]:
        was_set = bool(self.backend.webhook.url)
        self.backend.set_webhook("", "", None, bool_param(values, "drop_pending_updates"))
        return True, "Webhook was deleted" if was_set else "Webhook is already deleted"

    def get_webhook_info(self, values: JSON) -> tuple[Any, str | None]:
        return self.backend.webhook_info(), None
