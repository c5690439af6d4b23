"""What each MCP tool does, as plain functions over a session factory: the server's wrappers only find the
caller and turn `Refused` into a tool error, so all of this is tested without MCP.

Every function checks the caller's scope itself (a tool's annotations are hints to the client, not a
boundary) and reads only the profiles the caller may see: a profile it may not see is answered exactly
as one that does not exist. Every write is audited (mcp_server/audit.py), refusals included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

import redis
from pydantic import BaseModel
from sqlalchemy import Select, func, or_, select, tuple_
from sqlalchemy.orm import Session

from db.models import Contact, DeadLetter, FollowUp, Message, Outbox, Profile
from db.session import SessionFactory
from domain.phones import normalize_phone
from domain.sending import TELEGRAM_BOT_PER_MINUTE, day_start, warmup_rate
from domain.states import Author, FollowUpStatus, OutboxKind, Provider
from infra.logging import mask_text
from infra.redis import get_redis, key
from mcp_server import audit
from mcp_server.results import (
    ChatList,
    ChatSummary,
    ContactDetails,
    DeadLetterInfo,
    DeadLetterList,
    FollowUpInfo,
    FollowUpList,
    Gate,
    MessageItem,
    MessagePage,
    PauseResult,
    ProfileInfo,
    ProfileList,
    ReplayResult,
    SearchHit,
    SearchResult,
    SendResult,
    StatsEntry,
    StatsResult,
    classification_of,
)
from mcp_server.tokens import READ, WRITE, Caller
from pipeline.contacts import is_whitelisted
from pipeline.inbound import REJECTED_TASK
from pipeline.ops import stats
from pipeline.outbox import write_outbox
from pipeline.profile_settings import settings_for
from pipeline.send import never_wrote, proactive_sent_today
from settings import Settings, SettingsError

IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
MAX_PAUSE_HOURS = 24 * 30
DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# The tasks whose first argument is a message id (tasks.base.MessageStageTask).
MESSAGE_TASKS = frozenset({"pipeline.ingest", "pipeline.transcribe", "pipeline.classify", "pipeline.respond"})
FollowUpState = Literal["due", "active", "stopped", "all"]
ResultT = TypeVar("ResultT", bound=BaseModel)
QueryT = TypeVar("QueryT", bound=Select)  # any row shape: Select is variadic


class Refused(Exception):
    """The call is not allowed or cannot be done; the message is for the agent (a tool error)."""


class Effects(Protocol):
    """What a write does outside the database: the Celery queues."""

    def enqueue_send(self, outbox_id: int) -> None: ...

    def task_known(self, task_name: str) -> bool: ...

    def replay(self, task_name: str, args: list[Any], kwargs: dict[str, Any], queue: str | None,
               chain: list[Any] | None) -> str: ...


class CeleryEffects:
    """The pipeline's Celery app, imported on first use: a server that only reads never loads it."""

    def _app(self) -> Any:
        from tasks import app  # registers every task, so a dead letter's task can be found by name

        return app

    def enqueue_send(self, outbox_id: int) -> None:
        from tasks.app import enqueue_send

        enqueue_send(outbox_id)

    def task_known(self, task_name: str) -> bool:
        return task_name in self._app().tasks

    def replay(self, task_name: str, args: list[Any], kwargs: dict[str, Any], queue: str | None,
               chain: list[Any] | None) -> str:
        # As `celery -A tasks dlq replay` does: undo the stage's dead-letter bookkeeping, then re-enqueue.
        app = self._app()
        prepare = getattr(app.tasks[task_name], "prepare_replay", None)
        if prepare is not None:
            prepare(list(args), dict(kwargs))
        return str(app.send_task(task_name, args=list(args), kwargs=dict(kwargs), queue=queue or None,
                                 chain=chain or None).id)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ToolContext:
    sessions: SessionFactory
    settings: Settings
    redis: Callable[[], redis.Redis] = get_redis
    effects: Effects = field(default_factory=CeleryEffects)
    clock: Callable[[], datetime] = _now


