"""The Telegram Bot API client (clients/telegram.py) against the Telegram emulator over HTTP: typed
errors from the emulator's faults, the token kept out of errors and logs, offsets and the long
poll, files, and the parser of each kind of update."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from clients.telegram import (
    TOKEN_MASK,
    TelegramBlockedError,
    TelegramChatNotFoundError,
    TelegramClient,
    TelegramError,
    TelegramFileTooLargeError,
    TelegramMalformedUpdateError,
    TelegramRateLimitedError,
    TelegramRejectedError,
    TelegramTransientError,
    TelegramUnauthorizedError,
    parse_update,
)
from devstack import free_port
from emulators.telegram import TelegramEmulator
from tests.support.telegram import WebhookReceiver

TOKEN = "7123456789:AAE-secret_bot-token"
CHAT = 123456789


@pytest.fixture()
def emulator() -> Iterator[TelegramEmulator]:
    with TelegramEmulator(token=TOKEN) as emu:
        yield emu


@pytest.fixture()
def client(emulator: TelegramEmulator) -> Iterator[TelegramClient]:
    with requests.Session() as session:
        yield TelegramClient(session, emulator.url, TOKEN, timeout=5)


def error_of(call: Any, *args: Any, **kwargs: Any) -> TelegramError:
    with pytest.raises(TelegramError) as caught:
        call(*args, **kwargs)
    return caught.value


def assert_no_token(exc: BaseException) -> None:
    assert TOKEN not in str(exc) and TOKEN not in repr(exc)
    assert isinstance(exc, TelegramError) and TOKEN not in exc.description
    # A logged traceback prints the chain: the requests exception (its text holds the URL) is not in it.
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def wait_for_poll(emulator: TelegramEmulator, generation: int) -> None:
    """Until the emulator has taken the `generation`th getUpdates call (it notifies when it does)."""
    backend = emulator.backend
    with backend.changed:
        assert backend.changed.wait_for(lambda: backend.poll_generation >= generation, timeout=5)


# ------------------------------------------------------------------ calls and results


def test_get_me_and_send_message(emulator: TelegramEmulator, client: TelegramClient) -> None:
    bot = client.get_me()
    emulator.user_writes(CHAT, "Сколько стоит доставка?")
    sent = client.send_message(CHAT, "Доставка бесплатная.", reply_to_message_id=1)
    gone = client.send_message(CHAT, "Ответ на удалённое", reply_to_message_id=999)

    assert (bot.id, bot.username) == (7123456789, "shop_bot")
    delivered = emulator.sent_messages(CHAT)
    assert [item["text"] for item in delivered] == ["Доставка бесплатная.", "Ответ на удалённое"]
    assert (sent.message_id, sent.date) == (delivered[0]["message_id"], delivered[0]["date"]) == (2, sent.date)
    assert sent.date > 0
    assert delivered[0]["reply_to_message"]["message_id"] == 1
    assert gone.message_id == 3 and "reply_to_message" not in delivered[1]


# ------------------------------------------------------------------ typed errors


def test_rate_limit_is_transient_with_retry_after_as_the_backoff_floor(emulator: TelegramEmulator,
                                                                       client: TelegramClient) -> None:
    from tasks.base import backoff  # the retry policy that reads `retry_after`

    emulator.user_writes(CHAT, "Привет")
    emulator.set_faults({"rate_limited_next": 1, "retry_after": 35, "methods": ["sendMessage"]})
    error = error_of(client.send_message, CHAT, "Здравствуйте")

    assert isinstance(error, TelegramRateLimitedError) and isinstance(error, TelegramTransientError)
    assert (error.error_code, error.retry_after) == (429, 35.0)
    assert backoff(1, error) >= 35
    assert client.send_message(CHAT, "Здравствуйте").message_id == 2  # the fault was used up
    assert_no_token(error)


def test_server_errors_timeouts_and_refused_connections_are_transient(emulator: TelegramEmulator) -> None:
    emulator.set_faults({"fail_next": 1, "fail_status": 502, "timeout_next": 1, "timeout_seconds": 5})
    impatient = TelegramClient(requests.Session(), emulator.url, TOKEN, timeout=0.3)
    server_error = error_of(impatient.get_me)
    started = time.monotonic()
    timed_out = error_of(impatient.get_me)
    elapsed = time.monotonic() - started
    refused = error_of(TelegramClient(requests.Session(), f"http://127.0.0.1:{free_port()}", TOKEN,
                                      timeout=2).get_me)

    assert type(server_error) is TelegramTransientError and server_error.error_code == 502
    assert type(timed_out) is TelegramTransientError and "timed out" in str(timed_out) and elapsed < 3
    assert type(refused) is TelegramTransientError and "ConnectionError" in str(refused)
    for error in (server_error, timed_out, refused):
        assert_no_token(error)


def test_a_proxy_error_without_a_json_body_is_transient() -> None:
    with WebhookReceiver() as proxy:  # answers 502 with an empty body, as a proxy before the API may
        proxy.status = 502
        error = error_of(TelegramClient(requests.Session(), proxy.url, TOKEN, timeout=2).get_me)

    assert type(error) is TelegramTransientError and error.error_code == 502
    assert_no_token(error)


def test_blocked_deactivated_unknown_chat_bad_token_and_rejected(emulator: TelegramEmulator,
                                                                 client: TelegramClient) -> None:
    emulator.user_writes(CHAT, "Привет")
    emulator.user_writes(CHAT + 1, "Привет")
    emulator.user_blocks(CHAT)
    emulator.user_blocks(CHAT + 1, deactivated=True, notify=False)

    blocked = error_of(client.send_message, CHAT, "Ответ")
    deactivated = error_of(client.send_message, CHAT + 1, "Ответ")
    unknown = error_of(client.send_message, 42, "Ответ")
    emulator.user_writes(CHAT + 3, "Привет")
    empty = error_of(client.send_message, CHAT + 3, " ")
    too_long = error_of(client.send_message, CHAT + 3, "я" * 4097)
    bad_token = error_of(TelegramClient(requests.Session(), emulator.url, "7123456789:wrong", timeout=5).get_me)

    assert type(blocked) is TelegramBlockedError and blocked.error_code == 403
    assert "blocked by the user" in blocked.description
    assert type(deactivated) is TelegramBlockedError and "deactivated" in deactivated.description
    assert type(unknown) is TelegramChatNotFoundError and unknown.error_code == 400
    assert type(empty) is TelegramRejectedError and "text is empty" in empty.description
    assert type(too_long) is TelegramRejectedError and "too long" in too_long.description
    assert type(bad_token) is TelegramUnauthorizedError and bad_token.error_code == 401
    assert emulator.sent_messages() == []
    for error in (blocked, deactivated, unknown, empty, too_long, bad_token):
        assert_no_token(error)


def test_the_token_stays_out_of_repr_and_debug_logs(client: TelegramClient,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        client.get_me()

    assert TOKEN not in repr(client) and TOKEN_MASK in repr(client)
    requested = [record.getMessage() for record in caplog.records if record.name == "urllib3.connectionpool"]
    assert any(f"/bot{TOKEN_MASK}/getMe" in line for line in requested), requested
    # The emulator's own access log is the server's side, which knows the token anyway.
    assert all(TOKEN not in record.getMessage() for record in caplog.records
               if not record.name.startswith("emulators."))


# ------------------------------------------------------------------ getUpdates


def test_offsets_confirm_updates_below_them(emulator: TelegramEmulator, client: TelegramClient) -> None:
    for text in ("один", "два", "три"):
        emulator.user_writes(CHAT, text)

    first = client.get_updates(limit=2)
    again = client.get_updates()
    ids = [update["update_id"] for update in again]
    after_confirm = client.get_updates(offset=ids[1] + 1)
    emulator.user_writes(CHAT, "четыре")
    last_only = client.get_updates(offset=-1)
    confirmed_all = client.get_updates(offset=last_only[0]["update_id"] + 1)

    assert [update["message"]["text"] for update in first] == ["один", "два"]
    assert [update["message"]["text"] for update in again] == ["один", "два", "три"]  # unconfirmed: again
    assert ids == sorted(ids) and ids[2] == ids[0] + 2
    assert [update["message"]["text"] for update in after_confirm] == ["три"]
    assert [update["message"]["text"] for update in last_only] == ["четыре"]
    assert confirmed_all == [] and emulator.pending_updates() == []


def test_long_poll_waits_for_an_update_and_ends_empty_at_its_timeout(emulator: TelegramEmulator,
                                                                     client: TelegramClient) -> None:
    started = time.monotonic()
    assert client.get_updates(timeout=1) == []
    waited = time.monotonic() - started

    received: list[list[dict[str, Any]]] = []
    poller = threading.Thread(target=lambda: received.append(client.get_updates(timeout=30)))
    poller.start()
    wait_for_poll(emulator, 2)
    emulator.user_writes(CHAT, "Вы тут?")
    poller.join(timeout=5)

    assert 1 <= waited < 3
    assert not poller.is_alive()
    assert [update["message"]["text"] for batch in received for update in batch] == ["Вы тут?"]


def test_a_second_poller_ends_the_first_with_a_conflict(emulator: TelegramEmulator,
                                                        client: TelegramClient) -> None:
    errors: list[TelegramError] = []

    def first_poller() -> None:
        try:
            client.get_updates(timeout=30)
        except TelegramError as exc:
            errors.append(exc)

    poller = threading.Thread(target=first_poller)
    poller.start()
    wait_for_poll(emulator, 1)
    second = client.get_updates(timeout=0)
    poller.join(timeout=5)

    assert second == [] and not poller.is_alive()
    assert len(errors) == 1 and type(errors[0]) is TelegramRejectedError and errors[0].error_code == 409
    assert "terminated by other getUpdates request" in errors[0].description


def test_get_updates_is_refused_while_a_webhook_is_set(emulator: TelegramEmulator, client: TelegramClient) -> None:
    client.set_webhook("http://127.0.0.1:9/hook", "s3cret")
    conflict = error_of(client.get_updates)
    client.delete_webhook()
    emulator.user_writes(CHAT, "Привет")

    assert type(conflict) is TelegramRejectedError and conflict.error_code == 409
    assert "webhook is active" in conflict.description
    assert [update["message"]["text"] for update in client.get_updates()] == ["Привет"]


def test_a_duplicated_update_comes_twice_with_one_update_id(emulator: TelegramEmulator,
                                                            client: TelegramClient) -> None:
    emulator.set_faults({"duplicate_updates": 1})
    emulator.user_writes(CHAT, "Привет")

    updates = client.get_updates()

    assert len(updates) == 2 and updates[0] == updates[1]


def test_allowed_updates_filters_what_is_queued_next(emulator: TelegramEmulator, client: TelegramClient) -> None:
    emulator.user_writes(CHAT, "Привет")
    client.get_updates(allowed_updates=["message"])
    emulator.user_blocks(CHAT)  # my_chat_member: not allowed now, so never queued
    emulator.user_writes(CHAT, "Ещё")

    kinds = [parse_update(update).kind for update in client.get_updates()]

    assert kinds == ["message", "message"]


# ------------------------------------------------------------------ files


def test_voice_is_downloaded_and_refused_over_the_cap(emulator: TelegramEmulator, client: TelegramClient) -> None:
    audio = b"OggS" + bytes(range(256)) * 40
    emulator.user_sends_voice(CHAT, audio, duration=7)
    voice = parse_update(client.get_updates()[0]).media
    assert voice is not None

    info = client.get_file(voice.file_id)
    data = client.download_file(info.file_path, max_bytes=len(audio))
    too_large = error_of(client.download_file, info.file_path, max_bytes=len(audio) - 1)
    missing = error_of(client.download_file, "voice/file_404.oga", max_bytes=len(audio))
    unknown_id = error_of(client.get_file, "no-such-file")

    assert data == audio and info.file_size == voice.file_size == len(audio)
    assert info.file_path.startswith("voice/")
    assert type(too_large) is TelegramFileTooLargeError and isinstance(too_large, TelegramRejectedError)
    assert type(missing) is TelegramRejectedError and missing.error_code == 404
    assert type(unknown_id) is TelegramRejectedError and "invalid file_id" in unknown_id.description
    for error in (too_large, missing, unknown_id):
        assert_no_token(error)


def test_get_file_refuses_files_over_20_mb(emulator: TelegramEmulator, client: TelegramClient) -> None:
    emulator.user_sends_voice(CHAT, b"\0" * (20 * 1024 * 1024 + 1), kind="audio")
    audio = parse_update(client.get_updates()[0]).media
    assert audio is not None and audio.kind == "audio"

    error = error_of(client.get_file, audio.file_id)

    assert type(error) is TelegramFileTooLargeError and "file is too big" in error.description


def test_a_failing_download_is_transient(emulator: TelegramEmulator, client: TelegramClient) -> None:
    emulator.user_sends_voice(CHAT, b"OggS-voice")
    voice = parse_update(client.get_updates()[0]).media
    assert voice is not None
    path = client.get_file(voice.file_id).file_path
    emulator.set_faults({"fail_next": 1, "fail_status": 503, "methods": ["file"]})

    error = error_of(client.download_file, path, max_bytes=1000)

    assert type(error) is TelegramTransientError and error.error_code == 503
    assert client.download_file(path, max_bytes=1000) == b"OggS-voice"


# ------------------------------------------------------------------ parsing updates


def read_one(emulator: TelegramEmulator, client: TelegramClient) -> Any:
    updates = client.get_updates()
    client.get_updates(offset=updates[-1]["update_id"] + 1)
    assert len(updates) == 1
    return parse_update(updates[0])


def test_parse_text_start_and_group(emulator: TelegramEmulator, client: TelegramClient) -> None:
    emulator.user_writes(CHAT, "/start promo_spring", first_name="Анна", username="anna_k")
    start = read_one(emulator, client)
    emulator.user_writes(-1001987654321, "@shop_bot есть в наличии?", user_id=555000111, chat_type="supergroup",
                         title="Оптовики", first_name="Иван")
    group = read_one(emulator, client)

    assert (start.kind, start.chat_id, start.chat_type, start.text) == ("message", CHAT, "private",
                                                                         "/start promo_spring")
    assert start.is_private and start.sender is not None and start.sender.username == "anna_k"
    assert start.sender.first_name == "Анна" and start.message_id == 1 and not start.edited
    assert start.media is None and not start.blocked_bot
    assert (group.chat_id, group.chat_type, group.is_private) == (-1001987654321, "supergroup", False)
    assert group.sender is not None and group.sender.id == 555000111


def test_parse_voice_audio_photo_document_and_sticker(emulator: TelegramEmulator, client: TelegramClient) -> None:
    emulator.user_sends_voice(CHAT, b"OggS" * 10, duration=7)
    voice = read_one(emulator, client)
    emulator.user_sends_voice(CHAT, b"ID3" * 10, kind="audio", file_name="song.mp3")
    audio = read_one(emulator, client)
    emulator.user_sends_photo(CHAT, b"\xff\xd8" * 500, caption="Такой же, но синий?")
    photo = read_one(emulator, client)
    emulator.user_sends_document(CHAT, b"%PDF" * 10, caption="Счёт на оплату")
    document = read_one(emulator, client)
    emulator.user_sends_sticker(CHAT, "👍")
    sticker = read_one(emulator, client)

    assert voice.is_voice and voice.media.kind == "voice"
    assert (voice.media.file_size, voice.media.mime_type, voice.media.duration) == (40, "audio/ogg", 7)
    assert audio.is_voice and (audio.media.kind, audio.media.mime_type, audio.media.file_name) == (
        "audio", "audio/mpeg", "song.mp3")
    assert photo.caption == "Такой же, но синий?" and photo.text == "" and not photo.is_voice
    assert photo.media.kind == "photo" and photo.media.file_size == 1000  # the largest size
    assert client.download_file(client.get_file(photo.media.file_id).file_path, 2000) == b"\xff\xd8" * 500
    assert (document.media.kind, document.media.mime_type, document.caption) == ("document", "application/pdf",
                                                                                 "Счёт на оплату")
    assert (sticker.media.kind, sticker.media.emoji, sticker.text) == ("sticker", "👍", "")


def test_parse_edit_block_and_unblock(emulator: TelegramEmulator, client: TelegramClient) -> None:
    emulator.user_writes(CHAT, "…в Москву?")
    original = read_one(emulator, client)
    emulator.user_edits(CHAT, original.message_id, "…в Казань?")
    edited = read_one(emulator, client)
    emulator.user_blocks(CHAT)
    blocked = read_one(emulator, client)
    emulator.user_unblocks(CHAT)
    unblocked = read_one(emulator, client)

    assert (edited.kind, edited.edited, edited.message_id, edited.text) == ("edited_message", True,
                                                                            original.message_id, "…в Казань?")
    assert edited.edit_date >= edited.date > 0
    assert (blocked.kind, blocked.member_status, blocked.chat_id) == ("my_chat_member", "kicked", CHAT)
    assert blocked.blocked_bot and not blocked.unblocked_bot
    assert unblocked.unblocked_bot and not unblocked.blocked_bot


def test_parse_unknown_kinds_and_malformed_updates() -> None:
    other = parse_update({"update_id": 5, "callback_query": {"id": "1", "data": "x"}})
    sparse = parse_update({"update_id": 6, "message": {"chat": {"id": "not-an-int"}, "photo": "nope"}})

    assert (other.kind, other.chat_id, other.text) == ("other", None, "")
    assert (sparse.kind, sparse.chat_id, sparse.media, sparse.sender) == ("message", None, None, None)
    malformed_updates: list[Any] = [{"message": {}}, {"update_id": "7"}, [1, 2], None]
    for malformed in malformed_updates:
        with pytest.raises(TelegramMalformedUpdateError):
            parse_update(malformed)
