"""Stage `respond`: the sales agent writes the answer (and maybe books a call) into the outbox.

The agent answers with a structured `{"reply", "call", "opt_out"}`, grounded in the knowledge
base. `opt_out` is true only when the customer asks us to stop writing to them; the contact is
then opted out instead and the one confirmation goes to the outbox. A short exact STOP never gets
here (`domain.answers` decides it at ingest); this field judges the longer messages that merely
mention stopping, at no extra call.

Whether a call is booked is decided here, in code: a requested time inside working hours books
it; any other time books nothing, and the agent is asked again with the next free slots that the
code computed, so that its reply offers them.

The model is called outside any transaction; the reply is then written to the outbox in the same
transaction that marks the customer message answered, so it happens exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session, aliased

from clients.agent_platform import AgentPlatformClient
from clients.gemini import Answer, GeminiClient, GeminiEmptyAnswerError, json_object
from db.models import Contact, Message, ScheduledCall
from db.session import SessionFactory, execute_core, insert_ignore
from domain.clock import human_datetime, human_slot
from domain.states import CallStatus, Direction, MessageStatus, OutboxKind, UsagePurpose
from domain.working_hours import WorkingHours, parse_requested
from kb.index import kb_base
from kb.retrieval import knowledge_for
from pipeline.contacts import opt_out_contact, waiting_contact
from pipeline.handoff import agent_for, agent_session_id, chat_of, customer_turn
from pipeline.history import CONTACT_NAMES, contact_data_of, conversation_turns, retrieval_query, to_contents
from pipeline.locks import contact_turn
from pipeline.outbox import opt_out_key, reply_key, unsent_row, write_outbox
from pipeline.profile_settings import message_settings, stage_message
from pipeline.usage import record_usage
from prompts import load, render
from prompts.markers import SLOTS_PREFIX
from settings import Settings

log = logging.getLogger(__name__)

AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reply": {"type": "string"},
        "call": {
            "type": ["object", "null"],
            "properties": {"at": {"type": "string"}},
            "required": ["at"],
        },
        "opt_out": {
            "type": "boolean",
            "description": "true only if the customer's last message asks us to stop writing to them",
        },
    },
    "required": ["reply", "call", "opt_out"],
}
REFUSALS = {
    "past": "это время уже прошло",
    "day_off": "в этот день мы не работаем",
    "outside_hours": "это нерабочее время",
}
ATTEMPTS = 2


class InvalidAgentAnswer(ValueError):
    """The agent's answer is not the JSON object it must be."""


@dataclass(frozen=True)
class AgentAnswer:
    reply: str
    call_at: str | None
    opt_out: bool = False


def parse_agent_answer(text: str) -> AgentAnswer:
    try:
        data = json_object(text)
    except ValueError as exc:
        raise InvalidAgentAnswer(str(exc)) from exc
    opt_out = data.get("opt_out") is True  # anything but a JSON true (missing, "yes", 1) is no opt-out
    reply = data.get("reply")
    if not opt_out and (not isinstance(reply, str) or not reply.strip()):
        raise InvalidAgentAnswer("no reply text")
    call = data.get("call")
    call_at = call.get("at") if isinstance(call, dict) and isinstance(call.get("at"), str) else None
    return AgentAnswer(reply=reply.strip() if isinstance(reply, str) else "", call_at=call_at, opt_out=opt_out)


@dataclass
class AgentResult:
    reply: str
    booked_at: datetime | None = None
    refused: str | None = None  # why a requested time was refused
    opt_out: bool = False  # the customer asked us to stop writing: no reply, a confirmation instead
    answers: list[Answer] = field(default_factory=list)  # every model call, for token accounting


def _ask(gemini: GeminiClient, contents: list[dict[str, Any]], system_instruction: str,
         result: AgentResult) -> AgentAnswer:
    problem: Exception | None = None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = gemini.generate(contents, system_instruction=system_instruction, response_schema=AGENT_SCHEMA)
        except GeminiEmptyAnswerError as exc:
            problem = exc
            log.warning("sales agent: attempt %d got no answer: %s", attempt, exc)
            continue
        result.answers.append(answer)
        try:
            return parse_agent_answer(answer.text)
        except InvalidAgentAnswer as exc:
            problem = exc
            log.warning("sales agent: attempt %d gave an invalid answer: %s", attempt, exc)
    raise InvalidAgentAnswer(f"no valid answer after {ATTEMPTS} attempts: {problem}")


