"""The Wappi emulator's control interface under ``/_emulator/`` (no authentication): inject
customer messages, read what the pipeline sent, set faults, profiles, accounts and webhooks, seed
chats.

Each handler checks the JSON it is given and calls the matching `WappiEmulator` method, so the
HTTP and the Python control interfaces cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from emulators.server import Response, json_response
from emulators.wappi.exceptions import EmulatorError
from emulators.wappi.models import DEFAULT_CUSTOMER_NAME, JSON
from emulators.wappi.wire import error, optional_bool, optional_int, require_str

if TYPE_CHECKING:  # the emulator builds its control interface: a type-only import the other way
    from emulators.wappi.emulator import WappiEmulator

CUSTOMER_MESSAGE_FIELDS = frozenset({
    "profile_id", "phone", "text", "type", "name", "full_name", "first_name", "business_name",
    "caption", "media_b64", "media_shape", "media_expired", "mimetype", "file_name", "duration", "time",
    "chat_suffix", "group", "group_id", "group_name", "stanza_id", "is_forwarded",
    "latitude", "longitude", "overrides", "username",
})  # fmt: skip
# What an expired signed S3 link answers.
EXPIRED_LINK_BODY = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


def _reject_unknown(body: JSON, allowed: frozenset[str] | set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise EmulatorError(f"unknown fields: {', '.join(unknown)}")


def _optional_str(body: JSON, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise EmulatorError(f"{name} must be a string")
    return value


def _str_list(body: JSON, name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise EmulatorError(f"{name} must be a list of non-empty strings")
    return value


class ControlApi:
    def __init__(self, emulator: WappiEmulator) -> None:
        self.emulator = emulator

    def file(self, rest: str) -> Response:
        """``GET /_emulator/files/<profile id>/<message id>``: the file a media message's link
        points at (`WappiBackend.file_link`)."""
        profile_id, _, message_id = rest.partition("/")
        backend = self.emulator.backend
        with backend.lock:
            profile = backend.profiles.get(profile_id)
            media = profile.files.get(message_id) if profile is not None else None
        if media is None:
            return json_response(404, error("file not found"))
        if media.expired:
            return Response(403, EXPIRED_LINK_BODY, content_type="application/xml")
        return Response(200, media.data, content_type=media.mimetype)

    def health(self, query: Mapping[str, str], body: Any) -> JSON:
        return {"status": "ok"}

    def customer_message(self, query: Mapping[str, str], body: JSON) -> JSON:
        _reject_unknown(body, CUSTOMER_MESSAGE_FIELDS)
        latitude = body.get("latitude", 0.0)
        longitude = body.get("longitude", 0.0)
        if not isinstance(latitude, int | float) or not isinstance(longitude, int | float):
            raise EmulatorError("latitude and longitude must be numbers")
        overrides = body.get("overrides")
        if overrides is not None and not isinstance(overrides, dict):
            raise EmulatorError("overrides must be an object")
        media_b64 = _optional_str(body, "media_b64")
        group_id = _optional_str(body, "group_id")
        group_name = _optional_str(body, "group_name")
        mimetype = _optional_str(body, "mimetype")
        file_name = _optional_str(body, "file_name")
        return self.emulator.customer_message(
            require_str(body, "profile_id"),
            require_str(body, "phone"),
            require_str(body, "text", default=""),
            type=require_str(body, "type", default="chat"),
            name=require_str(body, "name", default=DEFAULT_CUSTOMER_NAME),
            full_name=require_str(body, "full_name", default=""),
            first_name=require_str(body, "first_name", default=""),
            business_name=require_str(body, "business_name", default=""),
            caption=require_str(body, "caption", default=""),
            media_b64=media_b64,
            media_shape=require_str(body, "media_shape", default="both"),
            media_expired=bool(optional_bool(body, "media_expired")),
            mimetype=mimetype,
            file_name=file_name,
            duration=optional_int(body, "duration"),
            time=optional_int(body, "time"),
            chat_suffix=require_str(body, "chat_suffix", default="c.us"),
            group=bool(optional_bool(body, "group")),
            group_id=group_id,
            group_name=group_name,
            stanza_id=require_str(body, "stanza_id", default=""),
            is_forwarded=bool(optional_bool(body, "is_forwarded")),
            latitude=float(latitude),
            longitude=float(longitude),
            overrides=overrides,
            username=require_str(body, "username", default=""),
        )

    def phone_message(self, query: Mapping[str, str], body: JSON) -> JSON:
        return self.emulator.phone_message(
            require_str(body, "profile_id"),
            require_str(body, "phone"),
            require_str(body, "text"),
            time=optional_int(body, "time"),
        )

    def late_message(self, query: Mapping[str, str], body: JSON) -> JSON:
        _reject_unknown(body, {"profile_id", "phone", "text", "written_ago", "name"})
        written_ago = optional_int(body, "written_ago")
        if written_ago is None or written_ago < 0:
            raise EmulatorError("written_ago (seconds, >= 0) is required")
        return self.emulator.late_message(require_str(body, "profile_id"), require_str(body, "phone"),
                                          require_str(body, "text"), written_ago=written_ago,
                                          name=require_str(body, "name", default=DEFAULT_CUSTOMER_NAME))

    def channel_message(self, query: Mapping[str, str], body: JSON) -> JSON:
        _reject_unknown(body, {"profile_id", "chat_id", "text", "sender"})
        return self.emulator.channel_message(require_str(body, "profile_id"), require_str(body, "chat_id"),
                                             require_str(body, "text"),
                                             sender=require_str(body, "sender", default=""))

    def chat(self, query: Mapping[str, str], body: Any) -> JSON:
        phone = query.get("phone", "")
        if not phone:
            raise EmulatorError("phone is required")
        return {"messages": self.emulator.chat_messages(query.get("profile_id", ""), phone)}

    def sent(self, query: Mapping[str, str], body: Any) -> JSON:
        return {"messages": self.emulator.sent_messages(query.get("profile_id", ""))}

    def requests(self, query: Mapping[str, str], body: Any) -> JSON:
        return {"requests": self.emulator.requests_log()}

    def clear_requests(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.emulator.clear_requests()
        return {"status": "done"}

    def reset(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.emulator.reset()
        return {"status": "done"}

    def get_faults(self, query: Mapping[str, str], body: Any) -> JSON:
        return self.emulator.faults()

    def set_faults(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.emulator.set_faults(body)
        return {"status": "done", "faults": self.emulator.faults()}

    def get_media_faults(self, query: Mapping[str, str], body: Any) -> JSON:
        return self.emulator.media_faults()

    def set_media_faults(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.emulator.set_media_faults(body)
        return {"status": "done", "media_faults": self.emulator.media_faults()}

    def get_chat_faults(self, query: Mapping[str, str], body: Any) -> JSON:
        return self.emulator.chat_faults()

    def set_chat_faults(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.emulator.set_chat_faults(body)
        return {"status": "done", "chat_faults": self.emulator.chat_faults()}

    def profile(self, query: Mapping[str, str], body: JSON) -> JSON:
        app_status = _optional_str(body, "app_status")
        self.emulator.set_profile(
            require_str(body, "profile_id"),
            authorized=optional_bool(body, "authorized"),
            app_status=app_status,
            paid=optional_bool(body, "paid"),
        )
        return {"status": "done"}

    def add_profile(self, query: Mapping[str, str], body: JSON) -> JSON:
        _reject_unknown(body, {"profile_id", "platform", "token"})
        self.emulator.add_profile(require_str(body, "profile_id"),
                                  platform=require_str(body, "platform", default="whatsapp"),
                                  token=_optional_str(body, "token"))
        return {"status": "done"}

    def add_account(self, query: Mapping[str, str], body: JSON) -> JSON:
        _reject_unknown(body, {"token", "profile_ids", "telegram_profile_ids"})
        self.emulator.add_account(require_str(body, "token"), _str_list(body, "profile_ids"),
                                  telegram_profile_ids=_str_list(body, "telegram_profile_ids"))
        return {"status": "done"}

    def webhook(self, query: Mapping[str, str], body: JSON) -> JSON:
        self.emulator.set_webhook(
            require_str(body, "profile_id"),
            require_str(body, "url", default=""),
            require_str(body, "secret", default=""),
        )
        return {"status": "done"}

    def seed_chats(self, query: Mapping[str, str], body: JSON) -> JSON:
        count = optional_int(body, "count")
        if count is None:
            raise EmulatorError("count is required")
        messages_per_chat = optional_int(body, "messages_per_chat")
        read = optional_bool(body, "read")
        chat_ids = self.emulator.seed_chats(
            require_str(body, "profile_id"),
            count,
            messages_per_chat=1 if messages_per_chat is None else messages_per_chat,
            start_time=optional_int(body, "start_time"),
            read=True if read is None else read,
        )
        return {"status": "done", "created": len(chat_ids)}
