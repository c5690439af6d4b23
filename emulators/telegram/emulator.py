"""`TelegramEmulator`: the Telegram Bot API emulator as tests, benchmarks and scripts use it from
Python. It owns the HTTP service and the backend, and its methods are the control interface; the
``/_emulator/`` endpoints (`control`) call the same methods."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from emulators.server import EmulatorFacade, HttpService
from emulators.telegram.backend import TelegramBackend
from emulators.telegram.control import ControlApi
from emulators.telegram.exceptions import EmulatorError
from emulators.telegram.faults import Faults
from emulators.telegram.limits import FloodLimits
from emulators.telegram.models import CHAT_TYPES, DEFAULT_TOKEN, DEFAULT_USER_NAME, JSON, Chat
from emulators.telegram.responses import BotApi
from emulators.telegram.urls import Router


def _entities(text: str) -> JSON:
    """A leading ``/command`` is a bot_command entity (lengths in UTF-16 code units)."""
    if not text.startswith("/"):
        return {}
    command = text.split(maxsplit=1)[0]
    return {"entities": [{"offset": 0, "length": len(command.encode("utf-16-le")) // 2, "type": "bot_command"}]}


class TelegramEmulator(EmulatorFacade):
    """Threaded HTTP emulator of the Telegram Bot API with a control interface."""

    LABEL = "Telegram emulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str = DEFAULT_TOKEN, *,
                 public_url: str | None = None, clock: Callable[[], float] | None = None) -> None:
        if ":" not in token:
            raise ValueError("a bot token looks like <bot id>:<secret>")
        self._public_url = public_url.rstrip("/") if public_url else None
        stopping = threading.Event()
        self.backend = TelegramBackend(token, stopping=stopping, **({"clock": clock} if clock else {}))
        router = Router(self.backend, BotApi(self.backend), ControlApi(self), stopping=stopping)
        self._service = HttpService(router, host, port, name="TelegramEmulator",
                                    server_version="TelegramEmulator/1.0", stopping=stopping)

    # ------------------------------------------------------------------ lifecycle

    @property
    def token(self) -> str:
        return self.backend.token

    # ------------------------------------------------------------------ what users do

    def _user_chat(self, chat_id: int, first_name: str, username: str, chat_type: str,
                   title: str) -> Chat:
        if isinstance(chat_id, bool) or not isinstance(chat_id, int):
            raise EmulatorError("chat_id must be an integer")
        if chat_type not in CHAT_TYPES:
            raise EmulatorError(f"chat_type must be one of {', '.join(CHAT_TYPES)}")
        return self.backend.chat(chat_id, chat_type=chat_type, first_name=first_name, username=username,
                                 title=title)

    def _write(self, chat_id: int, fields: JSON, *, user_id: int | None, first_name: str, username: str,
               chat_type: str, title: str) -> JSON:
        """A user's message in a chat, queued as a `message` update; returns the update."""
        with self.backend.lock:
            chat = self._user_chat(chat_id, first_name, username, chat_type, title)
            sender: JSON = {"id": chat_id if user_id is None else user_id, "is_bot": False,
                            "first_name": first_name, "language_code": "ru"}
            if username:
                sender["username"] = username
            message = self.backend.user_message(chat, sender, fields)
            # A copy: an edit changes the chat's message, never an update already queued.
            return copy.deepcopy(self.backend.add_update("message", copy.deepcopy(message)))

    def user_writes(self, chat_id: int, text: str, *, user_id: int | None = None,
                    first_name: str = DEFAULT_USER_NAME, username: str = "", chat_type: str = "private",
                    title: str = "") -> JSON:
        """A user writes a text (``/start ...`` gets its bot_command entity); returns the update."""
        if not text:
            raise EmulatorError("text is required")
        fields: JSON = {"text": text, **_entities(text)}
        return self._write(chat_id, fields, user_id=user_id, first_name=first_name, username=username,
                           chat_type=chat_type, title=title)

    def user_sends_voice(self, chat_id: int, data: bytes, *, duration: int = 5, kind: str = "voice",
                         mime_type: str | None = None, file_name: str = "", caption: str = "",
                         first_name: str = DEFAULT_USER_NAME) -> JSON:
        """A voice note (`voice`, Ogg/Opus) or an audio file (`audio`); returns the update."""
        if kind not in ("voice", "audio"):
            raise EmulatorError("kind must be voice or audio")
        mime = mime_type or ("audio/ogg" if kind == "voice" else "audio/mpeg")
        with self.backend.lock:
            stored = self.backend.store_file(kind, data, mime)
            media: JSON = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                           "duration": duration, "mime_type": mime, "file_size": len(data)}
            if kind == "audio":
                media["file_name"] = file_name or "audio.mp3"
            fields: JSON = {kind: media}
            if caption:
                fields["caption"] = caption
            return self._write(chat_id, fields, user_id=None, first_name=first_name, username="",
                               chat_type="private", title="")

    def user_sends_photo(self, chat_id: int, data: bytes, *, caption: str = "",
                         first_name: str = DEFAULT_USER_NAME) -> JSON:
        """A photo: two sizes, smallest first, as Telegram sends them; returns the update."""
        with self.backend.lock:
            thumbnail = self.backend.store_file("photo", data[: max(1, len(data) // 10)], "image/jpeg")
            full = self.backend.store_file("photo", data, "image/jpeg")
            sizes = [{"file_id": thumbnail.file_id, "file_unique_id": thumbnail.file_unique_id, "width": 90,
                      "height": 67, "file_size": len(thumbnail.data)},
                     {"file_id": full.file_id, "file_unique_id": full.file_unique_id, "width": 1280,
                      "height": 960, "file_size": len(data)}]
            fields: JSON = {"photo": sizes}
            if caption:
                fields["caption"] = caption
            return self._write(chat_id, fields, user_id=None, first_name=first_name, username="",
                               chat_type="private", title="")

    def user_sends_document(self, chat_id: int, data: bytes, *, file_name: str = "invoice.pdf",
                            mime_type: str = "application/pdf", caption: str = "",
                            first_name: str = DEFAULT_USER_NAME) -> JSON:
        with self.backend.lock:
            stored = self.backend.store_file("document", data, mime_type)
            fields: JSON = {"document": {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                                         "file_name": file_name, "mime_type": mime_type,
                                         "file_size": len(data)}}
            if caption:
                fields["caption"] = caption
            return self._write(chat_id, fields, user_id=None, first_name=first_name, username="",
                               chat_type="private", title="")

    def user_sends_sticker(self, chat_id: int, emoji: str = "👍", *, first_name: str = DEFAULT_USER_NAME) -> JSON:
        with self.backend.lock:
            stored = self.backend.store_file("sticker", b"RIFF-sticker", "image/webp")
            fields: JSON = {"sticker": {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                                        "type": "regular", "width": 512, "height": 512, "is_animated": False,
                                        "is_video": False, "emoji": emoji, "set_name": "HotCherry",
                                        "file_size": len(stored.data)}}
            return self._write(chat_id, fields, user_id=None, first_name=first_name, username="",
                               chat_type="private", title="")

    def user_edits(self, chat_id: int, message_id: int, text: str) -> JSON:
        """The user edits one of their messages: an `edited_message` update with the same
        message_id, the new text and `edit_date`; returns the update."""
        with self.backend.lock:
            chat = self.backend.chats.get(chat_id)
            original = next((item for item in chat.messages if item["message_id"] == message_id
                             and not item["from"].get("is_bot")), None) if chat else None
            if original is None:
                raise EmulatorError("no such message of the user in this chat", 404)
            original.pop("entities", None)
            original.update({"text": text, **_entities(text)})
            original["edit_date"] = self.backend.now()
            return copy.deepcopy(self.backend.add_update("edited_message", copy.deepcopy(original)))

    def user_blocks(self, chat_id: int, *, notify: bool = True, deactivated: bool = False) -> JSON | None:
        """The user blocks the bot (or, `deactivated`, deletes the account): sends to the chat
        answer 403 from now on. With `notify` a `my_chat_member` update (kicked) is queued; without,
        only the next send finds out. Returns the update, if any."""
        with self.backend.lock:
            chat = self.backend.chats.get(chat_id)
            if chat is None:
                raise EmulatorError("unknown chat", 404)
            chat.blocked = True
            chat.deactivated = deactivated
            return self._member_update(chat, "member", "kicked") if notify else None

    def user_unblocks(self, chat_id: int) -> JSON:
        with self.backend.lock:
            chat = self.backend.chats.get(chat_id)
            if chat is None:
                raise EmulatorError("unknown chat", 404)
            chat.blocked = chat.deactivated = False
            return self._member_update(chat, "kicked", "member")

    def migrate_group(self, chat_id: int, migrate_to_chat_id: int | None = None) -> int:
        """The group `chat_id` is upgraded to a supergroup (default id ``-100<group digits>``):
        sends to the group answer 400 ``group chat was upgraded to a supergroup chat`` with
        ``parameters.migrate_to_chat_id``; sends to the supergroup go through. No service
        messages are queued (the product ignores groups). Returns the supergroup's id."""
        if isinstance(chat_id, bool) or not isinstance(chat_id, int) or chat_id >= 0:
            raise EmulatorError("chat_id must be a group's (negative) id")
        target = int(f"-100{-chat_id}") if migrate_to_chat_id is None else migrate_to_chat_id
        if isinstance(target, bool) or not isinstance(target, int) or target >= 0 or target == chat_id:
            raise EmulatorError("migrate_to_chat_id must be another negative chat id")
        with self.backend.lock:
            group = self.backend.chat(chat_id, chat_type="group")
            if group.type != "group":
                raise EmulatorError(f"chat {chat_id} is a {group.type}, only a group is upgraded")
            self.backend.chat(target, chat_type="supergroup", title=group.title)
            group.migrate_to_chat_id = target
            return target

    def _member_update(self, chat: Chat, old: str, new: str) -> JSON:
        bot = {key: self.backend.bot[key] for key in ("id", "is_bot", "first_name", "username")}
        new_member: JSON = {"status": new, "user": bot}
        if new == "kicked":
            new_member["until_date"] = 0
        payload = {"chat": chat.public(), "from": {"id": chat.id, "is_bot": False, "first_name": chat.first_name},
                   "date": self.backend.now(), "old_chat_member": {"status": old, "user": bot},
                   "new_chat_member": new_member}
        return copy.deepcopy(self.backend.add_update("my_chat_member", payload))

    # ------------------------------------------------------------------ what the bot did

    def sent_messages(self, chat_id: int | None = None) -> list[JSON]:
        """Messages the bot sent (sendMessage), in send order; of one chat with `chat_id`."""
        with self.backend.lock:
            return [copy.deepcopy(item) for item in self.backend.sent
                    if chat_id is None or item["chat"]["id"] == chat_id]

    def chat_messages(self, chat_id: int) -> list[JSON]:
        """Both directions of a chat, oldest first (message ids as the chat numbers them)."""
        with self.backend.lock:
            chat = self.backend.chats.get(chat_id)
            return copy.deepcopy(chat.messages) if chat else []

    def updates(self) -> list[JSON]:
        """Every update queued so far, confirmed or not."""
        with self.backend.lock:
            return copy.deepcopy(self.backend.history)

    def pending_updates(self) -> list[JSON]:
        with self.backend.lock:
            return copy.deepcopy(self.backend.queue)

    def webhook_info(self) -> JSON:
        info = self.backend.webhook_info()
        with self.backend.lock:
            info["delivered"] = self.backend.webhook.delivered
        return info

    # ------------------------------------------------------------------ faults, reset

    def set_faults(self, config: dict[str, Any] | None = None) -> None:
        """Replace the fault config (``None`` or ``{}`` disables every fault); see `Faults`."""
        faults = Faults.from_payload(config or {})
        with self.backend.lock:
            self.backend.faults = faults

    def faults(self) -> JSON:
        with self.backend.lock:
            return self.backend.faults.public()

    def set_flood_limits(self, enabled: bool = True, *, chat_burst: int = 1, bot_per_second: int = 30,
                         group_per_minute: int = 20) -> None:
        """Enforce Telegram's flood limits on sendMessage (`enabled=False` turns them off again):
        one message a second per chat after a burst of `chat_burst`, `group_per_minute` in a group,
        `bot_per_second` for the whole bot. Over a limit the send answers 429 ``Too Many Requests:
        retry after N`` (N whole seconds until a slot frees, at least 1) and is not sent. Starts a
        fresh count of refusals; off by default and after `reset`."""
        limits = FloodLimits.from_payload({"enabled": enabled, "chat_burst": chat_burst,
                                           "bot_per_second": bot_per_second, "group_per_minute": group_per_minute})
        with self.backend.lock:
            self.backend.flood = limits

    def flood_limits(self) -> JSON:
        """The flood limits in force, and `refused`: how many 429s they gave (injected
        `rate_limited_next` faults are not counted)."""
        with self.backend.lock:
            return self.backend.flood.public()

    def flood_refusals(self) -> list[JSON]:
        """Each 429 the flood limits gave, oldest first: ``{"chat_id", "limit" (chat, group or bot),
        "retry_after", "at"}`` with `at` the emulator clock's time of the refused call."""
        with self.backend.lock:
            return copy.deepcopy(self.backend.flood.refusals)

    def reset(self) -> None:
        """Forget chats, updates, files, sends, faults, flood limits and the webhook."""
        self.backend.reset()
