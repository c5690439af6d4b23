"""The base of every pipeline task: the retry policy, the redelivery cap and the dead-letter table.

Retry policy, by exception class (the one place it is written):
- transient (network errors, timeouts, 5xx, 429, database or Redis unavailable; of Wappi, Telegram,
  Gemini and an external agent platform alike): retried with exponential backoff and jitter, up to
  `max_attempts`; a service's own hint (Gemini's `retryDelay`, Telegram's and the platform's
  `retry_after`) is a floor of the backoff;
- `Defer` (pipeline.locks: a lock is busy, the send limit is reached): retried after its delay
  without using the retry budget;
- everything else (4xx rejections, validation errors, bugs): dead-lettered at once.
A task that runs out of attempts is dead-lettered too. The chain stops there and its rest is
stored with the row, so `celery -A tasks dlq replay` can resume it.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from celeryconfig import MAX_COUNTDOWN
from clients.agent_platform import AgentTransientError
from clients.channel import ChannelTransientError
from clients.gemini import GeminiTransientError
from db.session import SessionFactory, session_scope
from domain.states import MessageStatus
from infra.logging import log_context, mask_text
from infra.redis import get_redis, key
from pipeline.dead_letters import write_dead_letter
from pipeline.inbound import fail_message, mark_burst_due, reopen_message
from pipeline.locks import Defer
from pipeline.profile_settings import stage_message
from settings import get_settings

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    ChannelTransientError, GeminiTransientError, AgentTransientError, OperationalError, PoolTimeoutError,
    redis.ConnectionError, redis.TimeoutError, SoftTimeLimitExceeded,
)
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
MAX_REDELIVERIES = 3
# A stage start keeps a burst's stamp this recent (the previous stage's, moments ago) instead of
# rewriting every row of the burst; far inside the recovery sweep's two-minute margin.
STAGE_START_SLACK = timedelta(seconds=30)
COUNTER_TTL = 24 * 3600


def backoff(attempt: int, exc: BaseException | None = None) -> float:
    """Exponential backoff with full jitter; a server's own retry hint is a floor, MAX_COUNTDOWN a cap."""
    delay = min(BACKOFF_MAX, BACKOFF_BASE * (2 ** (attempt - 1)))
    delay = random.uniform(delay / 2, delay)
    hint = getattr(exc, "retry_after", None)
    if isinstance(hint, (int, float)) and hint > 0:
        delay = max(delay, float(hint) + random.uniform(0, 1))
    return min(delay, MAX_COUNTDOWN)


def _response_of(exc: BaseException) -> str:
    """What an outside service answered, when the error kept it (an external agent's run that
    failed or came back empty): the operator reads it in the dead letter."""
    excerpt = getattr(exc, "response_excerpt", "")
    return f"\nresponse: {excerpt}" if isinstance(excerpt, str) and excerpt else ""


