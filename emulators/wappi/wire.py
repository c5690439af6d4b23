"""The Wappi sync-API wire format: ``{"status": "done", ...}`` envelopes and errors, the message,
dialog, status and webhook JSON, and the parsing of query strings and bodies.

See ``/work/shared/reference/wappi-api.md``: ``time`` fields are RFC3339 in Moscow time, dialog
``last_timestamp`` is UTC with ``Z``, a media message's ``body`` is an object.
"""

from __future__ import annotations

import base64
import copy
import json
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

from emulators.wappi.exceptions import EmulatorError
from emulators.wappi.models import DEFAULT_MEDIA_FORMAT, JSON, Chat, MediaFile, Profile, seconds

MSK = timezone(timedelta(hours=3))
FILE_LINK_TTL_SECONDS = 7 * 24 * 3600
WEBHOOK_FILE_LINK_TTL_SECONDS = 48 * 3600
WEBHOOK_TYPES = [
    "authorization_status",
    "incoming_message",
    "delivery_status",
    "outgoing_message_phone",
    "outgoing_message_api",
    "application_status",
]


def rfc3339_msk(ts: float) -> str:
    """Wappi ``time`` fields: RFC3339 in Moscow time (``+03:00``)."""
    return datetime.fromtimestamp(seconds(ts), MSK).isoformat(timespec="seconds")


