"""Celery configuration: queues, routes, rate limits, time limits and the beat schedule, in one place."""

from __future__ import annotations

from datetime import timedelta

from kombu import Queue

from settings import get_settings

_settings = get_settings()

# Stage -> (queue, rate limit per worker, soft time limit s, hard time limit s), in pipeline order.
# Each stage has its own queue so each scales and fails on its own; the per-worker rate limits
# protect the model quota; the global Wappi send limit is a Redis token bucket (pipeline/send.py).
STAGES: dict[str, tuple[str, str | None, int, int]] = {
    "pipeline.poll_dispatch": ("poll", None, 20, 30),
    "pipeline.poll": ("poll", None, 50, 60),
    "pipeline.recover": ("poll", None, 50, 60),
    "pipeline.sample_health": ("poll", None, 10, 20),
    "pipeline.ingest": ("ingest", None, 20, 30),
    "pipeline.transcribe": ("transcribe", _settings.model_rate_limit, 150, 180),
    "pipeline.classify": ("classify", _settings.model_rate_limit, 90, 120),
    "pipeline.respond": ("respond", _settings.model_rate_limit, 150, 180),
    "pipeline.send": ("send", None, 40, 60),
    "pipeline.followup_sweep": ("followup", None, 50, 60),
    "pipeline.follow_up_batch": ("followup", None, 50, 60),
    "pipeline.follow_up": ("followup", _settings.model_rate_limit, 90, 120),
}
# Every queue a worker may consume, derived from the stages (the Procfile and compose file match it:
# tests check).
QUEUES: tuple[str, ...] = tuple(dict.fromkeys(queue for queue, _, _, _ in STAGES.values()))


# Touches per `pipeline.follow_up_batch` task: the sweep publishes one task per batch, which fans
# out into one `pipeline.follow_up` each inside the worker (a Celery publish costs about 0.5 ms, so
# 10,000 touches published one by one held the sweep for 5-10 s).
FOLLOW_UP_BATCH = 100


def hard_limit(task_name: str) -> int:
    """A task's hard time limit in seconds: locks held while it runs are sized from it."""
    return STAGES[task_name][3]


# Seconds between two samples of the pool's load (queues, held tasks, dead letters) for the dashboard.
HEALTH_SAMPLE_INTERVAL = 30.0

# Delays longer than this are database rows read by a sweep, never countdowns (tasks.base caps them).
MAX_COUNTDOWN = 600


def retry_path(task_name: str, attempts: int) -> timedelta:
    """The longest one task can keep its work without failing for good: every attempt runs to its
    hard time limit, and every countdown between attempts is the longest one (a server's retry
    hint, such as Gemini's retryDelay, is a floor of the backoff; MAX_COUNTDOWN caps it)."""
    return timedelta(seconds=attempts * hard_limit(task_name) + (attempts - 1) * MAX_COUNTDOWN)

LONGEST_TASK = max(hard for _, _, _, hard in STAGES.values())
VISIBILITY_TIMEOUT = 3600
assert VISIBILITY_TIMEOUT > MAX_COUNTDOWN + LONGEST_TASK

broker_url = _settings.redis_url
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 25,
    "retry_on_timeout": True,
}
visibility_timeout = VISIBILITY_TIMEOUT

task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
result_backend = None
task_ignore_result = True

task_queues = [Queue(name) for name in QUEUES]
task_default_queue = "ingest"
task_create_missing_queues = False
task_routes = {name: {"queue": queue} for name, (queue, _, _, _) in STAGES.items()}
task_annotations = {
    name: {"rate_limit": rate, "soft_time_limit": soft, "time_limit": hard}
    for name, (_, rate, soft, hard) in STAGES.items()
}

# At-least-once delivery: a task is acknowledged after it ran, and every stage is idempotent.
task_acks_late = True
worker_prefetch_multiplier = 1
task_reject_on_worker_lost = True  # capped by the redelivery counter in tasks.base
worker_cancel_long_running_tasks_on_connection_loss = True
worker_soft_shutdown_timeout = 20
worker_enable_soft_shutdown_on_idle = True
# Task events (a PUBLISH per task state, from the worker and from every publisher) are off: they
# cost about a tenth of a worker's time per message (docs/benchmarks.md). Flower turns the workers'
# events on while it runs (its `enable_events`, on by default, repeated every few seconds), so its
# task views work whenever it is up; `celery -A tasks control enable_events` does it by hand.
worker_send_task_events = False
task_send_sent_event = False
worker_hijack_root_logger = False

timezone = "UTC"
enable_utc = True

redbeat_redis_url = _settings.effective_redbeat_url
redbeat_key_prefix = "assistant:redbeat:"
redbeat_lock_timeout = 30
beat_max_loop_interval = 5
beat_schedule = {
    "poll-dispatch": {
        "task": "pipeline.poll_dispatch",
        "schedule": _settings.poll_interval,
        # One poll task per due profile (tasks/poll.py); a dispatch that waited longer than its
        # interval is stale: drop it, the next one is coming.
        "options": {"queue": "poll", "expires": max(_settings.poll_interval, 1.0)},
    },
    "follow-up-sweep": {
        "task": "pipeline.followup_sweep",
        "schedule": 60.0,
        "options": {"queue": "followup", "expires": 60},
    },
    "recover-stranded": {
        "task": "pipeline.recover",
        "schedule": 60.0,
        "options": {"queue": "poll", "expires": 60},
    },
    "sample-health": {
        "task": "pipeline.sample_health",
        "schedule": HEALTH_SAMPLE_INTERVAL,
        "options": {"queue": "poll", "expires": HEALTH_SAMPLE_INTERVAL},
    },
}
