"""Voice notes through the pipeline's functions, no workers: both download shapes, inline audio from
a webhook, a voice note and a text in one burst, a crossed download, a note that cannot be
transcribed (which failures are retried, and what one such note may cost), and the size cap."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from clients.gemini import GeminiRejectedError
from clients.gemini import get_client as get_gemini
from clients.wappi import WappiMediaTooLargeError, WappiRejectedError, WappiTransientError, build_client
from db.session import SessionFactory
from emulators.gemini import GeminiEmulator
from emulators.wappi import WappiEmulator
from pipeline.classify import run_classify
from pipeline.ingest import Action
from pipeline.profiles import ensure_profile
from pipeline.recover import stranded_messages
from pipeline.respond import run_respond
from pipeline.transcribe import AudioTooLarge, give_up, transcribe_note, voice_burst
from pipeline.voice_media import stored_voice
from pipeline.webhook import store_webhook, webhook_messages
from settings import get_settings
from tasks.base import TRANSIENT
from tasks.chains import conversation_chain
from tasks.ingest import skip_transcribe
from tests.support import chain
from tests.support.db import rows_in
from tests.support.emulators import customer_says, replies_to
from tests.support.env import PROFILE_ID
from tests.support.intake import answer_new, downloads, voice_note, webhook_caught
from tests.support.model_calls import TRANSCRIBE

CAP = 64 * 1024


def row_of(session: Session, provider_id: str) -> int:
    return int(rows_in(session, "SELECT id FROM messages WHERE provider_message_id = :id", id=provider_id)[0].id)


def carrier_of(sessions: SessionFactory, started: list[int]) -> int:
    """The one message of a burst that carries its chain past ingest."""
    carried = [message_id for message_id in started if chain.ingest(sessions, message_id) is not None]
    assert len(carried) == 1
    return carried[0]


def go_on(sessions: SessionFactory, message_id: int) -> int | None:
    """classify -> respond -> send for the message `transcribe` handed on."""
    settings = get_settings()
    carried = run_classify(sessions, get_gemini(), message_id, settings)
    outbox_id = run_respond(sessions, get_gemini(), carried, settings) if carried is not None else None
    return chain.send(sessions, outbox_id) if outbox_id is not None else None


def fall_back(sessions: SessionFactory, voice_id: int) -> None:
    """What tasks.transcribe does with a note it gives up on: one "please write" quoting it."""
    with sessions() as session:
        outbox_id = give_up(session, voice_id, get_settings().voice_fallback_text)
    assert outbox_id is not None
    chain.send(sessions, outbox_id)


@pytest.mark.parametrize("shape", ["b64", "link"])
def test_a_voice_note_is_transcribed_and_answered(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                                                  gemini: GeminiEmulator, shape: str) -> None:
    assert chain.poll(sessions) == []  # the first start
    voice_note(wappi, "77200000001", "Здравствуйте, сколько стоит торт Медовик?", media_shape=shape)
    assert len(answer_new(sessions)) == 1
    replies = replies_to(wappi, "77200000001")
    stored = rows_in(session, "SELECT type, is_voice, transcription, status FROM messages WHERE direction = 'in'")[0]
    assert (stored.type, stored.is_voice, stored.status) == ("ptt", True, "answered")
    assert stored.transcription == "Здравствуйте, сколько стоит торт Медовик?"
    assert len(replies) == 1 and "Медовик" in replies[0]["body"] and "9 900 ₸" in replies[0]["body"]
    # The audio went inline to the transcription model; the agent saw the text, marked as a transcript.
    calls = gemini.requests_log()
    transcription_call = next(call for call in calls if "inline" in json.dumps(call["body"]).lower())
    assert transcription_call["model"] == "gemini-3.5-flash"
    agent_call = calls[-1]["body"]
    # (The turn may open with the contact data block: the customer's own parts come last.)
    assert agent_call["contents"][-1]["parts"][-1]["text"].startswith("[голосовое сообщение, расшифровка]")
    assert len(downloads(wappi)) == 1  # the poll shows no audio: it was downloaded through Wappi


def test_a_voice_note_followed_by_text_in_one_burst_is_transcribed_too(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator, gemini: GeminiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    voice_note(wappi, "77200000006", "Хочу заказать наполеон на субботу", media_shape="b64")
    customer_says(wappi, "77200000006", "Это возможно?")
    assert len(answer_new(sessions)) == 2
    assert answer_new(sessions) == []
    assert len(replies_to(wappi, "77200000006")) == 1
    voice = rows_in(session, "SELECT transcription, status FROM messages WHERE type = 'ptt'")[0]
    assert voice.transcription == "Хочу заказать наполеон на субботу" and voice.status == "answered"
    agent_turn = gemini.requests_log()[-1]["body"]["contents"][-1]["parts"]
    assert agent_turn[-2]["text"].endswith("Хочу заказать наполеон на субботу")
    assert agent_turn[-1]["text"] == "Это возможно?"


def test_a_webhook_voice_note_is_transcribed_from_its_inline_audio(
        sessions: SessionFactory, session: Session, wappi: WappiEmulator) -> None:
    assert chain.poll(sessions) == []  # the first start
    phone = "77300000001"
    with webhook_caught(wappi) as pushed:
        # The webhook carries the audio as base64 in `body`; its file_link has expired, and so
        # has Wappi's copy (media/download answers "download media error").
        voice_id = voice_note(wappi, phone, "Сколько стоит торт Медовик?", media_expired=True)
        items = pushed.next_items()
    with sessions() as writing:
        started = store_webhook(writing, ensure_profile(writing, get_settings()).id, webhook_messages(
            {"messages": items}))
    assert len(started) == 1
    assert rows_in(session, "SELECT count(*) FROM voice_media WHERE audio IS NOT NULL")[0][0] == 1
    assert chain.poll(sessions) == []  # the poll sees the same message: deduplicated, nothing downloaded
    chain.answer(sessions, started[0])
    assert answer_new(sessions) == []
    replies = replies_to(wappi, phone)
    assert len(replies) == 1 and replies[0]["reply_to"] == voice_id and "Медовик" in replies[0]["body"]
    assert replies[0]["body"] != get_settings().voice_fallback_text
    stored = rows_in(session, "SELECT transcription, status FROM messages WHERE direction = 'in'")
    assert [(row.transcription, row.status) for row in stored] == [("Сколько стоит торт Медовик?", "answered")]
    assert downloads(wappi) == []
    # The audio is kept only until it is transcribed.
    assert rows_in(session, "SELECT count(*) FROM voice_media WHERE audio IS NOT NULL")[0][0] == 0


def test_a_crossed_download_is_dropped_and_retried(sessions: SessionFactory, session: Session,
                                                   wappi: WappiEmulator) -> None:
    other = voice_note(wappi, "77300000003", "Чужое голосовое другого клиента",
                       time=int(datetime.now(UTC).timestamp()) - 7200)
    assert chain.poll(sessions) == []  # the other customer's note is history; its file is still on Wappi
    voice_note(wappi, "77300000004", "Хочу заказать наполеон на субботу", media_shape="b64")
    wappi.set_media_faults({"cross_next": 1})  # the next download answers with another message's file
    assert len(answer_new(sessions)) == 1
    replies = replies_to(wappi, "77300000004")
    state = wappi.media_faults()
    assert (state["crossed"], state["cross_next"]) == (1, 0)  # a crossed answer was given
    stored = rows_in(session, "SELECT transcription, status FROM messages m JOIN contacts c ON c.id = m.contact_id "
                              "WHERE c.phone = '77300000004' AND m.direction = 'in'")
    assert [(row.transcription, row.status) for row in stored] == [("Хочу заказать наполеон на субботу", "answered")]
    assert len(replies) == 1 and "Чужое" not in replies[0]["body"] and "наполеон" in replies[0]["body"]
    assert len([entry for entry in downloads(wappi) if entry["query"]["message_id"] != other]) == 2


@pytest.mark.parametrize(("fault", "raised", "retried"), [
    ("download refused", WappiRejectedError, False),
    ("download unavailable", WappiTransientError, True),
    ("model refused", GeminiRejectedError, False),
])
def test_which_failures_of_a_voice_note_are_retried(sessions: SessionFactory, wappi: WappiEmulator,
                                                    gemini: GeminiEmulator, fault: str, raised: type[Exception],
                                                    retried: bool) -> None:
    """tasks.transcribe retries what is transient (with backoff) and gives a note up at once on
    anything else; here is what each failure raises."""
    assert chain.poll(sessions) == []  # the first start
    voice_id = voice_note(wappi, "77200000002", "не важно", media_shape="b64")
    if fault == "model refused":
        gemini.script([{"status": 400, "match": TRANSCRIBE}])
    else:
        wappi.set_media_faults({"fail_message_ids": [voice_id], "fail_status": 503 if retried else 400})
    carrier = carrier_of(sessions, chain.poll(sessions))
    with pytest.raises(raised) as failure:
        chain.transcribe(sessions, carrier)
    assert isinstance(failure.value, TRANSIENT) == retried


@pytest.mark.parametrize("failing_first", [True, False], ids=["older-voice-fails", "newest-voice-fails"])
def test_a_voice_note_given_up_costs_only_itself(sessions: SessionFactory, session: Session, wappi: WappiEmulator,
                                                 failing_first: bool) -> None:
    assert chain.poll(sessions) == []  # the first start
    phone = "77300000002"
    if failing_first:
        voice_said = voice_note(wappi, phone, "не важно", media_shape="b64")
        text_said = customer_says(wappi, phone, "И ещё: сколько стоит доставка?")
    else:
        text_said = customer_says(wappi, phone, "Сколько стоит доставка?")
        voice_said = voice_note(wappi, phone, "не важно", media_shape="b64")
    wappi.set_media_faults({"fail_message_ids": [voice_said]})  # Wappi has lost this one file for good
    carrier = carrier_of(sessions, chain.poll(sessions))
    voice_id, text_id = row_of(session, voice_said), row_of(session, text_said)
    failures: list[tuple[int, Exception]] = []

    def task_policy(failed_voice: int, exc: Exception) -> bool:
        """tasks.transcribe's policy: a refusal is not retried, it fails for good at once."""
        failures.append((failed_voice, exc))
        return not isinstance(exc, TRANSIENT)

    # The chain goes on with the rest of the burst, and the note got its one "please write".
    carried = chain.transcribe(sessions, carrier, fails_for_good=task_policy)
    assert carried == text_id
    assert [(failed_voice, type(exc)) for failed_voice, exc in failures] == [(voice_id, WappiRejectedError)]
    with sessions() as writing:  # asked once: the note's key keeps it to one message
        assert give_up(writing, voice_id, get_settings().voice_fallback_text) is None
    assert chain.transcribe(sessions, carried) == text_id  # nothing left to transcribe
    assert go_on(sessions, text_id) is not None
    replies = {reply["reply_to"]: reply["body"] for reply in replies_to(wappi, phone)}
    assert len(replies_to(wappi, phone)) == 2
    assert replies[voice_said] == get_settings().voice_fallback_text  # quoting the voice note itself
    assert "доставка" in replies[text_said] and replies[text_said] != get_settings().voice_fallback_text
    statuses = dict(rows_in(session, "SELECT provider_message_id, status FROM messages WHERE direction = 'in'"))
    assert statuses == {voice_said: "failed", text_said: "answered"}
    # The recovery sweep finds nothing to restart, and the poll nothing more to answer.
    assert stranded_messages(session, datetime.now(UTC) + timedelta(days=1), get_settings()) == []
    assert answer_new(sessions) == []
    assert len(replies_to(wappi, phone)) == 2


