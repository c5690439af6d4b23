"""Voice notes through the workers: both download shapes, the transcript reaching the agent, failures."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from settings import get_settings
from tests.conftest import run_poll, wait_for
from tests.idle import wait_idle
from tests.test_pipeline import customer_says, replies_to, rows

pytestmark = pytest.mark.usefixtures("workers", "clean")


def voice_note(wappi: WappiEmulator, phone: str, transcript: str, shape: str) -> str:
    audio = b"OggS\x00\x02fake-opus-frames\x00TRANSCRIPT:" + transcript.encode() + b"\x00\x01\x02"
    return customer_says(wappi, phone, "", type="ptt", media_b64=base64.b64encode(audio).decode(),
                         media_shape=shape)


@pytest.mark.parametrize("shape", ["b64", "link"])
def test_voice_note_is_transcribed_and_answered(wappi: WappiEmulator, gemini: GeminiEmulator, shape: str) -> None:
    run_poll()
    voice_note(wappi, "77200000001", "Здравствуйте, сколько стоит торт Медовик?", shape)
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, "77200000001"), message="the reply to the voice note")
    stored = rows("SELECT type, is_voice, transcription, status FROM messages WHERE direction = 'in'")[0]
    assert (stored.type, stored.is_voice, stored.status) == ("ptt", True, "answered")
    assert stored.transcription == "Здравствуйте, сколько стоит торт Медовик?"
    assert "Медовик" in replies[0]["body"] and "9 900 ₸" in replies[0]["body"]
    # The audio went inline to the transcription model; the agent saw the text, marked as a transcript.
    calls = gemini.requests_log()
    transcription_call = next(call for call in calls if "inline" in json.dumps(call["body"]).lower())
    assert transcription_call["model"] == "gemini-3.5-flash"
    agent_call = calls[-1]["body"]
    # (The turn may open with the contact data block: the customer's own parts come last.)
    assert agent_call["contents"][-1]["parts"][-1]["text"].startswith("[голосовое сообщение, расшифровка]")
    # The media download went through Wappi (JSON), and the audio never travelled in a task message.
    paths = [entry["path"] for entry in requests.get(f"{wappi.url}/_emulator/requests", timeout=5).json()["requests"]]
    assert any(path.endswith("message/media/download") for path in paths)


def test_failed_transcription_asks_to_write_once(wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    run_poll()
    gemini.script([{"status": 400, "match": "Расшифруй"}])  # the model refuses: not retried
    voice_note(wappi, "77200000002", "не важно", "b64")
    run_poll()
    wait_for(lambda: replies_to(wappi, "77200000002"), message="the polite fallback")
    wait_idle()
    assert [reply["body"] for reply in replies_to(wappi, "77200000002")] == [get_settings().voice_fallback_text]
    letters = rows("SELECT task_name, exception FROM dead_letters")
    assert [letter.task_name for letter in letters] == ["pipeline.transcribe"]
    assert rows("SELECT status FROM messages WHERE direction = 'in'")[0].status == "failed"


def test_failed_download_asks_to_write_once(wappi: WappiEmulator) -> None:
    run_poll()
    requests.post(f"{wappi.url}/_emulator/faults", json={"fail_next": 100, "fail_status": 400,
                                                          "paths": ["media/download"]}, timeout=5)
    voice_note(wappi, "77200000003", "не важно", "b64")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, "77200000003"), message="the polite fallback")
    requests.post(f"{wappi.url}/_emulator/faults", json={}, timeout=5)
    assert replies[0]["body"] == get_settings().voice_fallback_text
    assert rows("SELECT task_name FROM dead_letters")[0].task_name == "pipeline.transcribe"


def test_captions_are_answered_and_stickers_are_only_recorded(wappi: WappiEmulator) -> None:
    run_poll()
    customer_says(wappi, "77200000004", "", type="image", caption="Хочу такой торт, сколько будет стоить?")
    customer_says(wappi, "77200000005", "", type="sticker")
    customer_says(wappi, "77200000005", "👍", type="reaction")
    customer_says(wappi, "77200000005", "", type="location")
    run_poll()
    replies = wait_for(lambda: replies_to(wappi, "77200000004"), message="the reply to the caption")
    assert "Хочу такой торт" in replies[0]["body"]
    statuses = {row.type: row.status for row in rows(
        "SELECT m.type, m.status FROM messages m JOIN contacts c ON c.id = m.contact_id WHERE c.phone = '77200000005'")}
    assert statuses == {"sticker": "skipped", "reaction": "skipped", "location": "skipped"}
    wait_idle()
    assert replies_to(wappi, "77200000005") == []
    assert rows("SELECT count(*) FROM dead_letters")[0][0] == 0




def test_a_voice_note_followed_by_text_in_one_burst_is_transcribed_too(wappi: WappiEmulator,
                                                                       gemini: GeminiEmulator) -> None:
    run_poll()
    voice_note(wappi, "77200000006", "Хочу заказать наполеон на субботу", "b64")
    customer_says(wappi, "77200000006", "Это возможно?")
    run_poll()
    wait_for(lambda: replies_to(wappi, "77200000006"), message="one reply to the burst")
    wait_idle()
    assert len(replies_to(wappi, "77200000006")) == 1
    voice = rows("SELECT transcription, status FROM messages WHERE type = 'ptt'")[0]
    assert voice.transcription == "Хочу заказать наполеон на субботу" and voice.status == "answered"
    agent_turn = gemini.requests_log()[-1]["body"]["contents"][-1]["parts"]
    assert agent_turn[-2]["text"].endswith("Хочу заказать наполеон на субботу")
    assert agent_turn[-1]["text"] == "Это возможно?"
