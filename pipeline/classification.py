"""Lead classification: is this contact a potential client (true), not one (false), or unclear (null)?

Only a confident "not a lead" leaves a contact unanswered. An undecided one is answered in a
neutral, clarifying tone and classified again on its next message (`ANSWER_UNDECIDED=true`, the
default); with `ANSWER_UNDECIDED=false` its messages wait until a verdict counts.

The verdict is validated strictly: a wrong type, a confidence outside 0..1, invalid JSON or an
empty/blocked answer is invalid, asked once more, and then leaves the contact undecided.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from clients.gemini import GeminiClient, GeminiEmptyAnswerError
from db.models import Contact, Message
from pipeline.conversation import contact_data_of, conversation_turns, record_usage, to_contents
from prompts import render

log = logging.getLogger(__name__)

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "is_client": {"type": ["boolean", "null"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasoning": {"type": "string"},
    },
    "required": ["is_client", "confidence", "reasoning"],
}
ATTEMPTS = 2  # the first answer, and one more when it is invalid


class InvalidVerdict(ValueError):
    """The model's answer is not a valid verdict; the message says what is wrong."""


@dataclass(frozen=True)
class Verdict:
    is_client: bool | None
    confidence: float
    reasoning: str


def parse_verdict(text: str) -> Verdict:
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidVerdict(f"not JSON: {text[:80]!r}") from exc
    if not isinstance(data, dict):
        raise InvalidVerdict("not a JSON object")
    is_client = data.get("is_client", "missing")
    if is_client is not None and not isinstance(is_client, bool):
        raise InvalidVerdict(f"is_client must be true, false or null, not {is_client!r}")
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise InvalidVerdict(f"confidence must be a number, not {confidence!r}")
    if not 0.0 <= float(confidence) <= 1.0:
        raise InvalidVerdict(f"confidence {confidence} is outside 0..1")
    reasoning = data.get("reasoning", "")
    if not isinstance(reasoning, str):
        raise InvalidVerdict("reasoning must be a string")
    return Verdict(is_client=is_client, confidence=float(confidence), reasoning=reasoning.strip()[:2000])


@dataclass(frozen=True)
class ClassifyInput:
    contact_id: int
    inbound_count: int
    system_instruction: str
    contents: list[dict[str, Any]]


def classify_input(session: Session, contact_id: int, *, history_limit: int,
                   business_name: str) -> ClassifyInput:
    contact = session.get(Contact, contact_id)
    assert contact is not None
    inbound = session.scalar(select(func.count(Message.id)).where(
        Message.contact_id == contact_id, Message.direction == "in",
        Message.status.notin_(("history", "skipped")))) or 0
    system = render("moderator", business_name=business_name)  # the same for every contact
    contents = to_contents(conversation_turns(session, contact_id, history_limit), contact_data_of(contact))
    return ClassifyInput(contact_id=contact_id, inbound_count=int(inbound), system_instruction=system,
                         contents=contents)


def ask_verdict(session_factory: Any, gemini: GeminiClient, data: ClassifyInput, model: str) -> Verdict | None:
    """Ask the model; an invalid answer is asked once more, then the contact stays undecided."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = gemini.generate(data.contents, system_instruction=data.system_instruction,
                                     response_schema=VERDICT_SCHEMA, model=model)
        except GeminiEmptyAnswerError as exc:
            log.warning("classify contact %s: attempt %d got no answer: %s", data.contact_id, attempt, exc)
            continue
        with session_factory() as session:
            record_usage(session, "classify", answer, data.contact_id)
        try:
            return parse_verdict(answer.text)
        except InvalidVerdict as exc:
            log.warning("classify contact %s: attempt %d gave an invalid verdict: %s",
                        data.contact_id, attempt, exc)
    return None


def decide(verdict: Verdict | None, inbound_count: int, *, min_messages: int, min_confidence: float,
           answer_undecided: bool = True) -> bool | None:
    """The verdict that counts now: at once when confident; a lead also once the contact wrote
    `min_messages` messages. "Not a lead" counts only when confident, unless answering undecided
    contacts is off (then it too counts after `min_messages`, as it always did)."""
    if verdict is None or verdict.is_client is None:
        return None
    if verdict.confidence >= min_confidence:
        return verdict.is_client
    if inbound_count >= min_messages and (verdict.is_client or not answer_undecided):
        return verdict.is_client
    return None


def gate(decided: bool | None, *, answer_undecided: bool) -> str:
    """What happens to the message: "answer" (a lead), "clarify" (undecided: answered neutrally,
    classified again next time), "wait" (undecided, strict mode) or "ignore" (not a lead)."""
    if decided is True:
        return "answer"
    if decided is False:
        return "ignore"
    return "clarify" if answer_undecided else "wait"


def store_verdict(session: Session, contact_id: int, verdict: Verdict | None, decided: bool | None) -> None:
    values: dict[str, Any] = {"classified_at": datetime.now(UTC)}
    if verdict is not None:
        values.update(classification_confidence=verdict.confidence, classification_reasoning=verdict.reasoning)
    else:
        values.update(classification_reasoning="no valid verdict from the model")
    if decided is not None:
        values["is_client"] = decided
    session.execute(update(Contact).where(Contact.id == contact_id, Contact.is_client.is_(None))
                    .values(**values))


def park_message(session: Session, message_id: int, status: str) -> None:
    """Take a message out of the answering path: `waiting` (undecided contact) or `ignored` (not a lead).

    A waiting message stays in the conversation and is answered together with a later one."""
    session.execute(update(Message).where(Message.id == message_id, Message.status == "received")
                    .values(status=status))