class PipelineTask(Task):
    abstract = True
    max_retries = None  # the budget is TASK_MAX_ATTEMPTS, counted by us so deferrals are free
    typing = True
    id_field = "arg"  # what the first argument is called in log lines

    @property
    def max_attempts(self) -> int:
        return get_settings().max_attempts

    # True: the task stamps its start in its own first transaction (`stage_sessions`), not in one
    # of its own here.
    stamps_in_stage = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._check_redeliveries(args, kwargs)
        if not self.stamps_in_stage:
            self._mark_due(args, 0.0)
        try:
            with log_context(**{self.id_field: args[0] if args else None}):
                return self.run(*args, **kwargs)
        except (Retry, Ignore):
            raise
        except Defer as deferral:
            countdown = min(deferral.countdown, MAX_COUNTDOWN)
            log.info("%s deferred %.1fs: %s", self.name, countdown, deferral)
            self._mark_due(args, countdown)
            raise self.retry(countdown=countdown, max_retries=None) from None
        except TRANSIENT as exc:
            attempts = self._count_attempt()
            if attempts >= self.max_attempts:
                log.error("%s gave up after %d attempts: %s", self.name, attempts, exc)
                raise
            countdown = backoff(attempts, exc)
            log.warning("%s attempt %d failed (%s: %s); retrying in %.1fs",
                        self.name, attempts, type(exc).__name__, exc, countdown)
            self._mark_due(args, countdown)
            raise self.retry(exc=exc, countdown=countdown, max_retries=None) from None

    def mark_due(self, args: tuple[Any, ...], due: datetime) -> None:
        """Record that this task's work runs next at `due` (a stage start: now), so the recovery
        sweep knows it is held. Stage-specific; nothing by default."""

    def _mark_due(self, args: tuple[Any, ...], countdown: float) -> None:
        try:
            self.mark_due(args, datetime.now(UTC) + timedelta(seconds=countdown))
        except SQLAlchemyError as exc:  # bookkeeping: the stage's own work decides the outcome
            log.warning("%s: could not record when it is next due (%s: %s)", self.name, type(exc).__name__, exc)

    # -- counters in Redis, keyed by the task id (stable across retries) -----------------
    def is_last_attempt(self) -> bool:
        """True when a transient failure now would use the last attempt (and dead-letter the task)."""
        try:
            failed = int(get_redis().get(key("attempts", self.request.id)) or 0)
        except redis.RedisError:
            failed = int(self.request.retries)
        return failed + 1 >= self.max_attempts

    def _count_attempt(self) -> int:
        try:
            counter = key("attempts", self.request.id)
            pipe = get_redis().pipeline()
            pipe.incr(counter)
            pipe.expire(counter, COUNTER_TTL)
            return int(pipe.execute()[0])
        except redis.RedisError:
            return int(self.request.retries) + 1

    def _check_redeliveries(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A message that keeps killing its worker is redelivered forever under
        reject_on_worker_lost; after MAX_REDELIVERIES it goes to the dead-letter table."""
        if not (self.request.delivery_info or {}).get("redelivered"):
            return
        counter = key("deliveries", self.request.id, self.request.retries)
        try:
            pipe = get_redis().pipeline()
            pipe.incr(counter)
            pipe.expire(counter, COUNTER_TTL)
            deliveries = int(pipe.execute()[0])
        except redis.RedisError:
            return
        if deliveries > MAX_REDELIVERIES:
            problem = RuntimeError(f"redelivered {deliveries} times: the worker died running it each time")
            self.dead_letter(problem, args, kwargs, "")
            self.after_dead_letter(args, kwargs, problem)
            raise Ignore()

    # -- dead letters ------------------------------------------------------------------------
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # After a hard time limit Celery calls this in the parent process, where self.request is
        # empty: the task id comes from the arguments then.
        self.dead_letter(exc, tuple(args or ()), dict(kwargs or {}), str(einfo or ""), task_id=task_id)
        self.after_dead_letter(args, kwargs, exc)

    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        """Stage-specific bookkeeping once a task failed for good (e.g. mark the outbox row)."""

    def prepare_replay(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Undo `after_dead_letter` before `dlq replay` re-enqueues the task."""

    def dead_letter(self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any],
                    trace: str, task_id: str = "", *, part: str = "") -> None:
        """Write (or update) the task's dead letter. `part` names one item of the task that failed
        for good while the task went on (a voice note of a burst); it gets a letter of its own.
        Exception text, traceback and string arguments are masked like log lines: the table is
        stored, read by operators and copied around."""
        request = self.request
        task_id = request.id or task_id
        queue = (request.delivery_info or {}).get("routing_key") or ""
        now = datetime.now(UTC)
        try:
            attempts = int(get_redis().get(key("attempts", task_id)) or 0) or 1
        except redis.RedisError:
            attempts = int(request.retries) + 1
        letter_id = task_id or f"unknown-{now.timestamp()}"
        if part:
            letter_id = f"{letter_id}:{part}"[:64]
        values = {
            "task_name": self.name, "task_id": letter_id, "args": _masked(list(args)),
            "kwargs": _masked(kwargs), "queue": queue, "chain": list(request.chain or []) or None,
            "exception": mask_text(f"{type(exc).__name__}: {exc}" + _response_of(exc))[:4000],
            "traceback": mask_text(trace or "".join(traceback.format_exception(exc)))[-20000:],
            "attempts": attempts, "first_failed_at": now, "last_failed_at": now,
        }
        try:
            with session_scope() as session:
                write_dead_letter(session, values, attempts=attempts, now=now)
        except Exception:
            # The database is down too: the log line is then the only record, so it carries all.
            log.exception("could not write dead letter; task=%s id=%s args=%s chain=%s exception=%s",
                          self.name, request.id, args, request.chain, values["exception"])
            raise
        log.error("dead-lettered %s[%s] args=%s: %s", self.name, values["task_id"], values["args"],
                  values["exception"])


def stamp_stage_start(session: Session, message_id: int, now: datetime) -> None:
    """Stamp the burst of `message_id` as due now, unless the message, as this transaction already
    read it, carries a stamp under STAGE_START_SLACK old: then the previous stage's stamp (or the one
    its row was stored with) stands and no statement is sent. A stage's stamp is one UPDATE of the
    whole burst; the stored row's covers only itself, so an earlier message of the burst may keep
    an older stamp while this chain runs. If the sweep restarts such a message, its ingest finds
    the newer message and stops, or finds it answered with the burst: no second reply."""
    message = stage_message(session, message_id, read=False)
    if message is not None and message.status == MessageStatus.RECEIVED \
            and message.next_attempt_at is not None and now - STAGE_START_SLACK <= message.next_attempt_at <= now:
        return
    mark_burst_due(session, message_id, now, slack=STAGE_START_SLACK)


def _masked(value: Any) -> Any:
    """Strings inside task arguments masked like logs; ids (ints) stay, so replay still works."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {name: _masked(item) for name, item in value.items()}
    return value


class MessageStageTask(PipelineTask):
    """A stage whose first argument is a message id: a dead letter marks the message failed, so
    nothing sweeps it up again until an operator replays it."""

    id_field = "message_id"
    stamps_in_stage = True

    def stage_sessions(self, message_id: int) -> SessionFactory:
        """`session_scope` whose first transaction also stamps the burst as due now (the stage's
        start, for the recovery sweep): one transaction fewer per stage than a stamp of its own.
        The stamp is the transaction's last statement, so the rows it locks come after whatever the
        stage locked first (ingest: the contact, then its messages, as everywhere else)."""
        pending = [message_id]

        @contextmanager
        def sessions() -> Iterator[Session]:
            with session_scope() as session:
                yield session
                if pending:
                    stamp_stage_start(session, pending.pop(), datetime.now(UTC))

        return sessions

    def mark_due(self, args: tuple[Any, ...], due: datetime) -> None:
        message_id = args[0] if args else None
        if isinstance(message_id, int):
            with session_scope() as session:
                mark_burst_due(session, message_id, due)

    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        message_id = args[0] if args else None
        if isinstance(message_id, int):
            with session_scope() as session:
                fail_message(session, message_id)

    def prepare_replay(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        message_id = args[0] if args else None
        if isinstance(message_id, int):
            with session_scope() as session:
                reopen_message(session, message_id)