@pytest.mark.parametrize("shape", ["link", "b64", "sized"])
def test_an_oversized_voice_note_is_given_up_without_being_read(sessions: SessionFactory, wappi: WappiEmulator,
                                                                shape: str) -> None:
    """Over MAX_AUDIO_BYTES: known from the message (no download at all), or, when the message does
    not say how big its file is (older payloads carry no fileLength), found out while streaming
    the download. tasks.transcribe gives such a note up without a dead letter."""
    assert chain.poll(sessions) == []  # the first start
    phone = "77310000001"
    audio = b"OggS" + b"\x00" * (CAP * 4)
    unsized = {"body": {"mimetype": "audio/ogg; codecs=opus", "caption": "", "seconds": 3, "PTT": True},
               "media_info": {"size": 0}}
    voice_said = customer_says(wappi, phone, "", type="ptt", media_b64=base64.b64encode(audio).decode(),
                               media_shape="link" if shape == "sized" else shape,
                               overrides=None if shape == "sized" else unsized)
    carrier = carrier_of(sessions, chain.poll(sessions))
    settings = get_settings()
    capped = build_client(settings.wappi_base_url, settings.wappi_token, PROFILE_ID, timeout=3, max_media_bytes=CAP)
    with sessions() as reading:
        burst = voice_burst(reading, carrier)
        assert burst is not None and len(burst.pending) == 1
        voice_id, provider_id = burst.pending[0]
        stored = stored_voice(reading, voice_id)
    expected = AudioTooLarge if shape == "sized" else WappiMediaTooLargeError
    with pytest.raises(expected):
        transcribe_note(capped, get_gemini(), provider_id, stored, model=settings.gemini_transcribe_model,
                        max_bytes=CAP)
    assert len(downloads(wappi)) == (0 if shape == "sized" else 1)
    fall_back(sessions, voice_id)
    assert [(reply["reply_to"], reply["body"]) for reply in replies_to(wappi, phone)] == [
        (voice_said, settings.voice_fallback_text)]


