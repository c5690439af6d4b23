"""The deployment files run a worker for every queue of celeryconfig.QUEUES (derived from its
STAGES), and for no other: a stage added, renamed or moved to another queue fails here until the
Procfile and docker-compose.yml say so too."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from celeryconfig import QUEUES
from devstack import ROOT

WORKER = re.compile(r"celery -A tasks worker\b(?P<options>.*)")
QUEUE_OPTION = re.compile(r"\s-Q\s+(?P<queues>\S+)")


def procfile_workers() -> dict[str, list[str]]:
    """Process name -> the queues of its worker, for every worker line of the Procfile."""
    workers = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        worker = WORKER.search(command)
        if not line.startswith("#") and worker:
            workers[name.strip()] = worker_queues(name, worker["options"])
    return workers


def compose_workers() -> dict[str, list[str]]:
    """Service name -> the queues of its worker, for every worker service of docker-compose.yml."""
    workers = {}
    service = ""
    for line in (ROOT / "docker-compose.yml").read_text().splitlines():
        declared = re.match(r"^  (?P<name>[\w-]+):\s*$", line)
        if declared:
            service = declared["name"]
        worker = WORKER.search(line) if line.lstrip().startswith("command:") else None
        if worker:
            workers[service] = worker_queues(service, worker["options"])
    return workers


def worker_queues(name: str, options: str) -> list[str]:
    found = QUEUE_OPTION.search(options)
    assert found, f"worker {name} has no -Q: name its queues, so each scales on its own"
    return found["queues"].split(",")


@pytest.mark.parametrize("read", [procfile_workers, compose_workers], ids=["Procfile", "docker-compose.yml"])
def test_workers_cover_exactly_the_configured_queues(read: Callable[[], dict[str, list[str]]]) -> None:
    workers = read()
    assert workers, "no worker found"
    for name, queues in workers.items():
        unknown = [queue for queue in queues if queue not in QUEUES]
        assert not unknown, f"worker {name} consumes {unknown}, which celeryconfig.QUEUES does not have"
    consumed = [queue for queues in workers.values() for queue in queues]
    missing = [queue for queue in QUEUES if queue not in consumed]
    assert not missing, f"no worker consumes {missing}"


def test_compose_runs_the_procfile_workers() -> None:
    assert compose_workers() == procfile_workers()
