"""Dead letters written by tasks.base through real workers, and the operator's replay of them with
the real `celery -A tasks dlq` command (a subprocess, reading committed rows)."""

from __future__ import annotations

from typing import Any

import pytest

from db.session import session_scope
from devstack import wait_for
from emulators.wappi import WappiEmulator
from pipeline.inbound import record_rejected
from tests.support.cli import dlq
from tests.support.db import a_contact, rows
from tests.support.delivery import SEND_PATHS
from tests.support.emulators import customer_says, replies_to
from tests.support.idle import wait_idle
from tests.support.model_calls import AGENT
from tests.support.polling import run_poll


@pytest.mark.usefixtures("workers", "clean")
def test_rejected_send_is_dead_lettered_and_replayed_exactly_once(wappi: WappiEmulator) -> None:
    run_poll()
    # Wappi refuses every send for now: a 4xx is not retried, it goes to the table at once.
    wappi.set_faults({"fail_next": 1000, "fail_status": 400, "paths": SEND_PATHS})
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

    wappi.set_faults()  # Wappi recovers
    replayed = dlq("replay", str(letter.id))
    assert replayed.returncode == 0, replayed.stderr
    wait_for(lambda: replies_to(wappi, "77066666666"), message="the replayed reply")
    assert rows("SELECT status FROM outbox")[0].status == "sent"

    again = dlq("replay", str(letter.id))  # a second replay must not send again
    assert again.returncode == 0, again.stderr
    wait_idle()
    assert len(replies_to(wappi, "77066666666")) == 1
    assert rows("SELECT replay_count FROM dead_letters")[0].replay_count == 2

    assert dlq("purge", "--older-than", "1h").stdout.strip() == "purged 0 dead letter(s)"
    assert dlq("purge", str(letter.id)).stdout.strip() == "purged 1 dead letter(s)"
    assert dlq("list").stdout.strip() == "no dead letters"


@pytest.mark.usefixtures("workers", "clean")
def test_model_rejection_stops_the_chain_and_replay_resumes_it(wappi: WappiEmulator, gemini: Any) -> None:
    run_poll()
    gemini.script([{"status": 400, "match": AGENT}])  # the sales agent gets a 400: not retried
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


@pytest.mark.usefixtures("clean")
def test_the_command_names_bad_arguments_and_does_not_replay_intake_letters() -> None:
    """No workers needed: the command refuses what it cannot do, and says why."""
    result = dlq("list", "--since", "yesterday-ish")
    assert result.returncode != 0 and "yesterday-ish" in result.stderr
    missing = dlq("show", "999999")
    assert missing.returncode != 0 and "no dead letter with id 999999" in missing.stderr
    assert dlq("replay").returncode != 0

    _contact_id, profile_id = a_contact("77066666667")
    with session_scope() as session:
        record_rejected(session, profile_id, "poll", {"id": "x" * 300, "body": "?"}, "id too long")
    letter = rows("SELECT id FROM dead_letters WHERE task_name = 'intake.message'")[0]

    every = dlq("replay", "--all")
    assert every.returncode == 0, every.stderr
    assert f"skipped dead letter {letter.id}" in every.stdout and "not a Celery task" in every.stdout
    one = dlq("replay", str(letter.id))
    assert one.returncode != 0 and "cannot be replayed" in one.stderr and "not a Celery task" in one.stderr
    assert rows("SELECT replay_count FROM dead_letters")[0].replay_count == 0
