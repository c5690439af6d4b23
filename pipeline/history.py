"""A contact's conversation as the model reads it: turns, the contact data block, Gemini contents.

Names the contact chose (push name, full name, business name) are data, never instruction: they go
JSON-quoted into the contact data block, the first part of the first user turn, and the system
prompts say so. The system instruction is then the same for every contact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from db.models import Contact, Message
from db.session import execute_core
from domain.states import Direction
from prompts.markers import CONTACT_DATA_END, CONTACT_DATA_START

VOICE_MARK = "[голосовое сообщение, расшифровка]"


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "model"
    text: str


# Built once (a statement built per call costs about as much Python as its round trip), read as plain
# rows: only what a turn needs, no message objects for the session to track.
LAST_MESSAGES = (select(Message.text, Message.is_voice, Message.transcription, Message.direction)
                 .where(Message.contact_id == bindparam("contact_id"))
                 .order_by(Message.sent_at.desc(), Message.id.desc()).limit(bindparam("limit")))


def conversation_turns(session: Session, contact_id: int, limit: int, max_chars: int = 4000) -> list[Turn]:
    """The contact's last `limit` messages, oldest first, as model turns. This contact's only.

    A message longer than `max_chars` is cut, with a note saying so (Unicode and emoji intact)."""
    rows = execute_core(session, LAST_MESSAGES, {"contact_id": contact_id, "limit": limit}).all()
    turns: list[Turn] = []
    for row in reversed(rows):
        text = row.text
        if row.is_voice and row.transcription:
            text = f"{VOICE_MARK} {row.transcription}"
        if not text:
            continue
        if len(text) > max_chars:
            text = f"{text[:max_chars]}\n[сообщение обрезано: показаны первые {max_chars} из {len(text)} символов]"
        turns.append(Turn(role="user" if row.direction == Direction.IN else "model", text=text))
    return turns


def contact_data(*, push_name: str = "", full_name: str = "", business_name: str = "") -> str:
    """The contact data block: each name JSON-quoted (null when unknown), so no name can end the block."""
    fields = {"имя_в_профиле": push_name or None, "полное_имя": full_name or None,
              "название_бизнеса": business_name or None}
    return f"{CONTACT_DATA_START}\n{json.dumps(fields, ensure_ascii=False)}\n{CONTACT_DATA_END}"


class ContactNames(Protocol):
    """The names a contact chose: a `Contact`, or a row read with these columns."""

    @property
    def push_name(self) -> str: ...
    @property
    def first_name(self) -> str: ...
    @property
    def full_name(self) -> str: ...
    @property
    def business_name(self) -> str: ...


# `ContactNames` as columns, for statements that read them as a plain row.
CONTACT_NAMES = (Contact.push_name, Contact.first_name, Contact.full_name, Contact.business_name)


def contact_data_of(contact: ContactNames) -> str:
    return contact_data(push_name=contact.push_name or contact.first_name, full_name=contact.full_name,
                        business_name=contact.business_name)


def to_contents(turns: list[Turn], data: str | None = None) -> list[dict[str, Any]]:
    """Gemini multi-turn contents; consecutive turns of one role are merged into one content.

    `data` (the contact data block) becomes the first part of the first user turn."""
    contents: list[dict[str, Any]] = []
    for turn in turns:
        if contents and contents[-1]["role"] == turn.role:
            contents[-1]["parts"].append({"text": turn.text})
        else:
            contents.append({"role": turn.role, "parts": [{"text": turn.text}]})
    while contents and contents[0]["role"] != "user":
        contents.pop(0)  # a conversation given to the model starts with the customer
    if data is not None and contents:
        contents[0]["parts"].insert(0, {"text": data})
    return contents


def retrieval_query(turns: list[Turn], last: int = 3) -> str:
    """What to look up in the knowledge base: the customer's last few messages (this contact's)."""
    return "\n".join(turn.text for turn in [turn for turn in turns if turn.role == "user"][-last:])