# -- who may see what ----------------------------------------------------------------------------

def require(caller: Caller, scope: str, tool: str) -> None:
    if not caller.has(scope):
        raise Refused(f"{tool} needs the {scope!r} scope; this caller has "
                      f"{', '.join(sorted(caller.scopes)) or 'no scope'}")


def visible(query: QueryT, caller: Caller) -> QueryT:
    """The query limited to the caller's profiles (it must involve `Profile`)."""
    if caller.profiles is None:
        return query
    return query.where(Profile.profile_id.in_(sorted(caller.profiles)))


def profile_for(session: Session, caller: Caller, profile_id: str) -> Profile:
    profile = session.scalars(select(Profile).where(Profile.profile_id == profile_id.strip())).first()
    # One answer for a profile that does not exist and one the caller may not see: no existence leaks.
    if profile is None or not caller.may_see(profile.profile_id):
        raise Refused(f"no profile {profile_id!r} for this caller (list_profiles shows the ones it may see)")
    return profile


def contact_for(session: Session, profile: Profile, chat: str) -> Contact:
    """The profile's contact by its phone (WhatsApp digits, or a Telegram chat id), or by its chat id."""
    wanted = chat.strip()
    candidates = {wanted, normalize_phone(wanted)} if wanted else set()
    contact = session.scalars(select(Contact).where(
        Contact.profile_id == profile.id,
        or_(Contact.phone.in_(candidates), Contact.chat_id == wanted)).order_by(Contact.id)).first()
    if contact is None:
        raise Refused(f"no chat {chat!r} in profile {profile.profile_id} (list_chats shows its chats)")
    return contact


def effective(profile: Profile, base: Settings) -> Settings:
    try:
        return settings_for(profile, base)
    except SettingsError:
        return base  # a profile with a broken override runs on the global settings elsewhere too


def parse_since(value: str, now: datetime) -> datetime:
    """`30m`, `2h`, `7d` (that long ago) or an ISO date/time (UTC when no offset is given)."""
    text = value.strip()
    match = DURATION.match(text)
    if match:
        return now - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"since={value!r} is neither a duration like 2h / 7d nor an ISO date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- read tools ----------------------------------------------------------------------------------

def list_profiles(ctx: ToolContext, caller: Caller) -> ProfileList:
    require(caller, READ, "list_profiles")
    now = ctx.clock()
    with ctx.sessions() as session:
        profiles = list(session.scalars(visible(select(Profile), caller).order_by(Profile.id)))
        found = []
        for profile in profiles:
            settings = effective(profile, ctx.settings)
            per_minute, day = warmup_rate(settings.send_rate_per_minute, settings.warmup_schedule,
                                          profile.warmup_from, now)
            found.append(ProfileInfo(
                profile=profile.profile_id, provider=profile.provider, name=profile.name, active=profile.active,
                down_reason=profile.down_reason, down_since=profile.down_since,
                proactive_tripped_at=profile.proactive_tripped_at, send_rate_per_minute=per_minute, warmup_day=day))
    return ProfileList(profiles=found)


def _chat_summary(profile: Profile, contact: Contact, now: datetime) -> ChatSummary:
    paused = contact.paused_until is not None and contact.paused_until > now
    return ChatSummary(
        profile=profile.profile_id, chat=contact.phone, name=contact.display_name,
        classification=classification_of(contact.is_client), opted_out=contact.opted_out,
        paused_until=contact.paused_until, paused=paused, unreachable=contact.unreachable_at is not None,
        last_message_at=contact.last_message_at, last_author=contact.last_author,
        unanswered=contact.last_author == Author.CUSTOMER)


