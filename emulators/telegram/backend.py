"""The operations on the Telegram emulator's state: updates in and out (queue, offsets, long
poll, webhook push), the bot's sends, files. One re-entrant lock guards everything; `changed` (a
condition on it) wakes long polls and the webhook pusher when an update arrives."""

from __future__ import annotations

import copy
import itertools
import re
import threading
import time
from collections.abc import Callable, Sequence

from emulators.telegram import webhooks
from emulators.telegram.exceptions import BotApiError
from emulators.telegram.faults import Faults
from emulators.telegram.limits import FloodLimits
from emulators.telegram.models import (
    DEFAULT_BOT_NAME,
    DEFAULT_BOT_USERNAME,
    JSON,
    MAX_GET_FILE_BYTES,
    MAX_POLL_TIMEOUT,
    MAX_TEXT_LENGTH,
    MEDIA_EXTENSIONS,
    MEDIA_FOLDERS,
    NOT_BY_DEFAULT,
    Chat,
    StoredFile,
    Webhook,
    bot_id_of,
)

SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
FIRST_UPDATE_ID = 912345678
WEBHOOK_RETRY_SECONDS = 0.05  # between attempts to push one update

CONFLICT_WEBHOOK = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete " \
                   "the webhook first"
CONFLICT_POLLER = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
GROUP_MIGRATED = "Bad Request: group chat was upgraded to a supergroup chat"


