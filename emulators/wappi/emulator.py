"""`WappiEmulator`: the Wappi emulator as tests, benchmarks and scripts use it from Python.

It owns the HTTP service and the backend, and its methods are the control interface; the
``/_emulator/`` endpoints (`control`) call the same methods.
"""

from __future__ import annotations

import base64
import binascii
import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from emulators.server import EmulatorFacade, HttpService
from emulators.wappi.backend import WappiBackend
from emulators.wappi.control import ControlApi
from emulators.wappi.exceptions import EmulatorError
from emulators.wappi.faults import ChatFaults, Faults, MediaFaults
from emulators.wappi.models import (
    APP_STATUSES,
    CHANNEL_DOMAINS,
    DEFAULT_CUSTOMER_NAME,
    DEFAULT_OWN_PHONE,
    DEFAULT_OWN_TELEGRAM_ID,
    DEFAULT_OWN_TELEGRAM_USERNAME,
    DEFAULT_PROFILE_ID,
    DEFAULT_TOKEN,
    JSON,
    MEDIA_SHAPES,
    PLATFORMS,
    TELEGRAM_CHAT_TYPES,
    is_digits,
    parse_chat_ref,
    parse_telegram_chat_ref,
)
from emulators.wappi.responses import SyncApi
from emulators.wappi.urls import Router