def list_chats(ctx: ToolContext, caller: Caller, *, profile: str | None = None, since: str | None = None,
               lead_only: bool = False, unanswered_only: bool = False, limit: int = 50) -> ChatList:
    require(caller, READ, "list_chats")
    now = ctx.clock()
    with ctx.sessions() as session:
        query = visible(select(Profile, Contact).join(Contact, Contact.profile_id == Profile.id), caller)
        if profile is not None:
            query = query.where(Profile.id == profile_for(session, caller, profile).id)
        if since is not None:
            query = query.where(Contact.last_message_at >= parse_since(since, now))
        if lead_only:
            query = query.where(Contact.is_client.is_(True))
        if unanswered_only:
            query = query.where(Contact.last_author == Author.CUSTOMER)
        query = query.order_by(Contact.last_message_at.desc().nulls_last(), Contact.id.desc()).limit(limit)
        chats = [_chat_summary(row_profile, contact, now) for row_profile, contact in session.execute(query).tuples()]
    return ChatList(chats=chats)


def get_messages(ctx: ToolContext, caller: Caller, *, profile: str, chat: str, before_id: int | None = None,
                 limit: int = 50) -> MessagePage:
    require(caller, READ, "get_messages")
    with ctx.sessions() as session:
        row_profile = profile_for(session, caller, profile)
        contact = contact_for(session, row_profile, chat)
        query = select(Message).where(Message.contact_id == contact.id)
        if before_id is not None:
            cursor = session.get(Message, before_id)
            if cursor is None or cursor.contact_id != contact.id:
                raise Refused(f"before_id {before_id} is no message of this chat")
            query = query.where(tuple_(Message.sent_at, Message.id) < tuple_(cursor.sent_at, cursor.id))
        newest_first = list(session.scalars(query.order_by(Message.sent_at.desc(), Message.id.desc())
                                            .limit(limit + 1)))
        page = newest_first[:limit]
        messages = [MessageItem(id=message.id, direction=message.direction, author=message.author, type=message.type,
                                text=message.text, transcription=message.transcription, is_voice=message.is_voice,
                                status=message.status, sent_at=message.sent_at) for message in reversed(page)]
        older = page[-1].id if len(newest_first) > limit else None
        return MessagePage(profile=row_profile.profile_id, chat=contact.phone, messages=messages,
                           older_before_id=older)


def _follow_up_info(profile: Profile, contact: Contact, chain: FollowUp, now: datetime) -> FollowUpInfo:
    due = chain.status == FollowUpStatus.ACTIVE and chain.next_touch_at is not None and chain.next_touch_at <= now
    return FollowUpInfo(id=chain.id, profile=profile.profile_id, chat=contact.phone, status=chain.status,
                        touch_number=chain.touch_number, due=due, next_touch_at=chain.next_touch_at,
                        last_touch_at=chain.last_touch_at, stop_reason=chain.stop_reason, updated_at=chain.updated_at)


def whitelisted(session: Session, profile: Profile, contact: Contact, settings: Settings) -> bool:
    """In the profile's whitelist, or in WHITELIST for the environment's profile (seeded into it at start)."""
    return is_whitelisted(session, profile.id, contact.phone) or (
        profile.profile_id == settings.wappi_profile_id and contact.phone in settings.whitelist)


def get_contact(ctx: ToolContext, caller: Caller, *, profile: str, chat: str) -> ContactDetails:
    require(caller, READ, "get_contact")
    now = ctx.clock()
    with ctx.sessions() as session:
        row_profile = profile_for(session, caller, profile)
        contact = contact_for(session, row_profile, chat)
        chain = session.scalars(select(FollowUp).where(FollowUp.contact_id == contact.id)
                                .order_by(FollowUp.id.desc()).limit(1)).first()
        count = int(session.scalar(select(func.count(Message.id)).where(Message.contact_id == contact.id)) or 0)
        return ContactDetails(
            profile=row_profile.profile_id, chat=contact.phone, chat_id=contact.chat_id,
            first_name=contact.first_name, full_name=contact.full_name, push_name=contact.push_name,
            business_name=contact.business_name, classification=classification_of(contact.is_client),
            classification_confidence=contact.classification_confidence,
            classification_reasoning=contact.classification_reasoning, classified_at=contact.classified_at,
            wrote_to_profile=not never_wrote(session, contact.id),
            whitelisted=whitelisted(session, row_profile, contact, ctx.settings), opted_out=contact.opted_out,
            paused_until=contact.paused_until, unreachable_at=contact.unreachable_at,
            unreachable_reason=contact.unreachable_reason, last_message_at=contact.last_message_at,
            last_author=contact.last_author, last_inbound_at=contact.last_inbound_at, messages=count,
            follow_up=None if chain is None else _follow_up_info(row_profile, contact, chain, now),
            created_at=contact.created_at)


