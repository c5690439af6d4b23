"""The wire format of Wappi's Telegram API (``/tapi/``) for Telegram profiles: messages, dialogs,
status and webhooks as ``/work/shared/reference/telegram.md`` (part B) describes them.

What differs from WhatsApp (`wire`): ids are bare numeric strings, plain text is ``type: "text"``,
a media message's ``body`` is ``""`` with ``s3Info.url`` and flat ``mimetype``/``file_name``/
``media_info``, a dialog has ``type`` (user/chat/channel) instead of ``isGroup``, and its
``last_timestamp`` is unix seconds while ``last_time`` is RFC3339 (the inverse of WhatsApp).
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from emulators.wappi.models import JSON, Chat, MediaFile, Profile
from emulators.wappi.wire import FILE_LINK_TTL_SECONDS, WEBHOOK_FILE_LINK_TTL_SECONDS, rfc3339_msk, rfc3339_utc

# Telegram message types whose `body` is "" in the sync API (the file is behind `s3Info.url`).
MEDIA_BODY_TYPES = frozenset({"ptt", "audio", "image", "video", "document", "sticker"})
MESSAGES_LIMIT_MAX = 100  # messages/get: default and maximum `limit` on tapi
# tapi's webhook types: WhatsApp's without `incoming_call`.
WEBHOOK_TYPES = [
    "incoming_message",
    "delivery_status",
    "authorization_status",
    "outgoing_message_api",
    "outgoing_message_phone",
    "application_status",
]


def message_json(
    *,
    msg_id: str,
    msg_type: str,
    sender: str,
    recipient: str,
    chat: Chat,
    from_me: bool,
    sender_name: str,
    ts: int,
    text: str,
    from_where: str,
    caption: str = "",
    stanza_id: str = "",
    from_api: bool = False,
    is_forwarded: bool = False,
    media: MediaFile | None = None,
) -> JSON:
    """A ``/tapi/`` messages/get message; `s3Info` is filled in when served (`with_s3_info`)."""
    return {
        "id": msg_id,
        "type": msg_type,
        "from": sender,
        "to": recipient,
        "fromMe": from_me,
        "senderName": sender_name,
        "time": ts,
        "body": "" if msg_type in MEDIA_BODY_TYPES else text,
        "stanzaId": stanza_id,
        "chatId": chat.chat_id,
        "isForwarded": is_forwarded,
        "isReply": bool(stanza_id),
        "caption": caption,
        "isRead": False,
        "delivery_status": "delivered",
        "s3Info": {},
        "poll_votes": None,
        "poll_options": None,
        "mimetype": media.mimetype if media is not None else "",
        "file_name": media.file_name if media is not None else "",
        "attaches": None,
        "reactions": None,
        "media_info": media_info(media) if media is not None else None,
        "isGif": False,
        "contact_name": "",
        "username": "" if from_me else chat.username,
        "phone": "",
        "from_where": from_where,
        "isFromAPI": from_api,
        "isEdited": False,
        "isDeleted": False,
        "reply_message": None,
        "wappi_bot_id": "",
    }


def with_s3_info(message: JSON, media: MediaFile | None, file_link: str, now: int) -> JSON:
    """A served copy of `message` whose file is behind a signed link (`{}` once it expired)."""
    if media is not None and not media.expired:
        message["s3Info"] = {"url": file_link, "expire": now + WEBHOOK_FILE_LINK_TTL_SECONDS}
    return message


def media_info(media: MediaFile) -> JSON:
    return {"width": 0, "height": 0, "size": len(media.data), "duration": media.duration, "is_round": False,
            "is_group": False, "grouped_id": ""}


def reply_summary(target: JSON) -> JSON:
    return {
        "id": target["id"],
        "body": target["body"],
        "type": target["type"],
        "chatId": target["chatId"],
        "timestamp": rfc3339_msk(target["time"]),
        "caption": target["caption"],
        "contact_name": target["contact_name"],
        "username": target["username"],
        "phone": "",
        "attaches": None,
    }


def _user(chat: Chat) -> JSON:
    first, _, last = (chat.full_name or chat.first_name or chat.push_name).partition(" ")
    return {"ID": int(chat.key), "FirstName": chat.first_name or first, "LastName": last,
            "Username": chat.username, "Phone": "", "Bot": False, "Premium": False, "Photo": None}


def dialog_json(chat: Chat) -> JSON:
    """A ``/tapi/`` chats/get dialog."""
    last = chat.last_message
    sender: JSON | None = None
    if last is not None:
        sender = {
            "id": str(last["from"]),
            "type": "user",
            "number": "",
            "pushname": "" if last["fromMe"] else last["senderName"],
            "username": last.get("username", ""),
            "isMe": bool(last["fromMe"]),
        }
    dialog: JSON = {"id": chat.chat_id, "type": chat.telegram_type}
    if chat.telegram_type == "user":
        dialog["user"] = _user(chat)
    else:
        dialog["chat"] = {"ID": int(chat.key.removeprefix("-")), "Title": chat.group_name,
                          "ParticipantsCount": len(chat.participants)}
        dialog["participants"] = [{"UserID": int(member)} for member in chat.participants]
    dialog.update({
        "unread_count": chat.unread_count,
        "isDeleted": False,
        "isArchived": False,
        "isPinned": False,
        "name": chat.display_name,
        "picture": "",
        "thumbnail": "",
        "last_message_id": last["id"] if last else "",
        "last_message_data": (last["body"] or last["caption"]) if last else "",
        "last_message_type": last["type"] if last else "",
        "last_timestamp": last["time"] if last else None,
        "last_time": rfc3339_utc(last["time"]) if last else "",
        "last_message_sender": sender,
        "last_message_delivery_status": last["delivery_status"] if last else "",
        "total_messages": len(chat.messages),
        "wappi_tags": None,
        "wapi_unread_count": chat.unread_count,
    })  # fmt: skip
    return dialog


def status_json(profile: Profile, own_id: str, own_username: str, own_phone: str, now: float) -> JSON:
    """``/tapi/`` get/status: WhatsApp's fields plus ``platform: "tg"`` and ``account{}``."""
    phone = own_phone if profile.authorized else ""
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
        "phone": phone,
        "platform": "tg",
        "account": {"user_id": int(own_id), "phone": phone, "name": f"Emulator {profile.profile_id}",
                    "username": own_username} if profile.authorized else None,
        "profile_id": profile.profile_id,
        "proxy": "",
        "uuid": profile.profile_id,
        "webhook_types": list(WEBHOOK_TYPES),
        "webhook_url": profile.webhook_url,
        "worked_days": 30,
    }