def answer_customer(gemini: GeminiClient, contents: list[dict[str, Any]], system_instruction: str,
                    hours: WorkingHours, now: datetime) -> AgentResult:
    result = AgentResult(reply="")
    first = _ask(gemini, contents, system_instruction, result)
    result.reply = first.reply
    if first.opt_out:
        result.opt_out = True
        return result
    if first.call_at is None:
        return result
    requested = parse_requested(first.call_at, hours.timezone)
    reason = "unreadable" if requested is None else hours.refusal(requested, now)
    if reason is None:
        assert requested is not None
        result.booked_at = requested
        return result
    result.refused = reason
    slots = hours.next_slots(now)
    offered = "; ".join(human_slot(slot, hours.timezone) for slot in slots)
    # Only what code computed goes into the instruction: an unreadable time is not quoted back.
    asked = human_slot(requested, hours.timezone) if requested else "названное клиентом время"
    retry_instruction = (
        f"{system_instruction}\n\nКлиент просит созвон на {asked}, но {REFUSALS.get(reason, 'это время не подходит')}. "
        "Не подтверждай это время и не бронируй созвон (call = null). "
        "Вежливо предложи одно из свободных окон ниже.\n"
        f"{SLOTS_PREFIX} {offered}"
    )
    second = _ask(gemini, contents, retry_instruction, result)
    result.reply = second.reply
    return result


@dataclass(frozen=True)
class ReplyContext:
    message_id: int
    contact_id: int
    profile_id: int
    provider_message_id: str
    system_instruction: str
    contents: list[dict[str, Any]]


# What the answer needs of its contact, as a plain row (built once).
CONTACT_TO_ANSWER = select(Contact.id, Contact.is_client, *CONTACT_NAMES).where(
    Contact.id == bindparam("answered_contact"))


def reply_context(session: Session, message_id: int, *, history_limit: int, business_name: str,
                  current_datetime: str, working_hours: str, kb_budget: int,
                  max_chars: int = 4000, kb_base: str = "") -> ReplyContext | None:
    """What the model needs to answer `message_id`, or None if it needs no answer any more."""
    message = stage_message(session, message_id)
    if message is None or message.status != MessageStatus.RECEIVED:
        return None
    contact = execute_core(session, CONTACT_TO_ANSWER, {"answered_contact": message.contact_id}).one()
    turns = conversation_turns(session, contact.id, history_limit, max_chars)
    contents = to_contents(turns, contact_data_of(contact))
    if not contents:
        return None
    knowledge = knowledge_for(session, retrieval_query(turns), kb_budget, base=kb_base) or "(база знаний пуста)"
    # A lead gets the sales conversation; a contact the moderator could not yet classify is greeted
    # and asked what they need. The mode is chosen here, in code; no customer text is in either.
    approach = load("approach_lead" if contact.is_client is True else "approach_undecided").strip()
    system_instruction = render("sales_agent", approach=approach, business_name=business_name,
                                current_datetime=current_datetime, working_hours=working_hours,
                                knowledge_base=knowledge)
    return ReplyContext(message_id=message.id, contact_id=contact.id, profile_id=message.profile_id,
                        provider_message_id=message.provider_message_id,
                        system_instruction=system_instruction, contents=contents)


_later = aliased(Message)
_this = aliased(Message)
# The burst a message closes, marked answered in one statement (built once): the message itself
# while it waits for its answer, and the contact's earlier unanswered or waiting ones; nothing at all
# when a newer customer message waits (it supersedes this answer) or the message is answered already.
# The caller holds the contact's row lock, so this statement sees every message committed before it.
ANSWER_BURST = (
    update(Message).where(
        Message.contact_id == bindparam("burst_contact"), Message.id <= bindparam("answered_message"),
        or_(Message.status == MessageStatus.RECEIVED,
            and_(Message.status == MessageStatus.WAITING, Message.id < bindparam("answered_message"))),
        select(_this.id).where(_this.id == bindparam("answered_message"),
                               _this.status == MessageStatus.RECEIVED).exists(),
        ~select(_later.id).where(_later.contact_id == bindparam("burst_contact"), _later.direction == Direction.IN,
                                 _later.status == MessageStatus.RECEIVED,
                                 _later.id > bindparam("answered_message")).exists(),
    ).values(status=MessageStatus.ANSWERED).returning(Message.id)
    .execution_options(synchronize_session=False)
)