def _like(text: str) -> str:
    """`text` as a literal ILIKE pattern: its own % and _ match themselves."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_messages(ctx: ToolContext, caller: Caller, *, profile: str, query: str, limit: int = 20) -> SearchResult:
    require(caller, READ, "search_messages")
    wanted = query.strip()
    if len(wanted) < 2:
        raise Refused("the query needs at least 2 characters")
    pattern = _like(wanted)
    with ctx.sessions() as session:
        row_profile = profile_for(session, caller, profile)
        found = session.execute(
            select(Message, Contact.phone).join(Contact, Contact.id == Message.contact_id)
            .where(Message.profile_id == row_profile.id,
                   or_(Message.text.ilike(pattern, escape="\\"), Message.transcription.ilike(pattern, escape="\\")))
            .order_by(Message.sent_at.desc(), Message.id.desc()).limit(limit)).tuples().all()
        hits = [SearchHit(profile=row_profile.profile_id, chat=phone, message_id=message.id,
                          direction=message.direction, author=message.author, sent_at=message.sent_at,
                          text=message.text, transcription=message.transcription) for message, phone in found]
    return SearchResult(hits=hits)


def _noon(day: date, timezone: str) -> datetime:
    """A moment inside `day` of the business's calendar, which is what `stats` counts."""
    return datetime.combine(day, time(12), ZoneInfo(timezone)).astimezone(UTC)


def get_stats(ctx: ToolContext, caller: Caller, *, profile: str | None = None, day: str | None = None,
              days: int = 1) -> StatsResult:
    require(caller, READ, "get_stats")
    now = ctx.clock()
    with ctx.sessions() as session:
        if profile is not None:
            targets: list[Profile | None] = [profile_for(session, caller, profile)]
        elif caller.sees_every_profile:
            targets = [None]  # every profile together, as /stats without ?profile
        else:
            targets = list(session.scalars(visible(select(Profile), caller).order_by(Profile.id)))
        entries = []
        for target in targets:
            timezone = (ctx.settings if target is None else effective(target, ctx.settings)).timezone
            try:
                last = date.fromisoformat(day) if day else now.astimezone(ZoneInfo(timezone)).date()
            except ValueError:
                raise Refused(f"day={day!r} is not a date like 2026-12-14") from None
            for offset in range(days - 1, -1, -1):
                figures = stats(session, ctx.redis(), timezone, now=_noon(last - timedelta(days=offset), timezone),
                                profile_id=None if target is None else target.id)
                if not caller.sees_every_profile:
                    # The queues and the dead-letter table are the whole pool's, every business's.
                    figures.pop("queues", None)
                    figures.pop("dead_letters", None)
                entries.append(StatsEntry(profile=None if target is None else target.profile_id, day=figures["day"],
                                          timezone=timezone, figures=figures))
    return StatsResult(entries=entries)