def rfc3339_utc(ts: float) -> str:
    """Dialog ``last_timestamp``: RFC3339 in UTC with ``Z``."""
    return datetime.fromtimestamp(seconds(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(now: int, **fields: Any) -> JSON:
    return {"status": "done", "timestamp": now, "time": rfc3339_msk(now), **fields}


def error(detail: str) -> JSON:
    return {"status": "error", "detail": detail}


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --------------------------------------------------------------------------- messages


def message_json(
    *,
    msg_id: str,
    msg_type: str,
    sender: str,
    recipient: str,
    chat_id: str,
    from_me: bool,
    sender_name: str,
    ts: int,
    body: Any,
    from_where: str,
    caption: str = "",
    stanza_id: str = "",
    is_reply: bool = False,
    from_api: bool = False,
    is_forwarded: bool = False,
) -> JSON:
    """A sync-API message as messages/get returns it."""
    return {
        "id": msg_id,
        "type": msg_type,
        "from": sender,
        "to": recipient,
        "fromMe": from_me,
        "senderName": sender_name,
        "time": ts,
        "body": body,
        "caption": caption,
        "chatId": chat_id,
        "isForwarded": is_forwarded,
        "isReply": is_reply,
        "stanzaId": stanza_id,
        "isRead": False,
        "delivery_status": "delivered",
        "isFromAPI": from_api,
        "isDeleted": False,
        "isEdited": False,
        "isPinned": False,
        "s3Info": {},
        "poll_votes": None,
        "poll_options": None,
        "poll_select_count": 0,
        "media_info": None,
        "mimetype": "",
        "file_name": "",
        "from_where": from_where,
        "contact_name": "",
        "reply_message": None,
    }


def message_body(msg_type: str, msg_id: str, text: str, *, caption: str, media: MediaFile | None,
                 mimetype: str | None, location: tuple[float, float]) -> Any:
    """A message's ``body``: the text, or an object for media, stickers, locations and vCards."""
    if media is not None:
        body: JSON = {
            "url": f"https://mmg.whatsapp.net/v/t62.7117-24/{msg_id.lower()}.enc",
            "mimetype": media.mimetype,
            "fileLength": len(media.data),
            "caption": caption,
        }
        if msg_type in ("ptt", "audio", "video"):
            body["seconds"] = media.duration
        if msg_type == "ptt":
            body["PTT"] = True
        if msg_type in ("image", "video"):
            body.update({"width": 0, "height": 0, "JPEGThumbnail": ""})
        if msg_type == "document":
            body.update({"fileName": media.file_name, "title": media.file_name, "pageCount": 0})
        return body
    if msg_type == "sticker":
        return {"mimetype": mimetype or DEFAULT_MEDIA_FORMAT["sticker"][0], "isAnimated": False}
    if msg_type == "location":
        return {"degreesLatitude": location[0], "degreesLongitude": location[1], "name": text, "address": ""}
    if msg_type == "vcard":
        return {"displayName": text.splitlines()[0] if text else "", "vcard": text}
    return text


def media_info(media: MediaFile) -> JSON:
    return {
        "width": 0,
        "height": 0,
        "size": len(media.data),
        "duration": media.duration,
        "is_round": False,
        "is_group": False,
        "grouped_id": "",
    }


def reply_summary(target: JSON) -> JSON:
    """The ``reply_message`` of a reply: a summary of the message it quotes."""
    return {
        "id": target["id"],
        "body": target["body"] if isinstance(target["body"], str) else "",
        "type": target["type"],
        "chatId": target["chatId"],
        "caption": target["caption"],
        "file_name": target["file_name"],
        "contact_name": target["contact_name"],
        "time": target["time"],
    }


# --------------------------------------------------------------------------- dialogs, status, webhooks


def dialog_json(chat: Chat) -> JSON:
    """A chats/get dialog."""
    last = chat.last_message
    sender: JSON | None = None
    if last is not None:
        sender_jid = str(last["from"])
        sender = {
            "id": sender_jid,
            "number": sender_jid.partition("@")[0],
            "pushname": "" if last["fromMe"] else last["senderName"],
            "isMe": bool(last["fromMe"]),
        }
    last_data = ""
    if last is not None:
        last_data = last["body"] if isinstance(last["body"], str) else str(last["caption"] or "")
    return {
        "id": chat.chat_id,
        "contact": {
            "Found": not chat.is_group,
            "FirstName": chat.first_name,
            "FullName": chat.full_name,
            "PushName": chat.push_name,
            "BusinessName": chat.business_name,
        },
        "chat": {}
        if chat.is_group
        else {
            "VerifiedName": None,
            "Status": "",
            "PictureID": "",
            "Devices": [chat.chat_id],
        },
        "group": (
            {
                "Name": chat.group_name,
                "Participants": [
                    {"JID": jid, "IsAdmin": False, "IsSuperAdmin": False} for jid in chat.participants
                ],
            }
            if chat.is_group
            else None
        ),
        "isGroup": chat.is_group,
        "image": "",
        "thumbnail": "",
        "avatar_updated_at": 0,
        "last_message_id": last["id"] if last else "",
        "last_timestamp": rfc3339_utc(last["time"]) if last else 0,
        "last_time": last["time"] if last else 0,
        "last_message_type": last["type"] if last else "",
        "last_message_sender": sender,
        "last_message_data": last_data,
        "name": chat.display_name,
        "unread_count": chat.unread_count,
        "isDeleted": False,
        "isArchived": False,
    }


def status_json(profile: Profile, own_phone: str, now: float) -> JSON:
    """get/status; `now` is the real time (float seconds)."""
    return {
        "app_status": profile.app_status,
        "authorized": profile.authorized,
        "authorized_at": rfc3339_msk(profile.authorized_at) if profile.authorized else None,
        "checked_at": rfc3339_msk(now),
        "last_activity": now,
        "logouted_at": rfc3339_msk(profile.logouted_at) if profile.logouted_at is not None else None,
        "message_count": sum(len(chat.messages) for chat in profile.chats.values()),
        "name": f"Emulator {profile.profile_id}",
        "payment_expired_at": rfc3339_utc(now + 365 * 86_400) if profile.paid else rfc3339_utc(now - 86_400),
        "payment_notification": True,
        "phone": own_phone if profile.authorized else "",
        "platform": "wz",
        "profile_id": profile.profile_id,
        "proxy": "",
        "uuid": profile.profile_id,
        "webhook_types": list(WEBHOOK_TYPES),
        "webhook_url": profile.webhook_url,
        "worked_days": 30,
    }


def webhook_json(profile: Profile, chat: Chat, message: JSON, wh_type: str, *, media: MediaFile | None,
                 file_link: str, now: int) -> JSON:
    """One entry of a webhook POST's ``messages``; a media message carries its file inline."""
    payload: JSON = {
        "wh_type": wh_type,
        "profile_id": profile.profile_id,
        "id": message["id"],
        "body": message["body"],
        "type": message["type"],
        "from": message["from"],
        "to": message["to"],
        "senderName": message["senderName"],
        "senderLastName": "",
        "chatId": message["chatId"],
        "timestamp": rfc3339_msk(message["time"]),
        "time": message["time"],
        "caption": message["caption"] or None,
        "from_where": message["from_where"],
        "contact_name": message["contact_name"] if not message["fromMe"] else chat.display_name,
        "contact_last_name": "",
        "contact_phone": "",
        "contact_username": "",
        "is_forwarded": message["isForwarded"],
        "isReply": message["isReply"],
        "is_edited": False,
        "stanza_id": message["stanzaId"],
        "is_me": message["fromMe"],
        "chat_type": "group" if chat.is_group else "dialog",
        "thumbnail": "",
        "picture": "",
        "wappi_bot_id": "",
        "is_deleted": False,
        "is_bot": False,
        "attaches": None,
        "platform": "whatsapp",
        "is_callback": False,
        "is_command": False,
        "is_topic": False,
    }
    if message["reply_message"] is not None:
        payload["reply_message"] = copy.deepcopy(message["reply_message"])
    if media is not None:
        payload.update(
            {
                "body": base64.b64encode(media.data).decode("ascii"),
                "file_name": media.file_name,
                "mimetype": media.mimetype,
                "file_link": file_link,
                "file_link_expire": now + (-3600 if media.expired else WEBHOOK_FILE_LINK_TTL_SECONDS),
                "length_seconds": media.duration,
                "media_info": copy.deepcopy(message["media_info"]),
                "isGif": False,
            }
        )
    return payload


# --------------------------------------------------------------------------- parsing requests


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """A request target as ``(path without trailing slash, first value of each query parameter)``."""
    split = urllib.parse.urlsplit(target)
    path = split.path.rstrip("/") or "/"
    query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
    return path, query


def json_body(raw: bytes) -> Any:
    """A request body as JSON; an empty body is ``{}``."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise EmulatorError("Invalid JSON body") from None


def query_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EmulatorError(f"invalid {name}: {raw}") from None
    if value < 0:
        raise EmulatorError(f"invalid {name}: {raw}")
    return value


def query_bool(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").strip().lower() in ("true", "1", "yes")


def parse_date(raw: str) -> int:
    """``YYYY-mm-ddTHH:MM:ss`` (UTC) or ``YYYY-mm-dd`` to unix seconds."""
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(raw, fmt).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    raise EmulatorError(f"invalid date: {raw} (expected YYYY-mm-ddTHH:MM:ss)")


def require_str(payload: Mapping[str, Any], name: str, *, default: str | None = None) -> str:
    value = payload.get(name, default)
    if value is None:
        raise EmulatorError(f"{name} is required")
    if not isinstance(value, str):
        raise EmulatorError(f"{name} must be a string")
    return value


def optional_int(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EmulatorError(f"{name} must be a number")
    return int(value)


def optional_bool(payload: Mapping[str, Any], name: str) -> bool | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise EmulatorError(f"{name} must be a boolean")
    return value