# The contact's row lock with its human pause, as a plain row (built once).
LOCK_CONTACT = select(Contact.paused_until).where(Contact.id == bindparam("locked_contact")).with_for_update()


def commit_reply(session: Session, context: ReplyContext, reply: str, answers: list[Answer], *,
                 booked_at: datetime | None = None, timezone: str = "UTC",
                 opt_out_text: str | None = None, call_requested: bool = False) -> int | None:
    """Write the reply (and a booked call) and mark the message answered, atomically. Returns the
    outbox id; a second run for the same message returns the first run's row and writes nothing.

    With `opt_out_text` (the model judged that the customer asks us to stop writing), the contact is
    opted out instead: no reply, one confirmation, whose outbox id is returned.

    A customer message that arrived while the model was answering supersedes the answer: nothing
    is written, and the newer message's turn answers everything."""
    locked = execute_core(session, LOCK_CONTACT, {"locked_contact": context.contact_id}).first()
    if locked is not None and locked.paused_until is not None and locked.paused_until > datetime.now(UTC):
        # A human answered from the phone while the model was working: the bot stays out of it.
        session.execute(update(Message).where(Message.id == context.message_id,
                                              Message.status == MessageStatus.RECEIVED)
                        .values(status=MessageStatus.PAUSED))
        return None
    if opt_out_text is None:
        # The usual case, in one statement: the message and the earlier unanswered ones of the
        # contact (they were in the model's context: this reply answers them too, so their own
        # chains stop instead of answering out of order) are marked answered, unless a newer
        # message supersedes the answer or the message is no longer waiting for it.
        answered = execute_core(session, ANSWER_BURST, {"burst_contact": context.contact_id,
                                                        "answered_message": context.message_id}).scalars().all()
        if context.message_id not in answered:
            if (newer := newer_message(session, context)) is not None:
                log.info("respond: message %s superseded by %s; its answer is dropped", context.message_id, newer)
                return None
            return unsent_row(session, reply_key(context.message_id))  # answered already
        return write_reply(session, context, reply, answers, booked_at=booked_at, timezone=timezone,
                           call_requested=call_requested)
    if (newer := newer_message(session, context)) is not None:
        log.info("respond: message %s superseded by %s; its answer is dropped", context.message_id, newer)
        return None
    claimed = session.execute(update(Message).where(
        Message.id == context.message_id, Message.status == MessageStatus.RECEIVED).values(
        status=MessageStatus.ANSWERED))
    won = claimed.rowcount == 1  # type: ignore[attr-defined]  # CursorResult of an UPDATE
    contact = session.get(Contact, context.contact_id) if locked is not None else None  # locked above
    if contact is not None:
        if not won:
            return unsent_row(session, opt_out_key(contact.id))
        message = session.get(Message, context.message_id)
        assert message is not None
        for answer in answers:
            record_usage(session, UsagePurpose.REPLY, answer, context.contact_id)
        log.info("respond: contact %s asked us to stop writing (the model's judgement); opted out",
                 context.contact_id)
        return opt_out_contact(session, contact, message, opt_out_text)
    return None


def newer_message(session: Session, context: ReplyContext) -> int | None:
    """A customer message of the contact newer than the one answered, still waiting for its turn."""
    return session.scalar(select(Message.id).where(
        Message.contact_id == context.contact_id, Message.direction == Direction.IN,
        Message.status == MessageStatus.RECEIVED, Message.id > context.message_id).limit(1))


