"""Stage `sample_health`: beat's 30 s sample of the pool's load, for the dashboard's health over time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from celeryconfig import HEALTH_SAMPLE_INTERVAL, QUEUES
from db.session import session_scope
from infra.redis import get_redis
from pipeline.health_samples import take_sample
from tasks.app import app
from tasks.base import TRANSIENT, PipelineTask

log = logging.getLogger(__name__)


@app.task(base=PipelineTask, name="pipeline.sample_health")
def sample_health() -> bool:
    try:
        with session_scope() as session:
            # This task's own message is held (acks_late) while it runs: not the pool's load.
            return take_sample(session, get_redis(), QUEUES, datetime.now(UTC), HEALTH_SAMPLE_INTERVAL, own_tasks=1)
    except TRANSIENT as exc:
        # Never retried: the next sample is 30 s away, and a gap in the chart says what happened.
        log.warning("health sample skipped (%s)", type(exc).__name__)
        return False
