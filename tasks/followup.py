"""Stage `followup`: a beat sweep every minute, and one task per due touch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celeryconfig import FOLLOW_UP_BATCH
from clients.gemini import get_client
from db.session import session_scope
from domain.states import StopReason
from pipeline.followup import reopen, run_touch, stop, sweep_once
from settings import get_settings
from tasks.app import app, enqueue_send
from tasks.base import PipelineTask


@app.task(base=PipelineTask, name="pipeline.followup_sweep")
def followup_sweep() -> int:
    with session_scope() as session:
        claimed = sweep_once(session, datetime.now(UTC), get_settings())
    enqueue_touches(claimed)  # after the claim committed
    return len(claimed)


def enqueue_touches(claimed: list[tuple[int, int]]) -> None:
    """One `follow_up_batch` task per FOLLOW_UP_BATCH claimed touches, on one connection. A batch
    that is lost leaves its touches claimed until the lease ends; the next sweep claims them again."""
    with app.producer_or_acquire() as producer:
        for start in range(0, len(claimed), FOLLOW_UP_BATCH):
            follow_up_batch.apply_async(([list(touch) for touch in claimed[start:start + FOLLOW_UP_BATCH]],),
                                        producer=producer)


@app.task(base=PipelineTask, name="pipeline.follow_up_batch")
def follow_up_batch(touches: list[list[int]]) -> int:
    """Fan a batch out into one `follow_up` task per touch (each keeps its own retries and the model
    rate limit). Run twice, it enqueues its touches twice: a touch's job is idempotent (it renews
    only its own claim, and the touch's outbox key is its chain and number)."""
    with app.producer_or_acquire() as producer:
        for chain_id, touch_number in touches:
            follow_up.apply_async((chain_id, touch_number), producer=producer)
    return len(touches)


class FollowUpTask(PipelineTask):
    """A touch that failed for good stops its chain, instead of being claimed again every lease."""

    id_field = "chain_id"

    def after_dead_letter(self, args: Any, kwargs: Any, exc: BaseException) -> None:
        chain_id = args[0] if args else None
        if isinstance(chain_id, int):
            with session_scope() as session:
                stop(session, chain_id, StopReason.FAILED)

    def prepare_replay(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        chain_id = args[0] if args else None
        if isinstance(chain_id, int):
            with session_scope() as session:
                reopen(session, chain_id)


@app.task(base=FollowUpTask, name="pipeline.follow_up")
def follow_up(chain_id: int, touch_number: int) -> int | None:
    outbox_id = run_touch(session_scope, get_client(), chain_id, touch_number, datetime.now(UTC), get_settings())
    # Touches are sent from their own queue; the send limit is shared, and a touch yields while
    # replies wait.
    enqueue_send(outbox_id, queue="followup")
    return outbox_id