def write_reply(session: Session, context: ReplyContext, reply: str, answers: list[Answer], *,
                booked_at: datetime | None, timezone: str, call_requested: bool) -> int | None:
    """The rest of `commit_reply` once the message is marked answered: usage, the call, the outbox row."""
    for answer in answers:
        record_usage(session, UsagePurpose.REPLY, answer, context.contact_id)
    if call_requested or booked_at is not None:  # counted by the dashboard's funnel
        session.execute(update(Message).where(Message.id == context.message_id)
                        .values(call_requested_at=datetime.now(UTC)))
    if booked_at is not None:
        insert_ignore(session, ScheduledCall, {
            "contact_id": context.contact_id, "scheduled_at": booked_at, "timezone": timezone,
            "status": CallStatus.BOOKED, "source_message_id": context.message_id,
            "notes": f"booked by the assistant from message {context.provider_message_id}",
        }, ["source_message_id"])
    return write_outbox(session, profile_id=context.profile_id, contact_id=context.contact_id,
                        key=reply_key(context.message_id), kind=OutboxKind.REPLY, body=reply,
                        reply_to=context.provider_message_id, source_message_id=context.message_id)


def answer_by_agent(sessions: SessionFactory, message_id: int, settings: Settings,
                    agents: Callable[[Settings], AgentPlatformClient] = agent_for) -> int | None:
    """The respond stage for a handed-off profile: the burst `message_id` closes goes to the
    external agent (outside any transaction), and its answer is written as the reply. Returns the
    outbox id to send, or None. One step per contact at a time, as for our own agent."""
    client = agents(settings)
    with sessions() as session:
        contact_id = waiting_contact(session, message_id)
    if contact_id is None:
        return None
    with contact_turn(contact_id):
        with sessions() as session:
            message = session.get(Message, message_id)
            if message is None or message.status != MessageStatus.RECEIVED:
                return None  # answered already
            text = customer_turn(session, contact_id, history_limit=settings.history_limit,
                                 max_chars=settings.max_message_chars)
            if not text:
                return None
            profile_id, chat = chat_of(session, contact_id)
            context = ReplyContext(message_id=message.id, contact_id=contact_id, profile_id=message.profile_id,
                                   provider_message_id=message.provider_message_id, system_instruction="",
                                   contents=[])
        session_id = agent_session_id(profile_id, chat)
        reply = client.run(settings.agent_id, text, session_id=session_id, user_id=session_id)
        log.info("respond contact %s: answered by the external agent %s (run %s)", contact_id, settings.agent_id,
                 reply.run_id)
        with sessions() as session:
            return commit_reply(session, context, reply.text, [], timezone=settings.timezone)


def run_respond(sessions: SessionFactory, gemini: GeminiClient, message_id: int, settings: Settings,
                now: datetime | None = None,
                agents: Callable[[Settings], AgentPlatformClient] = agent_for) -> int | None:
    """Answer the burst `message_id` closes: read the context, ask the agent (outside any
    transaction), and write the reply. Returns the outbox id to send, or None. One step per
    contact at a time. The business's facts, hours and knowledge base are its profile's."""
    now = now or datetime.now(UTC)
    with ExitStack() as turn:
        with sessions() as session:
            business = message_settings(session, message_id, settings)
            contact_id = waiting_contact(session, message_id)
            if contact_id is None:
                return None
            external = business.reply_agent == "agno"  # this business's replies are written by its own agent
            if not external:
                # The contact's turn is taken before anything about the contact is read: one
                # transaction reads the message, the settings and the context.
                turn.enter_context(contact_turn(contact_id))
                hours = WorkingHours.from_settings(business)
                context = reply_context(session, message_id, history_limit=business.history_limit,
                                        business_name=business.business_name,
                                        current_datetime=human_datetime(now, business.timezone),
                                        working_hours=f"{hours.describe()} ({business.timezone})",
                                        kb_budget=business.kb_token_budget, max_chars=business.max_message_chars,
                                        kb_base=kb_base(business.kb_dir, settings.kb_dir))
        if external:
            return answer_by_agent(sessions, message_id, business, agents)
        if context is None:  # answered already, or nothing to answer
            return None
        result = answer_customer(gemini, context.contents, context.system_instruction, hours, now)
        if result.refused:
            log.info("respond contact %s: requested call time refused (%s); slots offered",
                     contact_id, result.refused)
        with sessions() as session:
            return commit_reply(session, context, result.reply, result.answers, booked_at=result.booked_at,
                                timezone=business.timezone,
                                opt_out_text=business.opt_out_confirmation if result.opt_out else None,
                                call_requested=result.booked_at is not None or result.refused is not None)