def list_follow_ups(ctx: ToolContext, caller: Caller, *, profile: str | None = None, state: FollowUpState = "all",
                    limit: int = 100) -> FollowUpList:
    require(caller, READ, "list_follow_ups")
    now = ctx.clock()
    with ctx.sessions() as session:
        query = visible(select(Profile, Contact, FollowUp).join(Contact, Contact.profile_id == Profile.id)
                        .join(FollowUp, FollowUp.contact_id == Contact.id), caller)
        if profile is not None:
            query = query.where(Profile.id == profile_for(session, caller, profile).id)
        if state == "due":
            query = query.where(FollowUp.status == FollowUpStatus.ACTIVE, FollowUp.next_touch_at <= now)
        elif state == "active":
            query = query.where(FollowUp.status == FollowUpStatus.ACTIVE)
        elif state == "stopped":
            query = query.where(FollowUp.status.in_((FollowUpStatus.STOPPED, FollowUpStatus.COMPLETED)))
        query = query.order_by(FollowUp.updated_at.desc(), FollowUp.id.desc()).limit(limit)
        follow_ups = [_follow_up_info(row_profile, contact, chain, now)
                      for row_profile, contact, chain in session.execute(query).tuples()]
    return FollowUpList(follow_ups=follow_ups)


def dead_letter_profile(session: Session, row: DeadLetter) -> int | None:
    """Our id of the profile a dead letter's work belonged to, from its task's arguments; None when it
    is the pool's (a sweep, the poll dispatch) or cannot be told."""
    first = row.args[0] if row.args else None
    if row.task_name == REJECTED_TASK:
        owner = (row.kwargs or {}).get("profile_id")
        return owner if isinstance(owner, int) else None
    if not isinstance(first, int):
        return None
    if row.task_name == "pipeline.send":
        return session.scalar(select(Outbox.profile_id).where(Outbox.id == first))
    if row.task_name in MESSAGE_TASKS:
        return session.scalar(select(Message.profile_id).where(Message.id == first))
    if row.task_name == "pipeline.follow_up":
        return session.scalar(select(Contact.profile_id).join(FollowUp, FollowUp.contact_id == Contact.id)
                              .where(FollowUp.id == first))
    if row.task_name == "pipeline.poll":
        return session.scalar(select(Profile.id).where(Profile.id == first))
    return None


def _not_replayable(effects: Effects, task_name: str) -> str | None:
    if task_name == REJECTED_TASK:
        return ("not a Celery task: a message the poll or webhook could not read or store; its masked payload is "
                "kept for inspection, there is nothing to re-run")
    if not effects.task_known(task_name):
        return f"unknown task {task_name}: no such Celery task is registered"
    return None


def _dead_letter_info(row: DeadLetter, profile: str | None, effects: Effects) -> DeadLetterInfo:
    why = _not_replayable(effects, row.task_name)
    return DeadLetterInfo(
        id=row.id, task=row.task_name, profile=profile, args=list(row.args or []), queue=row.queue,
        exception=mask_text(row.exception.splitlines()[0])[:500] if row.exception else "", attempts=row.attempts,
        first_failed_at=row.first_failed_at, last_failed_at=row.last_failed_at, replay_count=row.replay_count,
        replayed_at=row.replayed_at, replayable=why is None, not_replayable_because=why)


def _letter_owner(session: Session, caller: Caller, row: DeadLetter,
                  names: dict[int, str]) -> tuple[bool, str | None]:
    """Whether the caller may see the letter, and its profile's id. A pool-wide letter is seen only
    by a caller that sees every profile."""
    owner = dead_letter_profile(session, row)
    name = names.get(owner) if owner is not None else None
    if name is None:
        return caller.sees_every_profile, None
    return caller.may_see(name), name


def list_dead_letters(ctx: ToolContext, caller: Caller, *, task: str | None = None,
                      limit: int = 50) -> DeadLetterList:
    require(caller, READ, "list_dead_letters")
    found: list[DeadLetterInfo] = []
    with ctx.sessions() as session:
        names = dict(session.execute(select(Profile.id, Profile.profile_id)).tuples().all())
        query = select(DeadLetter).order_by(DeadLetter.last_failed_at.desc(), DeadLetter.id.desc())
        if task:
            query = query.where(DeadLetter.task_name == task)
        # Read in pages: a caller limited to some profiles skips the others' letters.
        offset = 0
        while len(found) < limit:
            rows = list(session.scalars(query.offset(offset).limit(500)))
            for row in rows:
                allowed, name = _letter_owner(session, caller, row, names)
                if allowed and len(found) < limit:
                    found.append(_dead_letter_info(row, name, ctx.effects))
            if len(rows) < 500:
                break
            offset += 500
    return DeadLetterList(dead_letters=found)