class TelegramBackend:
    def __init__(self, token: str, *, stopping: threading.Event, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self.stopping = stopping
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.bot: JSON = {"id": bot_id_of(token), "is_bot": True, "first_name": DEFAULT_BOT_NAME,
                          "username": DEFAULT_BOT_USERNAME, "can_join_groups": True,
                          "can_read_all_group_messages": False, "supports_inline_queries": False,
                          "can_connect_to_business": False}
        self.webhook = Webhook()
        self._ids = itertools.count(1)
        self.reset()

    def now(self) -> int:
        return int(self.clock())

    def reset(self) -> None:
        with self.changed:
            self.chats: dict[int, Chat] = {}
            self.queue: list[JSON] = []  # unconfirmed updates, oldest first
            self.history: list[JSON] = []  # every update ever queued, for tests to read
            self.next_update_id = FIRST_UPDATE_ID
            self.allowed_updates: frozenset[str] | None = None  # None: every type but NOT_BY_DEFAULT
            self.files: dict[str, StoredFile] = {}
            self.files_by_path: dict[str, StoredFile] = {}
            self.sent: list[JSON] = []
            self.faults = Faults()
            self.flood = FloodLimits()
            self.poll_generation = 0
            self.webhook = Webhook(generation=self.webhook.generation + 1)
            self.changed.notify_all()

    # ------------------------------------------------------------------ updates in

    def chat(self, chat_id: int, *, chat_type: str = "private", first_name: str = "", username: str = "",
             title: str = "") -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            chat = Chat(id=chat_id, type=chat_type, first_name=first_name, username=username,
                        title=title or f"Chat {chat_id}")
            self.chats[chat_id] = chat
        return chat

    def store_file(self, kind: str, data: bytes, mime_type: str) -> StoredFile:
        number = next(self._ids)
        file_id = f"{kind[:2].upper()}ACAgIAAxkB{number:06d}"
        stored = StoredFile(file_id=file_id, file_unique_id=f"AgAD{number:06d}",
                            file_path=f"{MEDIA_FOLDERS[kind]}/file_{number}.{MEDIA_EXTENSIONS[kind]}",
                            data=data, mime_type=mime_type)
        self.files[file_id] = stored
        self.files_by_path[stored.file_path] = stored
        return stored

    def user_message(self, chat: Chat, sender: JSON, fields: JSON) -> JSON:
        message: JSON = {"message_id": chat.next_message_id, "date": self.now(), "from": sender,
                         "chat": chat.public(), **fields}
        chat.next_message_id += 1
        chat.messages.append(message)
        return message

    def add_update(self, kind: str, payload: JSON) -> JSON:
        """Queue one update (dropped, as Telegram does, when its type is not allowed)."""
        update: JSON = {"update_id": self.next_update_id, kind: payload}
        self.next_update_id += 1
        self.history.append(update)
        allowed = self.allowed_updates
        if (kind in NOT_BY_DEFAULT) if allowed is None else (kind not in allowed):
            return update
        self.queue.append(update)
        if self.faults.take_duplicate():
            self.queue.append(copy.deepcopy(update))
        self.changed.notify_all()
        return update

    # ------------------------------------------------------------------ updates out: getUpdates

    def get_updates(self, offset: int | None, limit: int, timeout: int,
                    allowed_updates: Sequence[str] | None) -> list[JSON]:
        with self.changed:
            if self.webhook.url:
                raise BotApiError(409, CONFLICT_WEBHOOK)
            if not 1 <= limit <= 100:
                limit = 100
            self.poll_generation += 1
            generation = self.poll_generation
            self.changed.notify_all()  # a pending long poll ends with 409, as on the real server
            if allowed_updates is not None:
                self.allowed_updates = frozenset(allowed_updates) if allowed_updates else None
            self._confirm(offset)
            deadline = time.monotonic() + max(0, min(timeout, MAX_POLL_TIMEOUT))
            while True:
                if self.queue:
                    return copy.deepcopy(self.queue[:limit])
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.stopping.is_set():
                    return []
                self.changed.wait(min(remaining, 0.5))
                if self.poll_generation != generation:
                    raise BotApiError(409, CONFLICT_POLLER)
                if self.webhook.url:
                    return []

    def _confirm(self, offset: int | None) -> None:
        if not offset:
            return
        if offset < 0:
            self.queue = self.queue[offset:]  # the last -offset updates; the rest is forgotten
        else:
            self.queue = [update for update in self.queue if update["update_id"] >= offset]

    # ------------------------------------------------------------------ updates out: webhook

    def set_webhook(self, url: str, secret_token: str, allowed_updates: Sequence[str] | None,
                    drop_pending: bool) -> None:
        if url and not url.startswith(("http://", "https://")):
            raise BotApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if secret_token and not SECRET_TOKEN.fullmatch(secret_token):
            raise BotApiError(400, "Bad Request: secret token contains unallowed characters")
        with self.changed:
            if drop_pending:
                self.queue = []
            if allowed_updates is not None:
                self.allowed_updates = frozenset(allowed_updates) if allowed_updates else None
            self.webhook = Webhook(url=url, secret_token=secret_token, generation=self.webhook.generation + 1)
            self.changed.notify_all()  # a pending long poll ends; an older pusher stops
            if url:
                threading.Thread(target=self._push_loop, args=(self.webhook.generation,),
                                 name="telegram-webhook", daemon=True).start()

    def webhook_info(self) -> JSON:
        with self.lock:
            webhook = self.webhook
            info: JSON = {"url": webhook.url, "has_custom_certificate": False,
                          "pending_update_count": len(self.queue), "max_connections": 40}
            if webhook.last_error_date:
                info["last_error_date"] = webhook.last_error_date
                info["last_error_message"] = webhook.last_error_message
            if self.allowed_updates is not None:
                info["allowed_updates"] = sorted(self.allowed_updates)
            return info

    def _push_loop(self, generation: int) -> None:
        while True:
            with self.changed:
                while not self.queue and self._pushing(generation):
                    self.changed.wait(0.5)
                if not self._pushing(generation):
                    return
                update = self.queue[0]
                url, secret_token = self.webhook.url, self.webhook.secret_token
            error = ""
            for attempt in range(webhooks.WEBHOOK_ATTEMPTS):
                error = webhooks.post(url, secret_token, update)
                if not error or self.stopping.wait(WEBHOOK_RETRY_SECONDS * (attempt + 1)):
                    break
            with self.changed:
                if self.queue and self.queue[0] is update:
                    self.queue.pop(0)  # delivered, or given up on
                if error:
                    self.webhook.last_error_date = self.now()
                    self.webhook.last_error_message = error
                else:
                    self.webhook.delivered += 1
                self.changed.notify_all()  # whoever waits on the webhook's progress

    def _pushing(self, generation: int) -> bool:
        return not self.stopping.is_set() and self.webhook.generation == generation and bool(self.webhook.url)

    # ------------------------------------------------------------------ the bot's calls

    def target_chat(self, chat_ref: object) -> Chat:
        chat: Chat | None = None
        if isinstance(chat_ref, int) and not isinstance(chat_ref, bool):
            chat = self.chats.get(chat_ref)
        elif isinstance(chat_ref, str) and chat_ref.lstrip("-").isdigit():
            chat = self.chats.get(int(chat_ref))
        elif isinstance(chat_ref, str) and chat_ref.startswith("@"):
            chat = next((item for item in self.chats.values() if item.username == chat_ref[1:]), None)
        if chat is None:
            raise BotApiError(400, "Bad Request: chat not found")
        return chat

    def send_message(self, chat_ref: object, text: object, reply_parameters: object) -> JSON:
        with self.lock:
            chat = self.target_chat(chat_ref)
            if chat.migrate_to_chat_id is not None:
                raise BotApiError(400, GROUP_MIGRATED, {"migrate_to_chat_id": chat.migrate_to_chat_id})
            if chat.deactivated:
                raise BotApiError(403, "Forbidden: user is deactivated")
            if chat.blocked:
                raise BotApiError(403, "Forbidden: bot was blocked by the user")
            if not isinstance(text, str) or not text.strip():
                raise BotApiError(400, "Bad Request: message text is empty")
            if len(text.encode("utf-16-le")) // 2 > MAX_TEXT_LENGTH:
                raise BotApiError(400, "Bad Request: message is too long")
            message: JSON = {"message_id": chat.next_message_id, "date": self.now(),
                             "from": {key: self.bot[key] for key in ("id", "is_bot", "first_name", "username")},
                             "chat": chat.public(), "text": text}
            if isinstance(reply_parameters, dict) and reply_parameters.get("message_id") is not None:
                replied = next((item for item in chat.messages
                                if item["message_id"] == reply_parameters.get("message_id")), None)
                if replied is not None:
                    message["reply_to_message"] = copy.deepcopy(replied)
                elif reply_parameters.get("allow_sending_without_reply") is not True:
                    raise BotApiError(400, "Bad Request: message to be replied not found")
            # Last: only a send that would go out meets the flood limits (and a refused one is not sent).
            self.flood.admit(chat.id, group=chat.type in ("group", "supergroup"), now=self.clock())
            chat.next_message_id += 1
            chat.messages.append(message)
            self.sent.append(message)
            return copy.deepcopy(message)

    def get_file(self, file_id: object) -> JSON:
        with self.lock:
            stored = self.files.get(file_id) if isinstance(file_id, str) else None
            if stored is None:
                raise BotApiError(400, "Bad Request: invalid file_id")
            if len(stored.data) > MAX_GET_FILE_BYTES:
                raise BotApiError(400, "Bad Request: file is too big")
            return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                    "file_size": len(stored.data), "file_path": stored.file_path}
