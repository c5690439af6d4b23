"""The follow-up ladder: a beat sweep every minute, and one task per due touch."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from clients.gemini import get_client
from db.session import session_scope
from pipeline.followup import (
    answer_meaning,
    claim_due,
    commit_touch,
    plan_touch,
    renew_claim,
    reopen,
    start_chains,
    stop,
)
from settings import Settings, get_settings
from tasks.app import app
from tasks.base import PipelineTask
from tasks.respond import working_hours

log = logging.getLogger(__name__)


def claim_lease(settings: Settings) -> timedelta:
    """Longer than the touch job's slowest retry path (every attempt to its hard time limit, the
    longest countdown between them), plus a margin; each run of the job renews it, so a job that
    waited in its queue keeps the claim too."""
    from tasks.recover import MARGIN, retry_path

    return retry_path("pipeline.follow_up", settings.max_attempts) + MARGIN


def sweep_once(now: datetime) -> list[tuple[int, int]]:
    """Start chains that are due to start and claim due touches; returns the claimed touches."""
    settings = get_settings()
    hours = working_hours(settings)
    with session_scope() as session:  # one transaction: an idle sweep is two indexed queries
        started = start_chains(session, now, hours, settings.follow_up_intervals)
        claimed = claim_due(session, now, lease_for=claim_lease(settings))
    if started or claimed:
        log.info("follow-up sweep: %d chains started, %d touches due", started, len(claimed))
    return claimed


@app.task(base=PipelineTask, name="pipeline.followup_sweep")
def followup_sweep() -> int:
    claimed = sweep_once(datetime.now(UTC))
    with app.producer_or_acquire() as producer:  # one connection for thousands of publishes
        for chain_id, touch_number in claimed:  # enqueued after the claim committed
            follow_up.apply_async((chain_id, touch_number), producer=producer)
    return len(claimed)


def run_touch(chain_id: int, touch_number: int, now: datetime) -> int | None:
    """Write and queue one touch; returns its outbox id, or None when the chain stopped instead."""
    settings = get_settings()
    hours = working_hours(settings)
    gemini = get_client()
    with session_scope() as session:
        renew_claim(session, chain_id, touch_number, now + claim_lease(settings))
    with session_scope() as session:
        plan = plan_touch(session, chain_id, touch_number, now, business_name=settings.business_name,
                          timezone=settings.timezone, kb_budget=settings.kb_token_budget,
                          history_limit=settings.history_limit)
        if isinstance(plan, str):
            stop(session, chain_id, plan)
            return None
    if plan is None:
        return None
    if touch_number == 1:
        # A chain follows up silence or hesitation, never a clear yes or no.
        meaning, answer = answer_meaning(gemini, plan.last_client_text, settings.gemini_classify_model)
        if meaning in ("yes", "no"):
            with session_scope() as session:
                stop(session, chain_id, f"client_said_{meaning}")
                if answer is not None:
                    from pipeline.conversation import record_usage

                    record_usage(session, "follow_up", answer, plan.contact_id)
            return None
    answer = gemini.generate(plan.contents, system_instruction=plan.system_instruction)
    with session_scope() as session:
        return commit_touch(session, plan, answer, now, hours, settings.follow_up_intervals)


class FollowUpTask(PipelineTask):
    """A touch that failed for good stops its chain, instead of being claimed again every lease."""

    id_field = "chain_id"

    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        chain_id = args[0] if args else None
        if isinstance(chain_id, int):
            with session_scope() as session:
                stop(session, chain_id, "failed")

    def prepare_replay(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        chain_id = args[0] if args else None
        if isinstance(chain_id, int):
            with session_scope() as session:
                reopen(session, chain_id)


@app.task(base=FollowUpTask, name="pipeline.follow_up")
def follow_up(chain_id: int, touch_number: int) -> int | None:
    from tasks.send import send

    outbox_id = run_touch(chain_id, touch_number, datetime.now(UTC))
    if outbox_id is not None:
        # Touches are sent from their own queue, so a live reply never waits behind thousands of
        # them on `send`; the send limit is shared, and a touch yields while replies wait.
        send.apply_async((outbox_id,), queue="followup")
    return outbox_id