# -- write tools ---------------------------------------------------------------------------------

def _audited(ctx: ToolContext, caller: Caller, tool: str, arguments: dict[str, Any], dry_run: bool,
             work: Callable[[], tuple[ResultT, str]]) -> ResultT:
    """Run a write and audit it, whatever happens: its outcome, or the refusal."""
    try:
        result, outcome = work()
    except Refused as exc:
        audit.record(ctx.sessions, caller, tool, arguments, dry_run=dry_run, outcome=audit.REFUSED,
                     result={"error": str(exc)}, now=ctx.clock())
        raise
    except Exception as exc:
        audit.record(ctx.sessions, caller, tool, arguments, dry_run=dry_run, outcome=audit.FAILED,
                     result={"error": f"{type(exc).__name__}: {exc}"[:500]}, now=ctx.clock())
        raise
    audit.record(ctx.sessions, caller, tool, arguments, dry_run=dry_run, outcome=outcome,
                 result=result.model_dump(mode="json"), now=ctx.clock())
    return result


def _send_limit_gate(client: redis.Redis, profile: Profile, settings: Settings, now: datetime) -> Gate:
    """Whether the profile's send bucket holds a token now, read without taking one. The bucket's size
    and rate are worked out as the send stage does (pipeline/send.py `_Run.wait_for_limits`)."""
    per_minute, day = warmup_rate(settings.send_rate_per_minute, settings.warmup_schedule, profile.warmup_from, now)
    if profile.provider == Provider.TELEGRAM_BOT:
        per_minute = min(per_minute, TELEGRAM_BOT_PER_MINUTE)
    burst = min(settings.send_burst, per_minute) if per_minute < settings.send_rate_per_minute else settings.send_burst
    capacity, per_ms = max(1, burst), per_minute / 60_000.0
    limit = f"{per_minute} sends/min" + (f" (warm-up day {day})" if day is not None else "")
    try:
        tokens, at = client.hmget(key("send-bucket", profile.profile_id), ["tokens", "at"])
        seconds, micros = client.time()
    except redis.RedisError as exc:
        return Gate(name="send_limit", passed=False, blocking=False,
                    detail=f"{limit}; the bucket could not be read ({type(exc).__name__})")
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    available = float(capacity) if tokens is None else min(
        float(capacity), float(tokens) + max(0, now_ms - int(float(at or now_ms))) * per_ms)
    if available >= 1:
        return Gate(name="send_limit", passed=True, blocking=False,
                    detail=f"{limit}; a slot is free now (the send stage takes it when the message goes out)")
    return Gate(name="send_limit", passed=False, blocking=False,
                detail=f"{limit}; the next slot in {(1 - available) / per_ms / 1000:.1f} s: the message waits for it")


def _proactive_gate(session: Session, profile: Profile, settings: Settings, now: datetime) -> Gate:
    cap = settings.proactive_daily_cap
    sent = proactive_sent_today(session, profile.id, day_start(now, settings.timezone), besides=0)
    if profile.proactive_tripped_at is not None:
        return Gate(name="proactive_cap", passed=False, blocking=False,
                    detail=f"the daily cap on proactive messages tripped at "
                           f"{profile.proactive_tripped_at.isoformat()}: held until an operator resumes "
                           "(celery -A tasks profiles resume-proactive)")
    if sent >= cap:
        return Gate(name="proactive_cap", passed=False, blocking=False,
                    detail=f"{sent} of {cap} proactive messages went out today: this one would trip the cap "
                           "and be held")
    return Gate(name="proactive_cap", passed=True, blocking=False,
                detail=f"{sent} of {cap} proactive messages today (an MCP send is one)")


