"""Stage `followup`: start a chain when a lead goes silent after our reply, and write its touches.

Long delays are rows in `follow_ups` that a sweep reads every minute, never Celery countdowns.
A due touch is claimed atomically (`FOR UPDATE SKIP LOCKED`), and its outbox key is (chain, touch
number), so two sweeps at once never send a touch twice. A claimed touch whose job was lost is
claimed again once its lease ends; the lease outlasts the touch job's slowest retry path, and each
run of the job renews it, so a touch still being written is never claimed, and written, twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from celeryconfig import retry_path
from clients.agent_platform import AgentPlatformClient
from clients.gemini import Answer, GeminiClient, GeminiEmptyAnswerError
from db.models import Contact, FollowUp
from db.session import SessionFactory
from domain.answers import short_answer
from domain.clock import human_datetime
from domain.states import Author, FollowUpStatus, OutboxKind, StopReason, UsagePurpose
from domain.working_hours import WorkingHours
from kb.index import kb_base
from kb.retrieval import knowledge_for
from pipeline.handoff import agent_for, touch_from_agent
from pipeline.history import Turn, contact_data_of, conversation_turns, to_contents
from pipeline.outbox import follow_up_key, unsent_row, write_outbox
from pipeline.profile_settings import contact_settings, profile_settings
from pipeline.usage import record_usage
from prompts import render
from settings import Settings

log = logging.getLogger(__name__)

LEASE_MARGIN = timedelta(minutes=2)
# Starts the note that asks the model for a touch: a turn of ours, marked as not the customer's.
TOUCH_NOTE = "[служебная пометка, не от клиента] Клиент молчит."
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no", "unclear"]}},
    "required": ["answer"],
}
ANSWER_INSTRUCTION = (
    "Определи, что ответил клиент на предложение менеджера: согласие (yes), отказ (no) или ни то, ни другое "
    "(unclear: думает, сомневается, задаёт вопрос). Например, «нет проблем, давайте» — yes, «да нет, не надо» — no. "
    'Ответь JSON-объектом {"answer": "yes" | "no" | "unclear"}.'
)


def touch_due_at(hours: WorkingHours, anchor: datetime, intervals: tuple[int, ...], touch_number: int) -> datetime:
    """When touch `touch_number` (1-based) is due: its interval after the anchor, moved into working hours."""
    return hours.next_open(anchor + timedelta(hours=intervals[touch_number - 1]))


def start_chains(session: Session, now: datetime, hours_for: Callable[[int], WorkingHours],
                 intervals: tuple[int, ...], limit: int = 10_000) -> int:
    """Start a chain for each lead whose chat has ended with our reply for at least the first interval;
    its first touch falls within its own profile's working hours (`hours_for(profile_id)`)."""
    cutoff = now - timedelta(hours=intervals[0])
    # The bare column (not "IS true") lets PostgreSQL use the partial index on awaiting_follow_up.
    query = (select(Contact).where(Contact.awaiting_follow_up, Contact.last_message_at <= cutoff)
             .order_by(Contact.last_message_at).limit(limit).with_for_update(skip_locked=True))
    started = 0
    for contact in session.scalars(query):
        contact.awaiting_follow_up = False
        if contact.is_client is not True or contact.opted_out or contact.last_author != Author.BOT:
            continue
        if contact.paused_until is not None and contact.paused_until > now:
            continue
        anchor = contact.last_message_at or now
        row = insert_ignore_chain(session, contact.id, anchor,
                                  touch_due_at(hours_for(contact.profile_id), anchor, intervals, 1))
        started += 1 if row else 0
    return started


def insert_ignore_chain(session: Session, contact_id: int, anchor: datetime, first_due: datetime) -> int | None:
    """A new active chain, unless the contact has one (a partial unique index backs this up)."""
    if session.scalar(select(FollowUp.id).where(FollowUp.contact_id == contact_id,
                                                FollowUp.status == FollowUpStatus.ACTIVE)):
        return None
    chain = FollowUp(contact_id=contact_id, status=FollowUpStatus.ACTIVE, touch_number=0, anchor_at=anchor,
                     next_touch_at=first_due)
    session.add(chain)
    session.flush()
    return chain.id


def claim_due(session: Session, now: datetime, lease_for: timedelta, limit: int = 10_000) -> list[tuple[int, int]]:
    """Claim every due touch: (chain id, touch number). The lease pushes it out of the next sweep;
    one statement, and rows another sweep holds are skipped, so no touch is claimed twice."""
    lease = now + lease_for
    due = (select(FollowUp.id).where(FollowUp.status == FollowUpStatus.ACTIVE, FollowUp.next_touch_at <= now)
           .order_by(FollowUp.next_touch_at).limit(limit).with_for_update(skip_locked=True))
    claimed = session.execute(update(FollowUp).where(FollowUp.id.in_(due.scalar_subquery()))
                              .values(next_touch_at=lease)
                              .returning(FollowUp.id, FollowUp.touch_number)).all()
    return [(chain_id, touched + 1) for chain_id, touched in claimed]


