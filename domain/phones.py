"""Phone numbers and WhatsApp chat ids: one canonical form (digits with country code) for comparisons."""

from __future__ import annotations

import re

USER_SUFFIXES = ("@c.us", "@s.whatsapp.net")
GROUP_SUFFIX = "@g.us"
LID_SUFFIX = "@lid"
# Chats that are no conversation with a person: a channel, a broadcast list, contacts' status
# updates (`status@broadcast`). Recorded at most, never answered, never a phone number.
CHANNEL_SUFFIXES = ("@newsletter", "@broadcast")


def is_group_chat(chat_id: str) -> bool:
    return chat_id.endswith(GROUP_SUFFIX)


def is_channel_chat(chat_id: str) -> bool:
    return chat_id.strip().endswith(CHANNEL_SUFFIXES)


def is_person_chat(chat_id: str) -> bool:
    """A 1:1 chat with a person (`@c.us`, `@s.whatsapp.net`, `@lid` or a bare number)."""
    value = chat_id.strip()
    return bool(value) and not is_group_chat(value) and not is_channel_chat(value)


def is_lid(chat_id: str) -> bool:
    return chat_id.endswith(LID_SUFFIX)


def normalize_phone(value: str) -> str:
    """`+7 (701) 123-45-67`, `87011234567`, `77011234567@c.us` -> `77011234567`.

    A leading 8 on an 11-digit number is the Kazakh/Russian trunk prefix for +7. Group, channel,
    broadcast and `@lid` ids are returned unchanged: they are not phone numbers.
    """
    raw = value.strip()
    if is_group_chat(raw) or is_channel_chat(raw) or is_lid(raw):
        return raw
    for suffix in USER_SUFFIXES:
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)]
            break
    digits = re.sub(r"\D", "", raw.split(":", 1)[0])  # drop a ":device" part of a jid
    if len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    return digits


def chat_id_for(phone: str) -> str:
    return f"{normalize_phone(phone)}@c.us"
