"""The Wappi emulator's backend: all state behind one lock, and the operations on it that both
the sync API (`responses`) and the control interface (`control`, the `WappiEmulator` methods) use.

Every method whose name does not say otherwise expects the caller to hold `lock`.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from emulators.wappi import tapi, webhooks, wire
from emulators.wappi.exceptions import EmulatorError
from emulators.wappi.faults import ChatFaults, Faults, MediaFaults
from emulators.wappi.models import (
    DEFAULT_MEDIA_FORMAT,
    JSON,
    MEDIA_TYPES,
    PLACEHOLDER_MEDIA,
    TELEGRAM,
    WHATSAPP,
    Chat,
    Clock,
    MediaFile,
    Profile,
    new_message_id,
    parse_chat_ref,
    parse_telegram_chat_ref,
)

LOG = logging.getLogger(__name__)

MAX_REQUEST_LOG = 100_000


class WappiBackend:
    def __init__(self, profile_ids: Sequence[str], own_phone: str, *, token: str, public_url: str | None,
                 url: Callable[[], str], telegram_profile_ids: Sequence[str] = (),
                 own_telegram_id: str = "", own_telegram_username: str = "") -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.own_phone = own_phone
        self.own_jid = f"{own_phone}@c.us"
        self.own_telegram_id = own_telegram_id
        self.own_telegram_username = own_telegram_username
        self.public_url = public_url
        self._url = url  # the emulator's URL; raises RuntimeError before it listens
        # Account tokens. The first (the emulator's `token`) owns the profiles made without one.
        self.default_token = token
        self.tokens: set[str] = {token}
        self.profiles: dict[str, Profile] = {}
        for pid in dict.fromkeys(profile_ids):
            self.add_profile(pid, WHATSAPP)
        for pid in telegram_profile_ids:
            self.add_profile(pid, TELEGRAM)
        self.faults = Faults()
        self.media_faults = MediaFaults()
        self.chat_faults = ChatFaults()
        # Accepted sends not yet in the chat history (history_lag_seconds): (visible at, chat, message).
        self.lagged: list[tuple[float, Chat, JSON]] = []
        self.requests: deque[JSON] = deque(maxlen=MAX_REQUEST_LOG)
        self._seed_counter = 0

    def now(self) -> int:
        return self.clock.now()

    def envelope(self, **fields: Any) -> JSON:
        return wire.envelope(self.clock.now(), **fields)

    def reset(self) -> None:
        """Clear chats, sent log, files, faults, request log and webhooks; profiles authorized/open.
        Profiles and the accounts that own them stay."""
        for profile in self.profiles.values():
            profile.reset(self.clock.now())
        self.faults = Faults()
        self.media_faults = MediaFaults()
        self.chat_faults = ChatFaults()
        self.lagged.clear()
        self.requests.clear()
        self.clock.offset = 0.0

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self.clock.offset = faults.clock_offset_seconds

    def chat_faults_for(self, profile: Profile) -> ChatFaults:
        """The chats/get and messages/get faults `profile` meets: none when scoped to others."""
        return self.chat_faults if self.chat_faults.hits(profile.profile_id) else ChatFaults()

    def media_faults_for(self, profile: Profile) -> MediaFaults:
        """The media/download faults `profile` meets: none when scoped to others."""
        return self.media_faults if self.media_faults.hits(profile.profile_id) else MediaFaults()

    def log_request(self, method: str, path: str, query: Mapping[str, str], status: int | None, fault: str) -> None:
        """Takes the lock itself."""
        entry: JSON = {"method": method, "path": path, "query": dict(query), "status": status}
        if fault:
            entry["fault"] = fault
        with self.lock:
            self.requests.append(entry)

    # ------------------------------------------------------------------ profiles and chats

    def profile(self, profile_id: str) -> Profile:
        profile = self.profiles.get(profile_id)
        if profile is None:
            raise EmulatorError("Profile not found")
        return profile

    def add_profile(self, profile_id: str, platform: str = WHATSAPP, token: str | None = None) -> Profile:
        """A new profile of the account `token` (default: the emulator's own token)."""
        owner = self.default_token if token is None else token
        if owner not in self.tokens:
            raise EmulatorError("no account has this token")
        if not profile_id:
            raise EmulatorError("profile_id is required")
        if profile_id in self.profiles:
            raise EmulatorError(f"profile {profile_id} exists")
        profile = Profile(profile_id, authorized_at=self.clock.now(), platform=platform, token=owner)
        self.profiles[profile_id] = profile
        return profile

    def add_account(self, token: str, profiles: Mapping[str, str]) -> None:
        """Another account: `token` and its profiles (profile id -> platform); all or nothing."""
        if not token:
            raise EmulatorError("token is required")
        if token in self.tokens:
            raise EmulatorError("an account with this token exists")
        taken = sorted(profile_id for profile_id in profiles if profile_id in self.profiles or not profile_id)
        if taken:
            raise EmulatorError(f"profile ids taken or empty: {', '.join(taken)}")
        self.tokens.add(token)
        for profile_id, platform in profiles.items():
            self.add_profile(profile_id, platform, token)

    def is_telegram(self, profile_id: str) -> bool:
        profile = self.profiles.get(profile_id)
        return profile is not None and profile.telegram

    @staticmethod
    def chat_key(profile: Profile, ref: str) -> str:
        """The key of the chat `ref` (a phone, chat id or Telegram id) names in `profile`."""
        return parse_telegram_chat_ref(ref) if profile.telegram else parse_chat_ref(ref)[0]

    def own_sender(self, profile: Profile) -> str:
        return self.own_telegram_id if profile.telegram else self.own_jid

    @staticmethod
    def get_or_create_chat(profile: Profile, key: str, local: str, is_group: bool, chat_id: str) -> Chat:
        chat = profile.chats.get(key)
        if chat is None:
            chat = Chat(key=key, chat_id=chat_id, local=local, is_group=is_group)
            if is_group:
                chat.group_name = f"Group {local}"
            profile.chats[key] = chat
        return chat

    def chat_for(self, profile: Profile, recipient: str) -> Chat:
        """The chat a recipient (phone or chat id) names, created when new."""
        if profile.telegram:
            key = parse_telegram_chat_ref(recipient)
            return self.get_or_create_chat(profile, key, key, False, key)
        key, local, is_group = parse_chat_ref(recipient)
        return self.get_or_create_chat(profile, key, local, is_group, key if is_group else f"{local}@c.us")

    def customer_chat(self, profile: Profile, digits: str, sender_jid: str, *, group: bool, group_id: str | None,
                      group_name: str | None, name: str, full_name: str, first_name: str,
                      business_name: str) -> Chat:
        """The chat a customer writes in: their own, or a group they are then a participant of.
        The names given update a 1:1 chat's contact."""
        if group:
            key, local, is_group = parse_chat_ref(group_id or f"120363{int(digits) % 10**12:012d}@g.us")
            if not is_group:
                raise EmulatorError("group_id must end with @g.us")
            chat = self.get_or_create_chat(profile, key, local, True, key)
            if group_name:
                chat.group_name = group_name
            elif not chat.group_name:
                chat.group_name = f"Group {local}"
            participant = f"{digits}@c.us"
            if participant not in chat.participants:
                chat.participants.append(participant)
            return chat
        chat = self.get_or_create_chat(profile, digits, digits, False, sender_jid)
        if name:
            chat.push_name = name
        if full_name:
            chat.full_name = full_name
        if first_name:
            chat.first_name = first_name
        elif full_name and not chat.first_name:
            chat.first_name = full_name.split()[0]
        if business_name:
            chat.business_name = business_name
        return chat

    @staticmethod
    def telegram_chat(profile: Profile, user_id: str, *, telegram_type: str, chat_id: str | None,
                      title: str | None, name: str, full_name: str, first_name: str, username: str) -> Chat:
        """The Telegram chat a customer writes in: their own (keyed by their user id), or a group or
        channel (`chat_id`) they are then a participant of."""
        user_key = parse_telegram_chat_ref(user_id)
        if telegram_type == "user":
            chat = profile.chats.get(user_key)
            if chat is None:
                chat = Chat(key=user_key, chat_id=user_key, local=user_key, is_group=False)
                profile.chats[user_key] = chat
            chat.push_name = name or chat.push_name
            chat.full_name = full_name or chat.full_name
            chat.first_name = first_name or chat.first_name or (full_name.split()[0] if full_name else "")
            chat.username = username or chat.username
            return chat
        key = parse_telegram_chat_ref(chat_id or str(4_100_000_000 + int(user_key) % 10**8))
        chat = profile.chats.get(key)
        if chat is None:
            chat = Chat(key=key, chat_id=key, local=key, is_group=telegram_type == "chat",
                        telegram_type=telegram_type, group_name=f"Group {key}")
            profile.chats[key] = chat
        elif chat.telegram_type != telegram_type:
            raise EmulatorError(f"chat {key} is a {chat.telegram_type}, not a {telegram_type}")
        if title:
            chat.group_name = title
        if user_key not in chat.participants:
            chat.participants.append(user_key)
        return chat

    # ------------------------------------------------------------------ messages

    def unique_message_id(self, profile: Profile) -> str:
        if profile.telegram:
            profile.last_message_number += 1
            return str(profile.last_message_number)
        while True:
            msg_id = new_message_id()
            if msg_id not in profile.message_index:
                return msg_id

    @staticmethod
    def media_file(msg_type: str, data: bytes | None, *, mimetype: str | None, file_name: str | None,
                   duration: int | None, shape: str, expired: bool) -> MediaFile | None:
        """The file of an injected message of `msg_type`; a placeholder when no bytes are given."""
        if msg_type not in MEDIA_TYPES:
            return None
        mime_default, ext = DEFAULT_MEDIA_FORMAT[msg_type]
        if duration is None:
            duration = 3 if msg_type in ("ptt", "audio", "video") else 0
        return MediaFile(
            data=data if data is not None else PLACEHOLDER_MEDIA[msg_type],
            mimetype=mimetype or mime_default,
            file_name=file_name or f"{uuid.uuid4()}.{ext}",
            media_type=msg_type,
            shape=shape,
            duration=duration,
            expired=expired,
        )

    def store_message(
        self,
        profile: Profile,
        chat: Chat,
        *,
        msg_type: str,
        text: str,
        from_me: bool,
        sender_jid: str,
        sender_name: str,
        ts: int,
        caption: str = "",
        stanza_id: str = "",
        from_api: bool,
        from_where: str,
        media: MediaFile | None = None,
        mimetype: str | None = None,
        file_name: str | None = None,
        is_forwarded: bool = False,
        location: tuple[float, float] = (0.0, 0.0),
    ) -> JSON:
        """Create a sync-API message, store it in `chat` and index it."""
        if profile.telegram:
            return self._store_telegram_message(
                profile, chat, msg_type=msg_type, text=text, from_me=from_me, sender=sender_jid,
                sender_name=sender_name, ts=ts, caption=caption, stanza_id=stanza_id, from_api=from_api,
                from_where=from_where, media=media, is_forwarded=is_forwarded)  # fmt: skip
        msg_id = self.unique_message_id(profile)
        body = wire.message_body(msg_type, msg_id, text, caption=caption, media=media, mimetype=mimetype,
                                 location=location)
        is_reply = bool(stanza_id) and msg_type != "reaction"
        message = wire.message_json(
            msg_id=msg_id,
            msg_type=msg_type,
            sender=sender_jid,
            recipient=self.own_jid if not from_me else chat.chat_id,
            chat_id=chat.chat_id,
            from_me=from_me,
            sender_name=sender_name,
            ts=ts,
            body=body,
            from_where=from_where,
            caption=caption,
            stanza_id=stanza_id,
            is_reply=is_reply,
            from_api=from_api,
            is_forwarded=is_forwarded,
        )
        message["contact_name"] = "" if from_me else chat.display_name
        if chat.is_group and not from_me:
            message["contact_name"] = sender_name
        if media is not None:
            message["mimetype"] = media.mimetype
            message["file_name"] = media.file_name
            message["media_info"] = wire.media_info(media)
            profile.files[msg_id] = media
        elif file_name:
            message["file_name"] = file_name
        if is_reply:
            target = profile.find_message(stanza_id)
            if target is not None:
                message["reply_message"] = wire.reply_summary(target)
        chat.add_message(message)
        profile.message_index[msg_id] = chat.key
        return message

    def _store_telegram_message(self, profile: Profile, chat: Chat, *, msg_type: str, text: str, from_me: bool,
                                sender: str, sender_name: str, ts: int, caption: str, stanza_id: str,
                                from_api: bool, from_where: str, media: MediaFile | None,
                                is_forwarded: bool) -> JSON:
        msg_id = self.unique_message_id(profile)
        message = tapi.message_json(
            msg_id=msg_id, msg_type=msg_type, sender=sender,
            recipient=self.own_telegram_id if not from_me else chat.chat_id, chat=chat, from_me=from_me,
            sender_name=sender_name, ts=ts, text=text, from_where=from_where, caption=caption,
            stanza_id=stanza_id, from_api=from_api, is_forwarded=is_forwarded, media=media)  # fmt: skip
        message["contact_name"] = "" if from_me else (sender_name if chat.is_group else chat.display_name)
        if media is not None:
            profile.files[msg_id] = media
        if stanza_id:
            target = profile.find_message(stanza_id)
            if target is not None:
                message["reply_message"] = tapi.reply_summary(target)
        chat.add_message(message)
        profile.message_index[msg_id] = chat.key
        return message

    @staticmethod
    def apply_overrides(profile: Profile, chat: Chat, message: JSON, overrides: Mapping[str, Any]) -> None:
        """Replace fields of a stored message as given (re-sorted and re-indexed)."""
        original_id = message["id"]
        chat.messages.remove(message)
        message.update(copy.deepcopy(dict(overrides)))
        chat.add_message(message)
        if message.get("id") != original_id:
            profile.message_index.pop(original_id, None)
            profile.message_index[str(message.get("id"))] = chat.key

    def record_sent(self, profile: Profile, chat: Chat, text: str, reply_to: str | None) -> JSON:
        """A message the pipeline sent through the API: stored (or lagged) and logged as sent."""
        message = self.store_message(
            profile,
            chat,
            msg_type="text" if profile.telegram else "chat",
            text=text,
            from_me=True,
            sender_jid=self.own_sender(profile),
            sender_name="",
            ts=self.clock.now(),
            stanza_id=reply_to or "",
            from_api=True,
            from_where="api",
        )
        if self.faults.history_lag_seconds > 0 and self.faults.hits(profile.profile_id):
            # The customer has it, but messages/get and chats/get show it only after the lag.
            chat.messages.remove(message)
            self.lagged.append((time.time() + self.faults.history_lag_seconds, chat, message))
        profile.sent.append(
            {
                "chat_id": chat.chat_id,
                "phone": chat.local,
                "body": text,
                "message_id": message["id"],
                "reply_to": reply_to,
                "time": message["time"],
                "accepted_at": time.time(),  # float seconds, for latency benchmarks
            }
        )
        if profile.telegram:
            return self.envelope(**tapi.send_fields(message["id"], uuid.uuid4().hex, profile))
        return self.envelope(message_id=message["id"], task_id=str(uuid.uuid4()))

    def release_lagged(self) -> None:
        """Lagged sends whose time has come join their chat's history."""
        now = time.time()
        due = [item for item in self.lagged if item[0] <= now]
        if due:
            self.lagged = [item for item in self.lagged if item[0] > now]
            for _, chat, message in due:
                chat.add_message(message)

    @staticmethod
    def mark_chat_read(chat: Chat, message_id: str | None) -> None:
        for message in chat.messages:
            if not message["fromMe"] and (message_id is None or message["id"] == message_id):
                message["isRead"] = True
        chat.unread_count = 0

    def seed_chats(self, profile: Profile, count: int, messages_per_chat: int, base_time: int, *,
                   read: bool) -> list[str]:
        """Bulk-create `count` 1:1 chats with inbound text messages (see `WappiEmulator.seed_chats`)."""
        chat_ids: list[str] = []
        for i in range(count):
            while True:
                self._seed_counter += 1
                digits = f"7990{self._seed_counter:07d}"
                if digits not in profile.chats:
                    break
            jid = f"{digits}@c.us"
            chat = Chat(key=digits, chat_id=jid, local=digits, is_group=False, push_name=f"Seed {digits[-7:]}")
            profile.chats[digits] = chat
            for j in range(messages_per_chat):
                message = wire.message_json(
                    msg_id=self.unique_message_id(profile),
                    msg_type="chat",
                    sender=jid,
                    recipient=self.own_jid,
                    chat_id=jid,
                    from_me=False,
                    sender_name=chat.push_name,
                    ts=base_time + i * messages_per_chat + j,
                    body=f"Seed message {j + 1}",
                    from_where="phone",
                )
                message["isRead"] = read
                message["contact_name"] = chat.display_name
                chat.messages.append(message)
                profile.message_index[message["id"]] = digits
            if not read:
                chat.unread_count = messages_per_chat
            chat_ids.append(jid)
        return chat_ids

    # ------------------------------------------------------------------ files and webhooks

    def file_link(self, profile: Profile, message_id: str, host: str | None) -> str:
        """Where the file of `message_id` is served (`ControlApi.file`): under its profile, as
        message ids are only unique within one."""
        base = self.public_url or (f"http://{host}" if host else self._url())
        return f"{base}/_emulator/files/{profile.profile_id}/{message_id}"

    def push_webhook(self, profile: Profile, chat: Chat, message: JSON, wh_type: str) -> None:
        """Queue a webhook POST for `message` if the profile has a webhook."""
        if not profile.webhook_url:
            return
        media = profile.files.get(message["id"])
        try:
            file_link = self.file_link(profile, message["id"], None) if media is not None else ""
        except RuntimeError:
            LOG.warning("webhook skipped: emulator URL unknown before start()")
            return
        render = tapi.webhook_json if profile.telegram else wire.webhook_json
        payload = render(profile, chat, message, wh_type, media=media, file_link=file_link, now=self.clock.now())
        webhooks.push(profile.webhook_url, profile.webhook_secret, [payload])
