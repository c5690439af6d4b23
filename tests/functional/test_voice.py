"""Voice notes end to end through the workers (and the web app): a note is transcribed and answered,
a webhook's note and the poll's give one answer from the inline audio, and a note that cannot be
transcribed (its download keeps failing, or it is too large) gets one "please write" and costs
only itself. Which failures are retried, the burst around a failed note, crossed downloads and the
cap's two shapes: tests/unit/test_voice.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack import wait_for
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from settings import get_settings
from tasks.recover import recover
from tests.support.cli import dlq
from tests.support.db import rows
from tests.support.emulators import customer_says, replies_to
from tests.support.env import GEMINI_KEY, PROFILE_ID, WAPPI_TOKEN
from tests.support.env import WEBHOOK_SECRET as SECRET
from tests.support.idle import wait_idle
from tests.support.intake import downloads, voice_note
from tests.support.polling import run_poll
from tests.support.stack import Stack

CAP = 64 * 1024


def first_start(stack: Stack) -> None:
    stack.send_task("pipeline.poll", "poll")  # the profile and its history boundary
    wait_for(lambda: rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL"), message="the first poll")


@pytest.mark.usefixtures("workers", "clean")
def test_a_voice_note_is_transcribed_and_answered(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    voice_note(wappi, "77200000001", "Здравствуйте, сколько стоит торт Медовик?", media_shape="link")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, "77200000001"), message="the reply to the voice note")
    wait_idle()
    assert len(replies_to(wappi, "77200000001")) == 1
    stored = rows("SELECT type, is_voice, transcription, status FROM messages WHERE direction = 'in'")[0]
    assert (stored.type, stored.is_voice, stored.status) == ("ptt", True, "answered")
    assert stored.transcription == "Здравствуйте, сколько стоит торт Медовик?"
    assert "Медовик" in replies[0]["body"] and "9 900 ₸" in replies[0]["body"]
    # The audio went inline to the transcription model; the agent saw the text, marked as a transcript.
    calls = gemini.requests_log()
    transcription_call = next(call for call in calls if "inline" in json.dumps(call["body"]).lower())
    assert transcription_call["model"] == "gemini-3.5-flash"
    assert calls[-1]["body"]["contents"][-1]["parts"][-1]["text"].startswith("[голосовое сообщение, расшифровка]")
    assert len(downloads(wappi)) == 1  # downloaded through Wappi by the worker, never carried in a task


@pytest.mark.usefixtures("workers", "clean")
def test_a_webhook_voice_note_and_the_poll_give_one_answer_from_its_inline_audio(
        web: str, wappi: WappiEmulator) -> None:
    run_poll()
    requests.post(f"{wappi.url}/_emulator/webhook", json={"profile_id": PROFILE_ID,
                                                           "url": f"{web}/webhooks/wappi", "secret": SECRET},
                  timeout=5).raise_for_status()
    try:
        # The webhook carries the audio as base64 in `body`; its file_link has expired, and so
        # has Wappi's copy (media/download answers "download media error").
        voice_id = voice_note(wappi, "77300000001", "Сколько стоит торт Медовик?", media_expired=True)
        replies = wait_for(lambda: replies_to(wappi, "77300000001"), message="the reply to the voice note")
        run_poll()  # the poll sees the same message: deduplicated, nothing downloaded
        wait_idle()
    finally:
        requests.post(f"{wappi.url}/_emulator/webhook", json={"profile_id": PROFILE_ID, "url": "", "secret": ""},
                      timeout=5)
    assert len(replies_to(wappi, "77300000001")) == 1
    assert replies[0]["reply_to"] == voice_id and "Медовик" in replies[0]["body"]
    assert replies[0]["body"] != get_settings().voice_fallback_text
    stored = rows("SELECT transcription, status FROM messages WHERE direction = 'in'")
    assert [(row.transcription, row.status) for row in stored] == [("Сколько стоит торт Медовик?", "answered")]
    assert downloads(wappi) == []
    assert rows("SELECT count(*) FROM dead_letters")[0][0] == 0
    assert rows("SELECT count(*) FROM voice_media WHERE audio IS NOT NULL")[0][0] == 0  # kept until transcribed


def test_a_voice_note_whose_download_keeps_failing_costs_only_itself(clean: None, wappi: WappiEmulator,
                                                                     tmp_path: Path) -> None:
    """Transient failures (5xx) until the attempts run out: the note gets one "please write" and a
    dead letter of its own (masked like the logs), the text of its burst is answered, and the
    recovery sweep finds nothing left to restart. A refusal (4xx) ends the same way, only at once."""

    stack = Stack(tmp_path, TASK_MAX_ATTEMPTS="2")
    try:
        stack.workers.start("all", concurrency=2)
        first_start(stack)
        phone = "77300000006"
        detail = f"download media error for 77011234567 with token {WAPPI_TOKEN} and key={GEMINI_KEY}-9x"
        voice_id = voice_note(wappi, phone, "не важно", media_shape="b64")
        text_id = customer_says(wappi, phone, "А торты на заказ делаете?")
        wappi.set_media_faults({"fail_message_ids": [voice_id], "fail_status": 503, "fail_detail": detail})
        stack.send_task("pipeline.poll", "poll")
        wait_for(lambda: len(replies_to(wappi, phone)) >= 2, message="the fallback and the answer")
        wait_idle(stack.redis.url)
        replies = {reply["reply_to"]: reply["body"] for reply in replies_to(wappi, phone)}
        assert len(replies_to(wappi, phone)) == 2
        assert replies[voice_id] == get_settings().voice_fallback_text  # quoting the voice note itself
        assert replies[text_id] != get_settings().voice_fallback_text
        assert len([entry for entry in downloads(wappi) if entry["status"] == 503]) == 4  # 2 attempts x 2 tries
        statuses = dict(rows("SELECT provider_message_id, status FROM messages WHERE direction = 'in'"))
        assert statuses == {voice_id: "failed", text_id: "answered"}
        letters = rows("SELECT id, task_name, args, exception, traceback FROM dead_letters")
        voice_row = rows("SELECT id FROM messages WHERE provider_message_id = :id", id=voice_id)[0].id
        assert [(letter.task_name, letter.args) for letter in letters] == [("pipeline.transcribe", [voice_row])]
        shown = dlq("show", str(letters[0].id))
        assert shown.returncode == 0, shown.stderr
        for text in (letters[0].exception, letters[0].traceback, shown.stdout):
            assert "download media error" in text
            assert "77011234567" not in text and "*******4567" in text
            assert WAPPI_TOKEN not in text and GEMINI_KEY not in text
        assert recover() == 0  # nothing left for the recovery sweep
        wait_idle(stack.redis.url)
        assert len(replies_to(wappi, phone)) == 2
    finally:
        stack.close()


@pytest.fixture()
def capped_stack(clean: None, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, MAX_AUDIO_BYTES=str(CAP))
    try:
        yield stack
    finally:
        stack.close()


def test_an_oversized_voice_note_gets_one_fallback_and_no_dead_letter(capped_stack: Stack,
                                                                      wappi: WappiEmulator) -> None:
    """Over MAX_AUDIO_BYTES, found out while streaming its download: the customer is asked to write
    once, nothing is dead-lettered."""
    stack = capped_stack
    stack.workers.start("all", concurrency=2)
    first_start(stack)
    phone = "77310000001"
    audio = b"OggS" + b"\x00" * (CAP * 4)
    # The message does not say how big its file is (older payloads carry no fileLength), so only the
    # download itself can find out.
    unsized = {"body": {"mimetype": "audio/ogg; codecs=opus", "caption": "", "seconds": 3, "PTT": True},
               "media_info": {"size": 0}}
    voice_id = customer_says(wappi, phone, "", type="ptt", media_b64=base64.b64encode(audio).decode(),
                             media_shape="link", overrides=unsized)
    stack.send_task("pipeline.poll", "poll")
    wait_for(lambda: rows("SELECT 1 FROM messages WHERE provider_message_id = :id AND status = 'failed'",
                          id=voice_id), timeout=60, message="the voice note to be given up")
    wait_for(lambda: rows("SELECT 1 FROM outbox WHERE status = 'sent'"), message="the fallback to be sent")
    wait_idle(stack.redis.url)
    replies = replies_to(wappi, phone)
    assert [(reply["reply_to"], reply["body"]) for reply in replies] == [
        (voice_id, get_settings().voice_fallback_text)]
    assert rows("SELECT count(*) FROM dead_letters")[0][0] == 0