@pytest.mark.parametrize("voice_first", [True, False], ids=["voice-then-text", "text-then-voice"])
def test_only_a_burst_holding_a_voice_note_goes_through_transcribe(sessions: SessionFactory, wappi: WappiEmulator,
                                                                   voice_first: bool) -> None:
    """ingest tells the chain whether its burst holds a voice note still to transcribe; the worker
    drops the `transcribe` hop otherwise (tasks.ingest.skip_transcribe)."""
    assert chain.poll(sessions) == []  # the first start
    customer_says(wappi, "77300000010", "Сколько стоит торт?")
    [text_only] = chain.poll(sessions)
    decision = chain.decide(sessions, text_only)
    assert (decision.action, decision.voice) == (Action.GO, False)
    phone = "77300000011"
    if voice_first:
        voice_note(wappi, phone, "не важно", media_shape="b64")
        customer_says(wappi, phone, "И ещё вопрос")
    else:
        customer_says(wappi, phone, "Вопрос")
        voice_note(wappi, phone, "не важно", media_shape="b64")
    decisions = [chain.decide(sessions, message_id) for message_id in chain.poll(sessions)]
    assert [(decision.action, decision.voice) for decision in decisions] == [(Action.STOP, False), (Action.GO, True)]


def test_ingest_drops_only_the_transcribe_step_from_the_chain() -> None:
    rest = [dict(step) for step in reversed(conversation_chain(1).tasks[1:])]  # what a worker's request holds
    skip_transcribe(rest)
    assert [step["task"] for step in reversed(rest)] == ["pipeline.classify", "pipeline.respond", "pipeline.send"]
    skip_transcribe(rest)  # never a later step
    assert [step["task"] for step in reversed(rest)] == ["pipeline.classify", "pipeline.respond", "pipeline.send"]
    skip_transcribe(None)  # called directly, not in a chain
