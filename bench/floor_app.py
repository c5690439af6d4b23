"""The Celery floor for bench/throughput.py: a bare five-task no-op chain on the same Redis."""

from __future__ import annotations

import os

import redis
from celery import Celery

app = Celery("floor", broker=os.environ["REDIS_URL"])
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True, task_acks_late=True,
                worker_prefetch_multiplier=1, worker_hijack_root_logger=False)


@app.task(name="floor.step")
def step(value: int) -> int:
    return value


@app.task(name="floor.done")
def done(value: int) -> int:
    redis.Redis.from_url(os.environ["REDIS_URL"]).incr("floor:done")
    return value