def renew_claim(session: Session, chain_id: int, touch_number: int, until: datetime) -> None:
    """The touch's job is alive: keep its claim until `until`, so no sweep claims it again meanwhile."""
    session.execute(update(FollowUp).where(FollowUp.id == chain_id, FollowUp.status == FollowUpStatus.ACTIVE,
                                           FollowUp.touch_number == touch_number - 1,
                                           FollowUp.next_touch_at < until)
                    .values(next_touch_at=until))


@dataclass(frozen=True)
class TouchPlan:
    chain_id: int
    contact_id: int
    profile_id: int
    touch_number: int
    system_instruction: str
    contents: list[dict[str, Any]]
    last_client_text: str
    hours_since: int = 0


def stop(session: Session, chain_id: int, reason: StopReason) -> None:
    session.execute(update(FollowUp).where(FollowUp.id == chain_id, FollowUp.status == FollowUpStatus.ACTIVE)
                    .values(status=FollowUpStatus.STOPPED, stop_reason=reason, next_touch_at=None))


def reopen(session: Session, chain_id: int) -> None:
    """A chain stopped because its touch failed for good goes back to active (for a replay)."""
    session.execute(update(FollowUp).where(FollowUp.id == chain_id, FollowUp.stop_reason == StopReason.FAILED)
                    .values(status=FollowUpStatus.ACTIVE, stop_reason=None))


