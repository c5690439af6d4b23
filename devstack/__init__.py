"""The dev stack: what the demo, the benchmarks and the tests start on this machine (Redis,
PostgreSQL, the emulators, workers and beat). Not part of the product: the image leaves it out."""

from devstack.broker import PrivateRedis, redis_answers
from devstack.database import MACHINE_POSTGRES, EmbeddedPostgres, create_database, database_url, migrate
from devstack.processes import ROOT, free_port, wait_for
from devstack.stack import Stack, shared_emulators, shared_telegram
from devstack.workers import WorkerPool

__all__ = [
    "MACHINE_POSTGRES",
    "ROOT",
    "EmbeddedPostgres",
    "PrivateRedis",
    "Stack",
    "WorkerPool",
    "create_database",
    "database_url",
    "free_port",
    "migrate",
    "redis_answers",
    "shared_emulators",
    "shared_telegram",
    "wait_for",
]
