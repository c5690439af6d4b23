"""The Celery floor for bench/throughput.py: a bare five-task chain on the same Redis that makes the
same calls to the emulators as the pipeline does for one text message (the two model calls the
pipeline made for a warm-up message, captured from the Gemini emulator's log, and one Wappi reply),
so the emulators' own work loads the machine in both runs and the ratio shows the product's cost."""

from __future__ import annotations

import json
import os

import redis
import requests
from celery import Celery

app = Celery("floor", broker=os.environ["REDIS_URL"])
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True, task_acks_late=True,
                worker_prefetch_multiplier=1, worker_hijack_root_logger=False)

_http = requests.Session()  # one keep-alive session per process, as the product's clients have
_calls: list[dict] = json.loads(os.environ.get("FLOOR_MODEL_CALLS", "[]"))


@app.task(name="floor.step")
def step(value: str) -> str:
    return value


@app.task(name="floor.model")
def model(value: str, call: int) -> str:
    """The call the pipeline made at this point (classify: 0, respond: 1), to the Gemini emulator."""
    if _calls:
        response = _http.post(f"{os.environ['GEMINI_BASE_URL']}/v1beta/models/{_calls[call]['model']}:generateContent",
                              json=_calls[call]["body"], headers={"x-goog-api-key": os.environ["GEMINI_API_KEY"]},
                              timeout=10)
        response.raise_for_status()
        response.json()
    return value


@app.task(name="floor.done")
def done(value: str) -> str:
    """Reply to the customer's message through the Wappi emulator, as the send stage does."""
    if _calls:
        response = _http.post(f"{os.environ['WAPPI_BASE_URL']}/api/sync/message/reply",
                              params={"profile_id": os.environ["WAPPI_PROFILE_ID"]},
                              json={"body": "Здравствуйте! Торт можно заказать за два дня.", "message_id": value},
                              headers={"Authorization": os.environ["WAPPI_TOKEN"]}, timeout=10)
        response.raise_for_status()
    redis.Redis.from_url(os.environ["REDIS_URL"]).incr("floor:done")
    return value