def plan_touch(session: Session, chain_id: int, touch_number: int, now: datetime, *, business_name: str,
               timezone: str, kb_budget: int, history_limit: int, kb_base: str = "") -> TouchPlan | StopReason | None:
    """What touch `touch_number` needs, a reason to stop the chain, or None when there is nothing to do."""
    chain = session.get(FollowUp, chain_id)
    if chain is None or chain.status != FollowUpStatus.ACTIVE or chain.touch_number != touch_number - 1:
        return None  # already sent, or the chain ended
    contact = session.get(Contact, chain.contact_id)
    assert contact is not None
    if contact.opted_out:
        return StopReason.OPTED_OUT
    if contact.paused_until is not None and contact.paused_until > now:
        return StopReason.HUMAN_REPLIED
    turns = conversation_turns(session, contact.id, history_limit)
    last_client = next((turn.text for turn in reversed(turns) if turn.role == "user"), "")
    last_inbound = contact.last_inbound_at or chain.anchor_at
    hours_since = max(0, int((now - last_inbound).total_seconds() // 3600))
    knowledge = knowledge_for(session, last_client, kb_budget, base=kb_base) or "(база знаний пуста)"
    # The system text holds only what we wrote or computed; the contact's names (a data block) and
    # the conversation (turns) are user content, so no customer text can act as instruction.
    system = render("follow_up", business_name=business_name, touch_number=str(touch_number),
                    current_datetime=human_datetime(now, timezone), hours_since=str(hours_since),
                    knowledge_base=knowledge)
    note = f"{TOUCH_NOTE} Напиши касание номер {touch_number}."
    contents = to_contents([*turns, Turn(role="user", text=note)], contact_data_of(contact))
    return TouchPlan(chain_id=chain_id, contact_id=contact.id, profile_id=contact.profile_id,
                     touch_number=touch_number, system_instruction=system, contents=contents,
                     last_client_text=last_client, hours_since=hours_since)


def answer_meaning(gemini: GeminiClient, text: str, model: str) -> tuple[str, Answer | None]:
    """"yes", "no", "maybe" or "unclear": a short exact answer at once, anything else by the model."""
    quick = short_answer(text)
    if quick is not None or not text.strip():
        return quick or "unclear", None
    try:
        answer = gemini.generate([{"role": "user", "parts": [{"text": text}]}],
                                 system_instruction=ANSWER_INSTRUCTION, response_schema=ANSWER_SCHEMA, model=model)
    except GeminiEmptyAnswerError:
        return "unclear", None
    try:
        meaning = json.loads(answer.text).get("answer")
    except (ValueError, AttributeError):
        meaning = None
    return (meaning if meaning in ("yes", "no") else "unclear"), answer


def commit_touch(session: Session, plan: TouchPlan, answer: Answer | None, now: datetime, hours: WorkingHours,
                 intervals: tuple[int, ...], text: str | None = None) -> int | None:
    """Write the touch to the outbox and move the chain on, atomically. Returns the outbox id."""
    # Locked, so a client message that stops the chain now cannot slip in between check and write.
    chain = session.get(FollowUp, plan.chain_id, with_for_update=True)
    key = follow_up_key(plan.chain_id, plan.touch_number)
    if chain is None or chain.status != FollowUpStatus.ACTIVE or chain.touch_number != plan.touch_number - 1:
        return unsent_row(session, key)  # written by an earlier run, or the chain ended
    if answer is not None:  # our model wrote it (an external agent's touch comes as `text`)
        record_usage(session, UsagePurpose.FOLLOW_UP, answer, plan.contact_id)
    chain.touch_number = plan.touch_number
    chain.last_touch_at = now
    if plan.touch_number >= len(intervals):
        chain.status, chain.stop_reason, chain.next_touch_at = \
            FollowUpStatus.COMPLETED, StopReason.COMPLETED, None
    else:
        chain.next_touch_at = touch_due_at(hours, chain.anchor_at, intervals, plan.touch_number + 1)
    body = text if text is not None else answer.text if answer is not None else ""
    return write_outbox(session, profile_id=plan.profile_id, contact_id=plan.contact_id, key=key,
                        kind=OutboxKind.FOLLOW_UP, body=body)


def claim_lease(settings: Settings) -> timedelta:
    """Longer than the slowest retry path (every attempt to its hard time limit, the longest
    countdown between them) of the batch task that enqueues the touch and of the touch's job, plus a
    margin."""
    return (retry_path("pipeline.follow_up_batch", settings.max_attempts)
            + retry_path("pipeline.follow_up", settings.max_attempts) + LEASE_MARGIN)


def sweep_once(session: Session, now: datetime, settings: Settings) -> list[tuple[int, int]]:
    """Start chains that are due to start and claim due touches; returns the claimed touches.
    One transaction: an idle sweep is two indexed queries."""
    hours: dict[int, WorkingHours] = {}

    def hours_for(profile_id: int) -> WorkingHours:
        if profile_id not in hours:
            hours[profile_id] = WorkingHours.from_settings(profile_settings(session, profile_id, settings))
        return hours[profile_id]

    started = start_chains(session, now, hours_for, settings.follow_up_intervals)
    claimed = claim_due(session, now, lease_for=claim_lease(settings))
    if started or claimed:
        log.info("follow-up sweep: %d chains started, %d touches due", started, len(claimed))
    return claimed


def run_touch(sessions: SessionFactory, gemini: GeminiClient, chain_id: int, touch_number: int, now: datetime,
              settings: Settings, agents: Callable[[Settings], AgentPlatformClient] = agent_for) -> int | None:
    """Write one touch to the outbox; returns its outbox id, or None when the chain stopped instead.
    The model is called outside any transaction."""
    with sessions() as session:
        renew_claim(session, chain_id, touch_number, now + claim_lease(settings))
        contact_id = session.scalar(select(FollowUp.contact_id).where(FollowUp.id == chain_id))
        business = contact_settings(session, contact_id, settings) if contact_id is not None else settings
    knowledge_base = kb_base(business.kb_dir, settings.kb_dir)
    settings = business  # the touch speaks for its own business, in its hours
    with sessions() as session:
        plan = plan_touch(session, chain_id, touch_number, now, business_name=settings.business_name,
                          timezone=settings.timezone, kb_budget=settings.kb_token_budget,
                          history_limit=settings.history_limit, kb_base=knowledge_base)
        if isinstance(plan, StopReason):
            stop(session, chain_id, plan)
            return None
    if plan is None:
        return None
    if touch_number == 1:
        # A chain follows up silence or hesitation, never a clear yes or no.
        meaning, answer = answer_meaning(gemini, plan.last_client_text, settings.gemini_classify_model)
        if meaning in ("yes", "no"):
            with sessions() as session:
                stop(session, chain_id, StopReason.CLIENT_SAID_YES if meaning == "yes" else StopReason.CLIENT_SAID_NO)
                if answer is not None:
                    record_usage(session, UsagePurpose.FOLLOW_UP, answer, plan.contact_id)
            return None
    if settings.reply_agent == "agno" and settings.follow_up_agent == "external":
        # The business's own agent writes the touch, in the chat's session on its platform.
        written = touch_from_agent(sessions, plan.contact_id, touch_number, len(settings.follow_up_intervals),
                                   plan.hours_since, settings, agents)
        with sessions() as session:
            return commit_touch(session, plan, None, now, WorkingHours.from_settings(settings),
                                settings.follow_up_intervals, text=written.text)
    answer = gemini.generate(plan.contents, system_instruction=plan.system_instruction)
    with sessions() as session:
        return commit_touch(session, plan, answer, now, WorkingHours.from_settings(settings),
                            settings.follow_up_intervals)