def send_fields(message_id: str, task_id: str, profile: Profile) -> dict[str, Any]:
    """The fields a ``/tapi/`` send or reply adds to the envelope."""
    number = int(message_id) if message_id.isdigit() else 0
    return {"message_id": message_id, "task_id": task_id, "uuid": profile.profile_id, "pts": 2_290_000 + number,
            "pts_count": 1}


def media_download_fields(media: MediaFile, file_link: str, now: int) -> JSON:
    """tapi's media/download: a signed link, never the file inline."""
    return {"file_name": media.file_name, "media_type": media.media_type, "mime_type": media.mimetype,
            "file_link": file_link, "file_link_expire": now + FILE_LINK_TTL_SECONDS}


def webhook_json(profile: Profile, chat: Chat, message: JSON, wh_type: str, *, media: MediaFile | None,
                 file_link: str, now: int) -> JSON:
    """One entry of a ``/tapi/`` webhook POST's ``messages``; media carries the file as base64."""
    payload: JSON = {
        "id": message["id"],
        "profile_id": profile.profile_id,
        "wh_type": wh_type,
        "timestamp": rfc3339_msk(message["time"]),
        "time": message["time"],
        "body": message["body"],
        "type": message["type"],
        "from": message["from"],
        "to": message["to"],
        "senderName": message["senderName"],
        "chatId": message["chatId"],
        "caption": message["caption"] or None,
        "from_where": message["from_where"],
        "contact_name": message["contact_name"] if not message["fromMe"] else chat.display_name,
        "contact_phone": "",
        "contact_username": chat.username,
        "username": message["username"],
        "is_forwarded": message["isForwarded"],
        "isReply": message["isReply"],
        "is_edited": False,
        "stanza_id": message["stanzaId"],
        "is_me": message["fromMe"],
        "chat_type": chat.telegram_type,
        "thumbnail": "",
        "picture": "",
        "wappi_bot_id": "",
        "is_deleted": False,
        "is_bot": False,
    }
    if message["reply_message"] is not None:
        payload["reply_message"] = copy.deepcopy(message["reply_message"])
    if media is not None:
        payload.update({
            "body": base64.b64encode(media.data).decode("ascii"),
            "file_name": media.file_name,
            "mimetype": media.mimetype,
            "file_link": file_link,
            "file_link_expire": now + (-3600 if media.expired else WEBHOOK_FILE_LINK_TTL_SECONDS),
            "length_seconds": media.duration,
        })  # fmt: skip
    return payload
