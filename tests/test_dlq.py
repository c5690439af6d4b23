"""Dead letters and replay through the real `celery -A tasks dlq` command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
import requests

from emulators.wappi import WappiEmulator
from tests.conftest import ROOT, run_poll, wait_for
from tests.test_pipeline import customer_says, replies_to, rows

pytestmark = pytest.mark.usefixtures("workers", "clean")


def dlq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", "dlq", *args], cwd=ROOT,
                          env={**os.environ}, capture_output=True, text=True, timeout=60)


def faults(wappi: WappiEmulator, **config: Any) -> None:
    requests.post(f"{wappi.url}/_emulator/faults", json=config, timeout=5).raise_for_status()


def test_rejected_send_is_dead_lettered_and_replayed_exactly_once(wappi: WappiEmulator) -> None:
    run_poll()
    # Wappi refuses every send for now: a 4xx is not retried, it goes to the table at once.
    faults(wappi, fail_next=1000, fail_status=400, paths=["message/send", "message/reply"])
    customer_says(wappi, "77066666666", "Здравствуйте, есть ли скидки?")
    run_poll()
    letters = wait_for(lambda: rows("SELECT id, task_name, args, queue, attempts, exception FROM dead_letters"),
                       message="a dead letter")
    assert len(letters) == 1
    letter = letters[0]
    assert letter.task_name == "pipeline.send" and letter.queue == "send" and letter.attempts == 1
    assert "WappiRejectedError" in letter.exception
    assert rows("SELECT status FROM outbox")[0].status == "failed"
    assert replies_to(wappi, "77066666666") == []

    listed = dlq("list", "--task", "pipeline.send", "--since", "1h")
    assert listed.returncode == 0 and "pipeline.send" in listed.stdout and "WappiRejectedError" in listed.stdout
    shown = dlq("show", str(letter.id))
    assert shown.returncode == 0 and '"queue": "send"' in shown.stdout and "Traceback" in shown.stdout

    faults(wappi)  # Wappi recovers
    replayed = dlq("replay", str(letter.id))
    assert replayed.returncode == 0, replayed.stderr
    wait_for(lambda: replies_to(wappi, "77066666666"), message="the replayed reply")
    assert rows("SELECT status FROM outbox")[0].status == "sent"

    again = dlq("replay", str(letter.id))  # a second replay must not send again
    assert again.returncode == 0, again.stderr
    time.sleep(3.0)
    assert len(replies_to(wappi, "77066666666")) == 1
    assert rows("SELECT replay_count FROM dead_letters")[0].replay_count == 2

    assert dlq("purge", "--older-than", "1h").stdout.strip() == "purged 0 dead letter(s)"
    assert dlq("purge", str(letter.id)).stdout.strip() == "purged 1 dead letter(s)"
    assert dlq("list").stdout.strip() == "no dead letters"


def test_model_rejection_stops_the_chain_and_replay_resumes_it(wappi: WappiEmulator, gemini: Any) -> None:
    run_poll()
    gemini.script([{"status": 400, "match": "БАЗА ЗНАНИЙ"}])  # the sales agent gets a 400: not retried
    customer_says(wappi, "77077777777", "Добрый день! Сколько стоит торт?")
    run_poll()
    letter = wait_for(lambda: rows("SELECT id, task_name, chain FROM dead_letters"), message="a dead letter")[0]
    assert letter.task_name == "pipeline.respond"
    assert letter.chain and "pipeline.send" in str(letter.chain)  # the rest of the chain is kept
    assert rows("SELECT status FROM messages")[0].status == "failed"
    assert replies_to(wappi, "77077777777") == []
    assert dlq("replay", "--all", "--task", "pipeline.respond").returncode == 0
    replies = wait_for(lambda: replies_to(wappi, "77077777777"), message="the reply after replay")
    assert len(replies) == 1 and "торт" in replies[0]["body"]
    assert dlq("replay", "--all").stdout.strip() == "nothing to replay"


def test_bad_arguments_are_named(wappi: WappiEmulator) -> None:
    result = dlq("list", "--since", "yesterday-ish")
    assert result.returncode != 0 and "yesterday-ish" in result.stderr
    missing = dlq("show", "999999")
    assert missing.returncode != 0 and "no dead letter with id 999999" in missing.stderr
    assert dlq("replay").returncode != 0




def test_intake_letters_are_not_replayed_and_say_why(wappi: WappiEmulator) -> None:
    from db.session import session_scope
    from pipeline.inbound import record_rejected

    run_poll()
    profile_id = rows("SELECT id FROM profiles")[0].id
    with session_scope() as session:
        record_rejected(session, profile_id, "poll", {"id": "x" * 300, "body": "?"}, "id too long")
    letter = rows("SELECT id FROM dead_letters WHERE task_name = 'intake.message'")[0]

    every = dlq("replay", "--all")
    assert every.returncode == 0, every.stderr
    assert f"skipped dead letter {letter.id}" in every.stdout and "not a Celery task" in every.stdout
    one = dlq("replay", str(letter.id))
    assert one.returncode != 0 and "cannot be replayed" in one.stderr and "not a Celery task" in one.stderr
    assert rows("SELECT replay_count FROM dead_letters")[0].replay_count == 0
