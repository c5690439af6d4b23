"""The Wappi sync-API handlers: one method per path of the route table in `urls`.

Each runs with the backend's lock held, after authentication and the profile checks, and returns
the 200 payload or raises `EmulatorError`.
"""

from __future__ import annotations

import base64
import copy
import time
import uuid
from collections.abc import Mapping
from typing import Any

from emulators.wappi import tapi, wire
from emulators.wappi.backend import WappiBackend
from emulators.wappi.exceptions import EmulatorError
from emulators.wappi.models import JSON, Chat, MediaFile, Profile, seconds
from emulators.wappi.wire import query_bool, query_int


def _sorted_chats(chats: list[Chat], query: Mapping[str, str]) -> list[Chat]:
    def sort_key(chat: Chat) -> tuple[int, str]:
        last = chat.last_message
        return (seconds(last["time"]), str(last["id"])) if last else (0, "")

    ascending = query.get("order", "desc").lower() == "asc"
    return sorted(chats, key=sort_key, reverse=not ascending)


def _send_text(body: Any) -> str:
    if not isinstance(body, dict):
        raise EmulatorError("JSON object body is required")
    text = body.get("body")
    if not isinstance(text, str) or not text.strip():
        raise EmulatorError("body is required")
    return text


class SyncApi:
    def __init__(self, backend: WappiBackend) -> None:
        self.backend = backend

    def status(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        backend = self.backend
        if profile.telegram:
            return tapi.status_json(profile, backend.own_telegram_id, backend.own_telegram_username,
                                    backend.own_phone, time.time())
        return wire.status_json(profile, backend.own_phone, time.time())

    def _chats_page(self, profile: Profile, chats: list[Chat], query: Mapping[str, str]) -> JSON:
        ordered = _sorted_chats(chats, query)
        offset = query_int(query, "offset", 0)
        if query_bool(query, "show_all"):
            page = ordered[offset:]
        else:
            page = ordered[offset : offset + query_int(query, "limit", 200)]
        overrides = self.backend.chat_faults_for(profile).dialog_overrides
        render = tapi.dialog_json if profile.telegram else wire.dialog_json
        return self.backend.envelope(
            detail="Chats fetched",
            dialogs=[{**render(chat), **overrides.get(chat.key, {})} for chat in page],
            total_count=len(ordered),
        )

    def chats_get(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        chats = list(profile.chats.values())
        filter_ = body.get("filter") if isinstance(body, dict) else None
        ids = filter_.get("ids") if isinstance(filter_, dict) else None
        if isinstance(ids, list) and ids:
            keys = {self.backend.chat_key(profile, str(raw)) for raw in ids}
            chats = [chat for chat in chats if chat.key in keys]
        return self._chats_page(profile, chats, query)

    def chats_filter(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        needle = query.get("client_name", "").strip().lower()
        chats = list(profile.chats.values())
        if needle:

            def matches(chat: Chat) -> bool:
                last = chat.last_message
                last_text = last["body"] if last and isinstance(last["body"], str) else ""
                return any(needle in value.lower() for value in (chat.local, chat.display_name, last_text))

            chats = [chat for chat in chats if matches(chat)]
        return self._chats_page(profile, chats, query)

    def messages_get(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        chat_ref = query.get("chat_id", "")
        if not chat_ref:
            raise EmulatorError("chat_id is required")
        key = self.backend.chat_key(profile, chat_ref)
        if profile.telegram:
            limit = min(query_int(query, "limit", tapi.MESSAGES_LIMIT_MAX), tapi.MESSAGES_LIMIT_MAX)
        else:
            limit = query_int(query, "limit", 50)
        offset = query_int(query, "offset", 0)
        order = query.get("order", "desc").lower()
        if order not in ("asc", "desc"):
            raise EmulatorError(f"invalid order: {order}")
        since = wire.parse_date(query["date"]) if query.get("date") else None
        chat = profile.chats.get(key)
        chat_faults = self.backend.chat_faults_for(profile)
        if key in chat_faults.fail_chats:
            chat_faults.failed += 1
            raise EmulatorError("messages get error", chat_faults.fail_status)
        if chat_faults.take_crossed("media"):
            # A crossed answer of another kind: the body of a concurrent media/download.
            return self.backend.envelope(
                task_id=str(uuid.uuid4()), uuid=profile.profile_id, media_type="ptt",
                mime_type="audio/ogg; codecs=opus", file_name=f"{uuid.uuid4()}.ogg",
                file_b64=base64.b64encode(b"OggS\x00crossed-download-body").decode("ascii"))
        if chat_faults.cross_next > 0:
            # A crossed answer: the history of the most recently active other chat.
            others = [other for other in _sorted_chats(list(profile.chats.values()), {})
                      if other.key != key and other.messages]
            if others and chat_faults.take_crossed("chat"):
                chat = others[0]
        messages = list(chat.messages) if chat else []
        if since is not None:
            messages = [m for m in messages if seconds(m["time"]) >= since]
        if order == "desc":
            messages.reverse()
        page = messages[offset : offset + limit]
        if query_bool(query, "reverse"):
            page.reverse()
        if chat is not None and query_bool(query, "mark_all") and not chat.is_group:
            self.backend.mark_chat_read(chat, None)
        served = copy.deepcopy(page)
        if profile.telegram:
            files, now = profile.files, self.backend.now()
            served = [tapi.with_s3_info(message, files.get(str(message.get("id"))),
                                        self.backend.file_link(profile, str(message.get("id")), host), now)
                      for message in served]
        return self.backend.envelope(messages=served, total_count=len(messages), uuid=profile.profile_id)

    def message_by_id(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        message = profile.find_message(query.get("message_id", ""))
        if message is None:
            raise EmulatorError("message not found")
        return self.backend.envelope(message=copy.deepcopy(message), uuid=profile.profile_id)

    def send(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        text = _send_text(body)
        recipient = body.get("recipient")
        if not isinstance(recipient, str) or not recipient.strip():
            raise EmulatorError("recipient is required")
        return self.backend.record_sent(profile, self.backend.chat_for(profile, recipient), text, None)

    def reply(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        text = _send_text(body)
        message_id = body.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise EmulatorError("message_id is required")
        chat = profile.chat_of(message_id)
        if chat is None:
            raise EmulatorError("message not found")
        return self.backend.record_sent(profile, chat, text, message_id)

    def mark_read(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        message_id = body.get("message_id") if isinstance(body, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise EmulatorError("message_id is required")
        chat = profile.chat_of(message_id)
        if chat is None:
            raise EmulatorError("message not found")
        if profile.telegram:
            # tapi has no `mark_all`: the message only names the chat, which is read up to now.
            self.backend.mark_chat_read(chat, None)
            return self.backend.envelope(detail=f"markRead success for chatID={chat.chat_id}",
                                         task_id=uuid.uuid4().hex, uuid=profile.profile_id)
        self.backend.mark_chat_read(chat, None if query_bool(query, "mark_all") else message_id)
        return self.backend.envelope(uuid=profile.profile_id)

    def typing_start(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        """tapi only: `chats/typing/start {"recipient"}`; the emulator shows nobody the typing."""
        recipient = body.get("recipient") if isinstance(body, dict) else None
        if not isinstance(recipient, str) or not recipient.strip():
            raise EmulatorError("recipient is required")
        self.backend.chat_for(profile, recipient)
        return self.backend.envelope(task_id=uuid.uuid4().hex, uuid=profile.profile_id)

    def media_download(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        message_id = query.get("message_id", "")
        files = profile.files
        media = files.get(message_id)
        if media is None or message_id not in profile.message_index or media.expired:
            raise EmulatorError("download media error")
        media_faults = self.backend.media_faults_for(profile)
        if message_id in media_faults.fail_message_ids:
            raise EmulatorError(media_faults.fail_detail, media_faults.fail_status)
        if media_faults.take_crossed("messages"):
            # A crossed answer of another kind: the body of a concurrent messages/get.
            chat = next((c for c in profile.chats.values() if message_id in {m.get("id") for m in c.messages}),
                        None)
            page = list(reversed(chat.messages))[:50] if chat is not None else []
            return self.backend.envelope(messages=copy.deepcopy(page), total_count=len(page),
                                         uuid=profile.profile_id)
        if media_faults.take_crossed("file"):
            # A crossed answer: another message's file (the newest other one), or a decoy.
            others = [other for other_id, other in files.items()
                      if other_id != message_id and other_id in profile.message_index]
            media = others[-1] if others else MediaFile(
                data=b"OggS\x00crossed-answer-of-another-message", mimetype=media.mimetype,
                file_name=f"{uuid.uuid4()}.ogg", media_type=media.media_type, shape=media.shape,
                duration=media.duration)
        if profile.telegram:
            link = self.backend.file_link(profile, message_id, host)
            return self.backend.envelope(task_id=uuid.uuid4().hex, uuid=profile.profile_id,
                                         **tapi.media_download_fields(media, link, self.backend.now()))
        payload = self.backend.envelope(
            task_id=str(uuid.uuid4()),
            uuid=profile.profile_id,
            media_type=media.media_type,
            mime_type=media.mimetype,
            file_name=media.file_name,
        )
        if media.shape in ("b64", "both"):
            payload["file_b64"] = base64.b64encode(media.data).decode("ascii")
        if media.shape in ("link", "both"):
            payload["file_link"] = self.backend.file_link(profile, message_id, host)
            payload["file_link_expire"] = self.backend.now() + wire.FILE_LINK_TTL_SECONDS
        return payload

    def webhook_set(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        url = query.get("url", "")
        if not url.startswith(("http://", "https://")):
            raise EmulatorError("url must be http(s)")
        profile.webhook_url = url
        profile.webhook_secret = query.get("auth", "")
        if profile.telegram:
            return self.backend.envelope(detail=f"webhook url: {url}")
        return self.backend.envelope()

    def webhook_get(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        if profile.telegram:
            return self.backend.envelope(url=profile.webhook_url, auth=profile.webhook_secret,
                                         installed=bool(profile.webhook_url))
        if not profile.webhook_url:
            return {"detail": "WebHook не установлен", "status": "done", "url": "", "installed": False}
        return {
            "detail": f"WebHook установлен на адрес {profile.webhook_url}",
            "status": "done",
            "url": profile.webhook_url,
            "installed": True,
        }

    def webhook_delete(self, profile: Profile, query: Mapping[str, str], body: Any, host: str | None) -> JSON:
        profile.webhook_url = ""
        profile.webhook_secret = ""
        return self.backend.envelope()
