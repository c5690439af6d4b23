"""Stage `sample_health`: every 30 s, the pool's load (each queue's depth, the tasks held by workers,
the dead letters) as one row of `health_samples`, kept 14 days: the dashboard's health over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import DeadLetter, HealthSample
from db.session import insert_ignore

KEEP = timedelta(days=14)
# kombu's Redis transport keeps a queue's priorities in lists named `<queue>\x06\x16<priority>`.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths(redis_client: redis.Redis, queues: tuple[str, ...]) -> dict[str, int]:
    """Messages waiting in each queue (every priority)."""
    pipe = redis_client.pipeline(transaction=False)
    for queue in queues:
        for suffix in PRIORITY_SUFFIXES:
            pipe.llen(f"{queue}{suffix}")
    lengths = [int(length) for length in pipe.execute()]
    step = len(PRIORITY_SUFFIXES)
    return {queue: sum(lengths[index * step:(index + 1) * step]) for index, queue in enumerate(queues)}


def slot_of(moment: datetime, interval: float) -> datetime:
    """The start of the sampling slot `moment` falls in: a second run in the same slot is a no-op."""
    seconds = int(moment.timestamp() // interval * interval)
    return datetime.fromtimestamp(seconds, UTC)


def take_sample(session: Session, redis_client: redis.Redis, queues: tuple[str, ...], now: datetime,
                interval: float, *, own_tasks: int = 0) -> bool:
    """Record the pool's load now, once per slot, and drop samples older than KEEP. True when a row
    was written. `own_tasks`: held tasks not to count (the sampling task itself, acknowledged late)."""
    depths = queue_depths(redis_client, queues)
    held = max(int(redis_client.hlen("unacked")) - own_tasks, 0)  # kombu's hash of delivered, unacked tasks
    dead_letters = int(session.scalar(select(func.count(DeadLetter.id))) or 0)
    written = insert_ignore(session, HealthSample, {"sampled_at": slot_of(now, interval), "queue_depths": depths,
                                                    "held": held, "dead_letters": dead_letters}, ["sampled_at"])
    session.execute(delete(HealthSample).where(HealthSample.sampled_at < now - KEEP))
    return written is not None
