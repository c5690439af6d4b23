"""Where a voice note's audio comes from, and what one failing voice note may cost: through the
workers, the web app and the Wappi emulator (issue 10, items 8, 9, 10 and 13)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from settings import get_settings
from tests.conftest import GEMINI_KEY, PROFILE_ID, WAPPI_TOKEN, run_poll, wait_for
from tests.idle import wait_idle
from tests.test_dlq import dlq
from tests.test_operations import SECRET, web  # noqa: F401  # `web` is a pytest fixture used below
from tests.test_pipeline import customer_says, replies_to, rows

pytestmark = pytest.mark.usefixtures("workers", "clean")


def voice_note(wappi: WappiEmulator, phone: str, transcript: str, **extra: Any) -> str:
    audio = b"OggS\x00\x02fake-opus-frames\x00TRANSCRIPT:" + transcript.encode() + b"\x00\x01\x02"
    return customer_says(wappi, phone, "", type="ptt", media_b64=base64.b64encode(audio).decode(), **extra)


def media_faults(wappi: WappiEmulator, **config: Any) -> dict[str, Any]:
    response = requests.post(f"{wappi.url}/_emulator/media_faults", json=config, timeout=5)
    response.raise_for_status()
    return dict(response.json()["media_faults"])


def downloads(wappi: WappiEmulator) -> list[dict[str, Any]]:
    return [entry for entry in wappi.requests_log() if entry["path"].endswith("message/media/download")]


def test_webhook_voice_note_is_transcribed_from_its_inline_audio(web: str, wappi: WappiEmulator,  # noqa: F811
                                                                 gemini: GeminiEmulator) -> None:
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
    # The audio is kept only until it is transcribed.
    assert rows("SELECT count(*) FROM voice_media WHERE audio IS NOT NULL")[0][0] == 0


@pytest.mark.parametrize("failing_first", [True, False], ids=["older-voice-fails", "newest-voice-fails"])
def test_a_failed_voice_note_costs_only_itself(wappi: WappiEmulator, failing_first: bool) -> None:
    from tasks.recover import recover

    run_poll()
    phone = "77300000002"
    if failing_first:
        voice_id = voice_note(wappi, phone, "не важно", media_shape="b64")
        text_id = customer_says(wappi, phone, "И ещё: сколько стоит доставка?")
    else:
        text_id = customer_says(wappi, phone, "Сколько стоит доставка?")
        voice_id = voice_note(wappi, phone, "не важно", media_shape="b64")
    media_faults(wappi, fail_message_ids=[voice_id])  # Wappi has lost this one file for good
    run_poll()
    wait_for(lambda: len(replies_to(wappi, phone)) >= 2, message="the fallback and the answer")
    wait_idle()
    replies = {reply["reply_to"]: reply["body"] for reply in replies_to(wappi, phone)}
    assert len(replies_to(wappi, phone)) == 2
    assert replies[voice_id] == get_settings().voice_fallback_text  # quoting the voice note itself
    assert "доставка" in replies[text_id] and replies[text_id] != get_settings().voice_fallback_text
    statuses = dict(rows("SELECT provider_message_id, status FROM messages WHERE direction = 'in'"))
    assert statuses == {voice_id: "failed", text_id: "answered"}
    letters = rows("SELECT task_name, args FROM dead_letters")
    assert [(letter.task_name, letter.args) for letter in letters] == [
        ("pipeline.transcribe", [rows("SELECT id FROM messages WHERE provider_message_id = :id", id=voice_id)[0].id])]
    # The recovery sweep finds nothing to restart, and nothing more is sent.
    assert recover() == 0
    assert rows("SELECT id FROM messages WHERE status = 'received'") == []  # nothing left to sweep up
    wait_idle()
    assert len(replies_to(wappi, phone)) == 2


def test_a_crossed_download_is_dropped_and_retried(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    other = voice_note(wappi, "77300000003", "Чужое голосовое другого клиента", time=int(time.time()) - 7200)
    run_poll()  # the other customer's note is history; its file is still on Wappi
    voice_note(wappi, "77300000004", "Хочу заказать наполеон на субботу", media_shape="b64")
    media_faults(wappi, cross_next=1)  # the next download answers with another message's file
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, "77300000004"), message="the reply to the voice note")
    wait_idle()
    state = requests.get(f"{wappi.url}/_emulator/media_faults", timeout=5).json()
    assert (state["crossed"], state["cross_next"]) == (1, 0)  # a crossed answer was given
    stored = rows("SELECT transcription, status FROM messages m JOIN contacts c ON c.id = m.contact_id "
                  "WHERE c.phone = '77300000004' AND m.direction = 'in'")
    assert [(row.transcription, row.status) for row in stored] == [("Хочу заказать наполеон на субботу", "answered")]
    assert "Чужое" not in replies[0]["body"] and "наполеон" in replies[0]["body"]
    assert len([entry for entry in downloads(wappi) if entry["query"]["message_id"] != other]) == 2
    assert rows("SELECT count(*) FROM dead_letters")[0][0] == 0


def test_dead_letter_text_is_masked_like_logs(wappi: WappiEmulator) -> None:
    run_poll()
    detail = f"download media error for 77011234567 with token {WAPPI_TOKEN} and key={GEMINI_KEY}-9x"
    voice_id = voice_note(wappi, "77300000005", "не важно", media_shape="b64")
    media_faults(wappi, fail_message_ids=[voice_id], fail_detail=detail)
    run_poll()
    letter = wait_for(lambda: rows("SELECT id, exception, traceback, args FROM dead_letters"),
                      message="the dead letter")[0]
    shown = dlq("show", str(letter.id))
    assert shown.returncode == 0, shown.stderr
    for text in (letter.exception, letter.traceback, shown.stdout):
        assert "download media error" in text
        assert "77011234567" not in text and "*******4567" in text
        assert WAPPI_TOKEN not in text and GEMINI_KEY not in text
    assert letter.args == [rows("SELECT id FROM messages WHERE provider_message_id = :id", id=voice_id)[0].id]


def test_a_voice_note_whose_download_keeps_failing_costs_only_itself(clean: None, wappi: WappiEmulator,
                                                                     tmp_path: Path) -> None:
    """Transient failures (5xx) until the attempts run out: the same outcome as a refusal."""
    from tests.test_faults import Stack

    stack = Stack(tmp_path, TASK_MAX_ATTEMPTS="2", BATCH_WINDOW="1.5")
    try:
        stack.workers.start("all", concurrency=2)
        stack.send_task("pipeline.poll", "poll")
        wait_for(lambda: rows("SELECT 1 FROM profiles WHERE last_poll_at IS NOT NULL"), message="first start")
        phone = "77300000006"
        voice_id = voice_note(wappi, phone, "не важно", media_shape="b64")
        text_id = customer_says(wappi, phone, "А торты на заказ делаете?")
        media_faults(wappi, fail_message_ids=[voice_id], fail_status=503)
        stack.send_task("pipeline.poll", "poll")
        wait_for(lambda: len(replies_to(wappi, phone)) >= 2, message="the fallback and the answer")
        wait_idle(stack.redis.url)
        replies = {reply["reply_to"]: reply["body"] for reply in replies_to(wappi, phone)}
        assert len(replies_to(wappi, phone)) == 2
        assert replies[voice_id] == get_settings().voice_fallback_text
        assert replies[text_id] != get_settings().voice_fallback_text
        assert len([entry for entry in downloads(wappi) if entry["status"] == 503]) == 4  # 2 attempts x 2 tries
        assert [letter.task_name for letter in rows("SELECT task_name FROM dead_letters")] == ["pipeline.transcribe"]
    finally:
        stack.close()
