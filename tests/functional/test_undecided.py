"""An undecided contact through real workers: a first hello is answered with a clarifying reply.
The gate itself (every verdict, both modes): tests/unit/test_undecided.py."""

from __future__ import annotations

import pytest

from devstack import wait_for
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.idle import wait_idle
from tests.support.model_calls import AGENT, CLARIFY, system_texts
from tests.support.polling import first_start, run_poll


@pytest.mark.usefixtures("workers", "clean")
def test_a_first_hello_is_answered_neutrally(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    first_start()
    phone = "77700000001"
    customer_says(wappi, phone, "Здравствуйте")
    run_poll()
    wait_for(lambda: replies_to(wappi, phone), message="an answer to the hello")
    wait_idle()
    assert len(replies_to(wappi, phone)) == 1
    stored = rows("SELECT is_client, classified_at FROM contacts WHERE phone = :phone", phone=phone)[0]
    assert stored.is_client is None and stored.classified_at is not None  # still undecided
    prompts = system_texts(gemini, AGENT)
    assert len(prompts) == 1 and CLARIFY in prompts[0] and "SPIN" not in prompts[0]
    assert rows("SELECT status FROM messages WHERE direction = 'in'")[0].status == "answered"
