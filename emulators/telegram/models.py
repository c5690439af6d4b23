"""The Telegram emulator's state: the bot, its chats, the update queue, files and the webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

DEFAULT_TOKEN = "123456:TEST-emulator-token"
DEFAULT_BOT_USERNAME = "shop_bot"
DEFAULT_BOT_NAME = "Shop Bot"
DEFAULT_USER_NAME = "Anna"
MAX_GET_FILE_BYTES = 20 * 1024 * 1024  # getFile refuses bigger files ("file is too big")
MAX_POLL_TIMEOUT = 50  # the server caps getUpdates' long-poll wait
MAX_TEXT_LENGTH = 4096
# What `allowed_updates: []` (and no setting at all) means: every type but these.
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
UPDATE_TYPES = frozenset({
    "message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
    "business_message", "edited_business_message", "deleted_business_messages", "message_reaction",
    "message_reaction_count", "inline_query", "chosen_inline_result", "callback_query", "shipping_query",
    "pre_checkout_query", "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_member",
    "chat_join_request", "chat_boost", "removed_chat_boost",
})  # fmt: skip
CHAT_TYPES = ("private", "group", "supergroup", "channel")
MEDIA_FOLDERS = {"voice": "voice", "audio": "music", "photo": "photos", "document": "documents",
                 "sticker": "stickers"}
MEDIA_EXTENSIONS = {"voice": "oga", "audio": "mp3", "photo": "jpg", "document": "pdf", "sticker": "webp"}


def bot_id_of(token: str) -> int:
    """A bot token starts with the bot's id (``123456:ABC...``)."""
    head = token.partition(":")[0]
    return int(head) if head.isdigit() else 1


@dataclass
class Chat:
    id: int
    type: str
    first_name: str = ""
    username: str = ""
    title: str = ""
    next_message_id: int = 1
    blocked: bool = False  # the user blocked the bot: sends answer 403
    deactivated: bool = False  # the user deleted the account: sends answer 403
    migrate_to_chat_id: int | None = None  # a group upgraded to this supergroup: sends answer 400
    messages: list[JSON] = field(default_factory=list)  # both directions, oldest first

    def public(self) -> JSON:
        chat: JSON = {"id": self.id, "type": self.type}
        if self.type == "private":
            chat["first_name"] = self.first_name
            if self.username:
                chat["username"] = self.username
        else:
            chat["title"] = self.title
        return chat


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    mime_type: str


@dataclass
class Webhook:
    url: str = ""
    secret_token: str = ""
    generation: int = 0  # bumped by every setWebhook/deleteWebhook: an older pusher stops
    last_error_date: int = 0
    last_error_message: str = ""
    delivered: int = 0
