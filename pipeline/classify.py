"""Stage `classify`: is this contact a potential client (true), not one (false), or unclear (null)?

Only a confident "not a lead" leaves a contact unanswered. An undecided one is answered in a
neutral, clarifying tone and classified again on its next message (`ANSWER_UNDECIDED=true`, the
default); with `ANSWER_UNDECIDED=false` its messages wait until a verdict counts.

The verdict is validated strictly: a wrong type, a confidence outside 0..1, invalid JSON or an
empty/blocked answer is invalid, asked once more, and then leaves the contact undecided.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from clients.gemini import Answer, GeminiClient, GeminiEmptyAnswerError, json_object
from db.models import Contact, Message
from db.session import SessionFactory, execute_core
from domain.states import Direction, MessageStatus, UsagePurpose
from pipeline.contacts import waiting_contact
from pipeline.history import CONTACT_NAMES, contact_data_of, conversation_turns, to_contents
from pipeline.inbound import park_message
from pipeline.locks import contact_turn
from pipeline.profile_settings import message_settings
from pipeline.usage import record_usage
from prompts import render
from settings import Settings

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
        data = json_object(text)
    except ValueError as exc:
        raise InvalidVerdict(str(exc)) from exc
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


# How many messages the selected contact wrote since we first started (what a verdict that is not
# confident waits for), as a column of the statement that reads the contact; and that statement.
# Built once (a statement built per call costs about as much Python as its round trip).
INBOUND_COUNT = select(func.count(Message.id)).where(
    Message.contact_id == Contact.id, Message.direction == Direction.IN,
    Message.status.notin_((MessageStatus.HISTORY, MessageStatus.SKIPPED))).scalar_subquery()
CONTACT_AND_COUNT = select(Contact.is_client, *CONTACT_NAMES, INBOUND_COUNT.label("inbound")).where(
    Contact.id == bindparam("contact_id"))


def classify_input(session: Session, contact_id: int, *, history_limit: int,
                   business_name: str, contact: Row[Any] | None = None) -> ClassifyInput:
    """What the moderator is asked. `contact`: the contact's `CONTACT_AND_COUNT` row when the caller
    read it already."""
    if contact is None:
        contact = execute_core(session, CONTACT_AND_COUNT, {"contact_id": contact_id}).one()
    system = render("moderator", business_name=business_name)  # the same for every contact
    contents = to_contents(conversation_turns(session, contact_id, history_limit), contact_data_of(contact))
    return ClassifyInput(contact_id=contact_id, inbound_count=int(contact.inbound), system_instruction=system,
                         contents=contents)


def ask_verdict(gemini: GeminiClient, data: ClassifyInput, model: str) -> tuple[Verdict | None, list[Answer]]:
    """Ask the model; an invalid answer is asked once more, then the contact stays undecided. Returns
    the verdict and every answer the model gave (their usage is written with the verdict)."""
    answers: list[Answer] = []
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = gemini.generate(data.contents, system_instruction=data.system_instruction,
                                     response_schema=VERDICT_SCHEMA, model=model)
        except GeminiEmptyAnswerError as exc:
            log.warning("classify contact %s: attempt %d got no answer: %s", data.contact_id, attempt, exc)
            continue
        answers.append(answer)
        try:
            return parse_verdict(answer.text), answers
        except InvalidVerdict as exc:
            log.warning("classify contact %s: attempt %d gave an invalid verdict: %s",
                        data.contact_id, attempt, exc)
    return None, answers


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


class Outcome(StrEnum):
    ANSWER = "answer"  # a lead
    CLARIFY = "clarify"  # undecided: answered neutrally, classified again next time
    WAIT = "wait"  # undecided, strict mode (ANSWER_UNDECIDED=false)
    IGNORE = "ignore"  # not a lead


def gate(decided: bool | None, *, answer_undecided: bool) -> Outcome:
    """What happens to the message, given the verdict that counts now."""
    if decided is True:
        return Outcome.ANSWER
    if decided is False:
        return Outcome.IGNORE
    return Outcome.CLARIFY if answer_undecided else Outcome.WAIT


def store_verdict(session: Session, contact_id: int, verdict: Verdict | None, decided: bool | None) -> None:
    values: dict[str, Any] = {"classified_at": datetime.now(UTC)}
    if verdict is not None:
        values.update(classification_confidence=verdict.confidence, classification_reasoning=verdict.reasoning)
    else:
        values.update(classification_reasoning="no valid verdict from the model")
    if decided is not None:
        values["is_client"] = decided
    columns = tuple(sorted(values))
    statement = _VERDICT_UPDATES.get(columns)
    if statement is None:  # a few shapes (with or without a verdict, decided or not), each built once
        statement = _VERDICT_UPDATES[columns] = update(Contact).where(
            Contact.id == bindparam("verdict_contact"), Contact.is_client.is_(None)).values(
            {column: bindparam(f"new_{column}") for column in columns})
    execute_core(session, statement, {"verdict_contact": contact_id,
                                      **{f"new_{column}": value for column, value in values.items()}})


_VERDICT_UPDATES: dict[tuple[str, ...], Update] = {}


def run_classify(sessions: SessionFactory, gemini: GeminiClient, message_id: int, settings: Settings) -> int | None:
    """Classify the contact of `message_id` (once it has a verdict that counts, never again) and say
    whether the chain goes on to `respond`: the message id, or None. One step per contact at a time:
    the contact's turn is taken inside the first transaction, before anything about the contact is
    read. The model is called outside any transaction; its usage is written with the verdict.
    Two transactions in all."""
    with ExitStack() as turn:
        with sessions() as session:
            settings = message_settings(session, message_id, settings)  # the business's own
            contact_id = waiting_contact(session, message_id)
            if contact_id is None:
                return None
            turn.enter_context(contact_turn(contact_id))
            contact = execute_core(session, CONTACT_AND_COUNT, {"contact_id": contact_id}).one()
            if contact.is_client is True:
                return message_id
            if contact.is_client is False:
                park_message(session, message_id, MessageStatus.IGNORED)
                return None
            data = classify_input(session, contact_id, history_limit=settings.history_limit,
                                  business_name=settings.business_name, contact=contact)
        verdict, answers = ask_verdict(gemini, data, settings.gemini_classify_model)
        decided = decide(verdict, data.inbound_count, min_messages=settings.classify_min_messages,
                         min_confidence=settings.classify_min_confidence,
                         answer_undecided=settings.answer_undecided)
        outcome = gate(decided, answer_undecided=settings.answer_undecided)
        with sessions() as session:
            for answer in answers:
                record_usage(session, UsagePurpose.CLASSIFY, answer, contact_id)
            store_verdict(session, contact_id, verdict, decided)
            log.info("classify contact %s: verdict %s (confidence %s, %d messages) -> %s", contact_id,
                     verdict.is_client if verdict else "invalid", verdict.confidence if verdict else "-",
                     data.inbound_count, outcome)
            if outcome in (Outcome.ANSWER, Outcome.CLARIFY):
                return message_id
            park_message(session, message_id,
                         MessageStatus.IGNORED if outcome == Outcome.IGNORE else MessageStatus.WAITING)
            return None