def send_gates(ctx: ToolContext, session: Session, profile: Profile, contact: Contact, body: str,
               now: datetime) -> list[Gate]:
    """Every gate a bot reply passes, for one message to one chat: the dry run reports them, the applied
    send is refused when a blocking one fails. The non-blocking ones (the profile down, the send limit,
    the daily cap) hold a message rather than refuse it; the send stage enforces them when it goes out."""
    settings = effective(profile, ctx.settings)
    paused = contact.paused_until is not None and contact.paused_until > now
    listed = whitelisted(session, profile, contact, ctx.settings)
    return [
        Gate(name="profile_active", passed=profile.active, blocking=True,
             detail="the profile is served" if profile.active else "the profile is disabled"),
        Gate(name="chat_wrote_first", passed=not never_wrote(session, contact.id), blocking=True,
             detail="the chat wrote to this profile; we only answer, writing first to strangers gets numbers banned"),
        Gate(name="not_whitelisted", passed=not listed, blocking=True,
             detail="a whitelisted number: the bot leaves it alone" if listed else "not in the whitelist"),
        Gate(name="not_opted_out", passed=not contact.opted_out, blocking=True,
             detail="the customer wrote STOP" if contact.opted_out else "the customer has not opted out"),
        Gate(name="not_paused", passed=not paused, blocking=True,
             detail=(f"a human answers this chat until {contact.paused_until.isoformat()}"
                     if paused and contact.paused_until else "no human pause")),
        Gate(name="reachable", passed=contact.unreachable_at is None, blocking=True,
             detail=(f"the customer cannot be reached: {contact.unreachable_reason or 'blocked the bot'}"
                     if contact.unreachable_at else "reachable")),
        Gate(name="text", passed=0 < len(body) <= settings.max_message_chars, blocking=True,
             detail=f"{len(body)} characters; 1 to {settings.max_message_chars} (MAX_MESSAGE_CHARS) allowed"),
        Gate(name="profile_up", passed=profile.down_reason is None, blocking=False,
             detail=(f"the profile cannot send ({profile.down_reason}): the message is held until it is back"
                     if profile.down_reason else "the profile can send")),
        _send_limit_gate(ctx.redis(), profile, settings, now),
        _proactive_gate(session, profile, settings, now),
    ]


def outbox_key(caller: Caller, idempotency_key: str) -> str:
    return f"mcp:{caller.label}:{idempotency_key}"


def send_message(ctx: ToolContext, caller: Caller, *, profile: str, chat: str, text: str, idempotency_key: str,
                 dry_run: bool = True) -> SendResult:
    arguments = {"profile": profile, "chat": chat, "text": text, "idempotency_key": idempotency_key,
                 "dry_run": dry_run}

    def work() -> tuple[SendResult, str]:
        require(caller, WRITE, "send_message")
        if not IDEMPOTENCY_KEY_RE.match(idempotency_key):
            raise Refused("idempotency_key must be 1-100 letters, digits and . _ : -")
        body, key_ = text.strip(), outbox_key(caller, idempotency_key)
        now = ctx.clock()
        with ctx.sessions() as session:
            row_profile = profile_for(session, caller, profile)
            contact = contact_for(session, row_profile, chat)
            gates = send_gates(ctx, session, row_profile, contact, body, now)
            existing = session.scalars(select(Outbox).where(Outbox.idempotency_key == key_)).first()
            if existing is not None and (existing.contact_id != contact.id or existing.body != body):
                raise Refused(f"idempotency_key {idempotency_key!r} was used for another message (outbox "
                              f"{existing.id}); a new message needs a new key")
            result = SendResult(
                dry_run=dry_run, would_send=all(gate.passed for gate in gates if gate.blocking),
                applied=existing is not None, duplicate=existing is not None, profile=row_profile.profile_id,
                chat=contact.phone, text=body, kind=OutboxKind.MCP, gates=gates,
                outbox_id=None if existing is None else existing.id,
                status=None if existing is None else existing.status)
            if dry_run:
                return result, audit.DRY_RUN
            if existing is not None:
                return result, audit.DUPLICATE  # the first call wrote and enqueued it
            refusing = [gate for gate in gates if gate.blocking and not gate.passed]
            if refusing:
                raise Refused("not sent: " + "; ".join(f"{gate.name}: {gate.detail}" for gate in refusing))
            unsent = write_outbox(session, profile_id=row_profile.id, contact_id=contact.id, key=key_,
                                  kind=OutboxKind.MCP, body=body)
            row = session.scalars(select(Outbox).where(Outbox.idempotency_key == key_)).one()
            written = result.model_copy(update={"applied": True, "outbox_id": row.id, "status": row.status})
        # Enqueued once the row is committed, as every stage does.
        if unsent is not None:
            ctx.effects.enqueue_send(unsent)
        return written, audit.APPLIED

    return _audited(ctx, caller, "send_message", arguments, dry_run, work)