class WappiEmulator(EmulatorFacade):
    """Threaded HTTP emulator of the Wappi WhatsApp sync API with a control interface.

    `telegram_profile_ids` are Telegram profiles: served under ``/tapi/`` in Telegram's wire
    format (`tapi`), refused under ``/api/``, as WhatsApp profiles are refused under ``/tapi/``."""

    LABEL = "Wappi emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        profile_ids: Sequence[str] = (DEFAULT_PROFILE_ID,),
        own_phone: str = DEFAULT_OWN_PHONE,
        *,
        public_url: str | None = None,
        telegram_profile_ids: Sequence[str] = (),
        own_telegram_id: str = DEFAULT_OWN_TELEGRAM_ID,
        own_telegram_username: str = DEFAULT_OWN_TELEGRAM_USERNAME,
    ) -> None:
        if not profile_ids and not telegram_profile_ids:
            raise ValueError("at least one profile id is required")
        if not is_digits(own_phone):
            raise ValueError("own_phone must be digits only")
        if not is_digits(own_telegram_id):
            raise ValueError("own_telegram_id must be digits only")
        if set(profile_ids) & set(telegram_profile_ids):
            raise ValueError("a profile is either WhatsApp or Telegram")
        self._token = token
        self._public_url = public_url.rstrip("/") if public_url else None
        self.backend = WappiBackend(profile_ids, own_phone, token=token, public_url=self._public_url,
                                    url=lambda: self.url, telegram_profile_ids=telegram_profile_ids,
                                    own_telegram_id=own_telegram_id, own_telegram_username=own_telegram_username)
        stopping = threading.Event()
        router = Router(self.backend, SyncApi(self.backend), ControlApi(self), stopping=stopping)
        self._service = HttpService(router, host, port, name="WappiEmulator", server_version="WappiEmulator/1.0",
                                    stopping=stopping)

    # ------------------------------------------------------------------ lifecycle

    @property
    def token(self) -> str:
        return self._token

    @property
    def profile_ids(self) -> list[str]:
        with self.backend.lock:
            return list(self.backend.profiles)

    # ------------------------------------------------------------------ what customers and the operator do

    def customer_message(
        self,
        profile_id: str,
        phone: str,
        text: str = "",
        *,
        type: str = "chat",
        name: str = DEFAULT_CUSTOMER_NAME,
        full_name: str = "",
        first_name: str = "",
        business_name: str = "",
        caption: str = "",
        media: bytes | None = None,
        media_b64: str | None = None,
        media_shape: str = "both",
        media_expired: bool = False,
        mimetype: str | None = None,
        file_name: str | None = None,
        duration: int | None = None,
        time: int | None = None,
        chat_suffix: str = "c.us",
        group: bool = False,
        group_id: str | None = None,
        group_name: str | None = None,
        stanza_id: str = "",
        is_forwarded: bool = False,
        latitude: float = 0.0,
        longitude: float = 0.0,
        overrides: Mapping[str, Any] | None = None,
        username: str = "",
    ) -> JSON:
        """Inject a message written by a customer; returns ``{"message_id", "chat_id", "time"}``.

        `overrides` replaces fields of the stored message as given, to produce what a real payload
        may hold: NUL and control characters, `time` in milliseconds, a numeric `id`, wrong types.

        For a Telegram profile `phone` is the customer's numeric user id, `type="chat"` (the default)
        means Telegram's `text`, `group_id` is the group's numeric id, and `username` their @name;
        `chat_suffix`, `latitude`/`longitude` and `media_shape` are WhatsApp's only."""
        with self.backend.lock:
            telegram = self.backend.is_telegram(profile_id)
        if telegram:
            return self._telegram_message(
                profile_id, phone, text, type=type, name=name, full_name=full_name, first_name=first_name,
                username=username, caption=caption, media=media, media_b64=media_b64, media_expired=media_expired,
                mimetype=mimetype, file_name=file_name, duration=duration, time=time,
                telegram_type="chat" if group else "user", chat_id=group_id, title=group_name, stanza_id=stanza_id,
                is_forwarded=is_forwarded, overrides=overrides)  # fmt: skip
        if username:
            raise EmulatorError("username is for Telegram profiles")
        if media is not None and media_b64 is not None:
            raise EmulatorError("pass either media or media_b64, not both")
        if media_b64 is not None:
            try:
                media = base64.b64decode(media_b64, validate=True)
            except (binascii.Error, ValueError):
                raise EmulatorError("media_b64 is not valid base64") from None
        if media_shape not in MEDIA_SHAPES:
            raise EmulatorError(f"media_shape must be one of {', '.join(MEDIA_SHAPES)}")
        if chat_suffix not in ("c.us", "s.whatsapp.net"):
            raise EmulatorError("chat_suffix must be c.us or s.whatsapp.net")
        if not type:
            raise EmulatorError("type is required")
        if type == "chat" and not text:
            raise EmulatorError("text is required for chat messages")
        _, digits, is_group_ref = parse_chat_ref(phone)
        if is_group_ref:
            raise EmulatorError("phone must be the customer's number, use group=true for group chats")
        backend = self.backend
        with backend.lock:
            ts = backend.now() if time is None else int(time)
            profile = backend.profile(profile_id)
            sender_jid = f"{digits}@{chat_suffix}"
            chat = backend.customer_chat(profile, digits, sender_jid, group=group, group_id=group_id,
                                         group_name=group_name, name=name, full_name=full_name,
                                         first_name=first_name, business_name=business_name)
            media_file = backend.media_file(type, media, mimetype=mimetype, file_name=file_name, duration=duration,
                                            shape=media_shape, expired=media_expired)
            message = backend.store_message(
                profile, chat, msg_type=type, text=text, from_me=False, sender_jid=sender_jid, sender_name=name,
                ts=ts, caption=caption, stanza_id=stanza_id, from_api=False, from_where="phone", media=media_file,
                mimetype=mimetype, file_name=file_name, is_forwarded=is_forwarded, location=(latitude, longitude),
            )  # fmt: skip
            message["isRead"] = False
            if overrides:
                backend.apply_overrides(profile, chat, message, overrides)
            if type != "reaction":
                chat.unread_count += 1
            backend.push_webhook(profile, chat, message, "incoming_message")
            return {"message_id": message["id"], "chat_id": chat.chat_id, "time": message["time"]}

    def _telegram_message(
        self, profile_id: str, user_id: str, text: str, *, type: str, name: str, full_name: str, first_name: str,
        username: str, caption: str, media: bytes | None, media_b64: str | None, media_expired: bool,
        mimetype: str | None, file_name: str | None, duration: int | None, time: int | None,
        telegram_type: str, chat_id: str | None, title: str | None, stanza_id: str, is_forwarded: bool,
        overrides: Mapping[str, Any] | None,
    ) -> JSON:
        """A customer's message to a Telegram profile (see `customer_message`)."""
        if media is not None and media_b64 is not None:
            raise EmulatorError("pass either media or media_b64, not both")
        if media_b64 is not None:
            try:
                media = base64.b64decode(media_b64, validate=True)
            except (binascii.Error, ValueError):
                raise EmulatorError("media_b64 is not valid base64") from None
        message_type = "text" if type == "chat" else type
        if not message_type:
            raise EmulatorError("type is required")
        if message_type == "text" and not text:
            raise EmulatorError("text is required for text messages")
        if telegram_type not in TELEGRAM_CHAT_TYPES:
            raise EmulatorError(f"telegram chat type must be one of {', '.join(TELEGRAM_CHAT_TYPES)}")
        sender = parse_telegram_chat_ref(user_id)
        backend = self.backend
        with backend.lock:
            ts = backend.now() if time is None else int(time)
            profile = backend.profile(profile_id)
            chat = backend.telegram_chat(profile, sender, telegram_type=telegram_type, chat_id=chat_id, title=title,
                                         name=name, full_name=full_name, first_name=first_name, username=username)
            media_file = backend.media_file(message_type, media, mimetype=mimetype, file_name=file_name,
                                            duration=duration, shape="link", expired=media_expired)
            message = backend.store_message(
                profile, chat, msg_type=message_type, text=text, from_me=False, sender_jid=sender, sender_name=name,
                ts=ts, caption=caption, stanza_id=stanza_id, from_api=False, from_where="phone", media=media_file,
                is_forwarded=is_forwarded)  # fmt: skip
            if username and telegram_type != "user":
                message["username"] = username
            if overrides:
                backend.apply_overrides(profile, chat, message, overrides)
            chat.unread_count += 1
            backend.push_webhook(profile, chat, message, "incoming_message")
            return {"message_id": message["id"], "chat_id": chat.chat_id, "time": message["time"]}

    def phone_message(self, profile_id: str, phone: str, text: str, *, time: int | None = None) -> JSON:
        """Inject a message the operator typed on the business phone (``from_where: "phone"``);
        for a Telegram profile `phone` is the chat's numeric id."""
        if not text:
            raise EmulatorError("text is required")
        backend = self.backend
        with backend.lock:
            telegram = backend.is_telegram(profile_id)
        if telegram:
            parse_telegram_chat_ref(phone)
        else:
            parse_chat_ref(phone)  # an invalid phone is refused before the profile is looked up
        with backend.lock:
            ts = backend.now() if time is None else int(time)
            profile = backend.profile(profile_id)
            chat = backend.chat_for(profile, phone)
            message = backend.store_message(profile, chat, msg_type="text" if telegram else "chat", text=text,
                                            from_me=True, sender_jid=backend.own_sender(profile), sender_name="",
                                            ts=ts, from_api=False, from_where="phone")
            backend.push_webhook(profile, chat, message, "outgoing_message_phone")
            return {"message_id": message["id"], "chat_id": chat.chat_id, "time": message["time"]}

    def late_message(self, profile_id: str, phone: str, text: str, *, written_ago: int,
                     name: str = DEFAULT_CUSTOMER_NAME) -> JSON:
        """A customer message delivered now that was written `written_ago` seconds ago (the
        customer's phone was offline). It carries the time it was written, so it sorts by that
        time: before our reply when we answered in between. The dialog then still shows our
        reply as its last message (`last_message_id`, `last_time`, `last_message_sender.isMe`)
        and keeps its place in chats/get; only `unread_count` grows. (Wappi documents none of
        this; it is the inconvenient reading of a history ordered by `time`.)"""
        return self.customer_message(profile_id, phone, text, name=name, time=self.backend.now() - written_ago)

    def channel_message(self, profile_id: str, chat_id: str, text: str, *, sender: str = "") -> JSON:
        """A post in a chat that is no conversation with a person: a channel
        (`120363…@newsletter`), a broadcast list (`…@broadcast`) or a contact's status update
        (`status@broadcast`, `sender` = the poster's phone). For a Telegram profile: a post in the
        channel with numeric id `chat_id` (`sender`: the poster's user id, default the channel)."""
        with self.backend.lock:
            telegram = self.backend.is_telegram(profile_id)
        if telegram:
            channel = parse_telegram_chat_ref(chat_id)
            return self._telegram_message(
                profile_id, sender or channel, text, type="text", name="", full_name="", first_name="", username="",
                caption="", media=None, media_b64=None, media_expired=False, mimetype=None, file_name=None,
                duration=None, time=None, telegram_type="channel", chat_id=channel, title=None, stanza_id="",
                is_forwarded=False, overrides=None)  # fmt: skip
        key, local, is_group = parse_chat_ref(chat_id)
        if is_group or "@" not in chat_id or chat_id.rpartition("@")[2] not in CHANNEL_DOMAINS:
            raise EmulatorError("chat_id must end with @newsletter or @broadcast")
        if not text:
            raise EmulatorError("text is required")
        backend = self.backend
        with backend.lock:
            profile = backend.profile(profile_id)
            chat = backend.get_or_create_chat(profile, key, local, False, key)
            sender_jid = f"{parse_chat_ref(sender)[1]}@c.us" if sender else key
            message = backend.store_message(profile, chat, msg_type="chat", text=text, from_me=False,
                                            sender_jid=sender_jid, sender_name=local, ts=backend.now(),
                                            from_api=False, from_where="phone")
            chat.unread_count += 1
            backend.push_webhook(profile, chat, message, "incoming_message")
            return {"message_id": message["id"], "chat_id": chat.chat_id, "time": message["time"]}

    def seed_chats(
        self,
        profile_id: str,
        count: int,
        messages_per_chat: int = 1,
        start_time: int | None = None,
        *,
        read: bool = True,
    ) -> list[str]:
        """Bulk-create ``count`` 1:1 chats with inbound text messages; returns their chat ids.

        Message ``j`` of chat ``i`` gets time ``start_time + i * messages_per_chat + j``
        (default ``start_time``: one day ago). With ``read=True`` the messages are
        read and ``unread_count`` is 0 (old, already handled history).
        """
        if count < 0 or messages_per_chat < 1:
            raise EmulatorError("count must be >= 0 and messages_per_chat >= 1")
        with self.backend.lock:
            if self.backend.is_telegram(profile_id):
                raise EmulatorError("seed_chats serves WhatsApp profiles only")
            base_time = self.backend.now() - 86_400 if start_time is None else int(start_time)
            return self.backend.seed_chats(self.backend.profile(profile_id), count, messages_per_chat, base_time,
                                           read=read)

    # ------------------------------------------------------------------ what the pipeline did

    def sent_messages(self, profile_id: str) -> list[JSON]:
        """Messages accepted through message/send and message/reply, in send order."""
        with self.backend.lock:
            return copy.deepcopy(self.backend.profile(profile_id).sent)

    def sent_count(self, profile_id: str) -> int:
        """How many messages `sent_messages` holds, without copying them (a cheap look for a waiter)."""
        with self.backend.lock:
            return len(self.backend.profile(profile_id).sent)

    def sent_since(self, profile_id: str, start: int) -> list[JSON]:
        """`sent_messages` from the `start`-th on."""
        with self.backend.lock:
            return copy.deepcopy(self.backend.profile(profile_id).sent[start:])

    def chat_messages(self, profile_id: str, phone: str) -> list[JSON]:
        """All messages of a chat (phone or chat id), oldest first; ``[]`` for an unknown chat."""
        with self.backend.lock:
            telegram = self.backend.is_telegram(profile_id)
        key = parse_telegram_chat_ref(phone) if telegram else parse_chat_ref(phone)[0]
        with self.backend.lock:
            chat = self.backend.profile(profile_id).chats.get(key)
            return copy.deepcopy(chat.messages) if chat else []

    def requests_log(self) -> list[JSON]:
        with self.backend.lock:
            return copy.deepcopy(list(self.backend.requests))

    def clear_requests(self) -> None:
        with self.backend.lock:
            self.backend.requests.clear()

    # ------------------------------------------------------------------ profiles, webhooks, faults

    def add_profile(self, profile_id: str, *, platform: str = "whatsapp", token: str | None = None) -> None:
        """A new profile of `platform` (`whatsapp`: under /api/, `telegram`: under /tapi/), owned
        by the account `token` (default: the emulator's own token; see `add_account`)."""
        if platform not in PLATFORMS:
            raise EmulatorError(f"platform must be one of {', '.join(PLATFORMS)}")
        with self.backend.lock:
            self.backend.add_profile(profile_id, platform, token)

    def add_account(self, token: str, profile_ids: Sequence[str] = (), *,
                    telegram_profile_ids: Sequence[str] = ()) -> None:
        """Another Wappi account: `token` serves its own WhatsApp (`profile_ids`) and Telegram
        (`telegram_profile_ids`) profiles, and every other account's token is refused for them as a
        wrong token is (401), as `token` is for theirs. The emulator's own token keeps the profiles
        it has; `add_profile(token=...)` adds more to an account. Accounts outlive `reset`."""
        profiles = {**dict.fromkeys(profile_ids, "whatsapp"), **dict.fromkeys(telegram_profile_ids, "telegram")}
        if len(profiles) != len(set(profile_ids)) + len(set(telegram_profile_ids)):
            raise EmulatorError("a profile is either WhatsApp or Telegram")
        with self.backend.lock:
            self.backend.add_account(token, profiles)

    def profile_platform(self, profile_id: str) -> str:
        with self.backend.lock:
            return self.backend.profile(profile_id).platform

    def set_profile(
        self,
        profile_id: str,
        *,
        authorized: bool | None = None,
        app_status: str | None = None,
        paid: bool | None = None,
    ) -> None:
        """Switch a profile's state (logged out, reconnecting, unpaid...)."""
        if app_status is not None and app_status not in APP_STATUSES:
            raise EmulatorError(f"app_status must be one of {', '.join(APP_STATUSES)}")
        with self.backend.lock:
            profile = self.backend.profile(profile_id)
            if authorized is not None and authorized != profile.authorized:
                profile.authorized = authorized
                if authorized:
                    profile.authorized_at = self.backend.now()
                    profile.logouted_at = None
                else:
                    profile.logouted_at = self.backend.now()
            if app_status is not None:
                profile.app_status = app_status
            elif authorized is not None:
                profile.app_status = "open" if authorized else "close"
            if paid is not None:
                profile.paid = paid

    def set_webhook(self, profile_id: str, url: str, secret: str = "") -> None:
        """Push injected messages to ``url`` (``""`` disables) with ``Authorization: <secret>``."""
        if url and not url.startswith(("http://", "https://")):
            raise EmulatorError("url must be http(s)")
        with self.backend.lock:
            profile = self.backend.profile(profile_id)
            profile.webhook_url = url
            profile.webhook_secret = secret

    def set_faults(self, config: Mapping[str, Any] | None = None) -> None:
        """Replace the fault-injection config (``None`` or ``{}`` disables all faults); see `Faults`."""
        faults = Faults.from_payload(config or {})
        with self.backend.lock:
            self.backend.set_faults(faults)

    def faults(self) -> JSON:
        with self.backend.lock:
            return self.backend.faults.public()

    def set_media_faults(self, config: Mapping[str, Any] | None = None) -> None:
        """Replace the media/download faults (``{}`` disables them); see `MediaFaults`."""
        media_faults = MediaFaults.from_payload(config or {})
        with self.backend.lock:
            self.backend.media_faults = media_faults

    def media_faults(self) -> JSON:
        with self.backend.lock:
            return self.backend.media_faults.public()

    def set_chat_faults(self, config: Mapping[str, Any] | None = None) -> None:
        """Replace the messages/get faults (``{}`` disables them); see `ChatFaults`."""
        chat_faults = ChatFaults.from_payload(config or {})
        with self.backend.lock:
            self.backend.chat_faults = chat_faults

    def chat_faults(self) -> JSON:
        with self.backend.lock:
            return self.backend.chat_faults.public()

    def reset(self) -> None:
        """Clear chats, sent log, files, faults, request log and webhooks; profiles authorized/open."""
        with self.backend.lock:
            self.backend.reset()
