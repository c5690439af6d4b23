"""A voice note over MAX_AUDIO_BYTES, found out while streaming its download: the customer is
asked to write once, nothing is dead-lettered, and the worker never read the whole file."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.wappi import WappiEmulator
from settings import get_settings
from tests.conftest import wait_for
from tests.test_faults import Stack
from tests.test_pipeline import customer_says, replies_to, rows

CAP = 64 * 1024


@pytest.fixture()
def stack(clean: None, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, MAX_AUDIO_BYTES=str(CAP))
    try:
        yield stack
    finally:
        stack.close()


@pytest.mark.parametrize("shape", ["link", "b64"])
def test_an_oversized_voice_note_gets_one_fallback_and_no_dead_letter(stack: Stack, wappi: WappiEmulator,
                                                                      shape: str) -> None:
    stack.workers.start("all", concurrency=2)
    stack.send_task("pipeline.poll", "poll")  # first start: the profile and its history boundary
    wait_for(lambda: rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL"), message="the first poll")
    phone = "77310000001"
    audio = b"OggS" + b"\x00" * (CAP * 4)
    # The message does not say how big its file is (older payloads carry no fileLength), so only the
    # download itself can find out.
    unsized = {"body": {"mimetype": "audio/ogg; codecs=opus", "caption": "", "seconds": 3, "PTT": True},
               "media_info": {"size": 0}}
    voice_id = customer_says(wappi, phone, "", type="ptt", media_b64=base64.b64encode(audio).decode(),
                             media_shape=shape, overrides=unsized)
    stack.send_task("pipeline.poll", "poll")
    wait_for(lambda: rows("SELECT 1 FROM messages WHERE provider_message_id = :id AND status = 'failed'",
                          id=voice_id), timeout=60, message="the voice note to be given up")
    wait_for(lambda: rows("SELECT 1 FROM outbox WHERE status = 'sent'"), message="the fallback to be sent")
    replies = replies_to(wappi, phone)
    assert [(reply["reply_to"], reply["body"]) for reply in replies] == [
        (voice_id, get_settings().voice_fallback_text)]
    assert rows("SELECT count(*) FROM dead_letters")[0][0] == 0