def _set_pause(ctx: ToolContext, caller: Caller, tool: str, profile: str, chat: str,
               hours: float | None) -> PauseResult:
    arguments: dict[str, Any] = {"profile": profile, "chat": chat}
    if hours is not None:
        arguments["hours"] = hours

    def work() -> tuple[PauseResult, str]:
        require(caller, WRITE, tool)
        if hours is not None and not 0 < hours <= MAX_PAUSE_HOURS:
            raise Refused(f"hours must be more than 0 and at most {MAX_PAUSE_HOURS}")
        now = ctx.clock()
        with ctx.sessions() as session:
            row_profile = profile_for(session, caller, profile)
            contact = contact_for(session, row_profile, chat)
            previous = contact.paused_until
            # While paused, the respond stage leaves the chat's messages to a human and follow-ups stop.
            contact.paused_until = None if hours is None else now + timedelta(hours=hours)
            return PauseResult(profile=row_profile.profile_id, chat=contact.phone, paused_until=contact.paused_until,
                               previous_paused_until=previous), audit.APPLIED

    return _audited(ctx, caller, tool, arguments, False, work)


def pause_bot(ctx: ToolContext, caller: Caller, *, profile: str, chat: str, hours: float) -> PauseResult:
    return _set_pause(ctx, caller, "pause_bot", profile, chat, hours)


def resume_bot(ctx: ToolContext, caller: Caller, *, profile: str, chat: str) -> PauseResult:
    return _set_pause(ctx, caller, "resume_bot", profile, chat, None)


def replay_dead_letter(ctx: ToolContext, caller: Caller, *, dead_letter_id: int, dry_run: bool = True) -> ReplayResult:
    arguments = {"dead_letter_id": dead_letter_id, "dry_run": dry_run}

    def work() -> tuple[ReplayResult, str]:
        require(caller, WRITE, "replay_dead_letter")
        with ctx.sessions() as session:
            row = session.get(DeadLetter, dead_letter_id, with_for_update=True)
            names = dict(session.execute(select(Profile.id, Profile.profile_id)).tuples().all())
            allowed, name = (False, None) if row is None else _letter_owner(session, caller, row, names)
            if row is None or not allowed:
                raise Refused(f"no dead letter {dead_letter_id} for this caller (list_dead_letters shows them)")
            info = _dead_letter_info(row, name, ctx.effects)
            if dry_run:
                return ReplayResult(dry_run=True, applied=False, dead_letter=info, task_id=None), audit.DRY_RUN
            if info.not_replayable_because is not None:
                raise Refused(f"dead letter {row.id} cannot be replayed: {info.not_replayable_because}")
            # Every stage is idempotent and keyed by the same ids, so a second replay sends nothing twice.
            task_id = ctx.effects.replay(row.task_name, list(row.args or []), dict(row.kwargs or {}), row.queue,
                                         row.chain)
            row.replay_count += 1
            row.replayed_at = ctx.clock()
            session.flush()
            replayed = _dead_letter_info(row, name, ctx.effects)
            return ReplayResult(dry_run=False, applied=True, dead_letter=replayed, task_id=task_id), audit.APPLIED

    return _audited(ctx, caller, "replay_dead_letter", arguments, dry_run, work)

