"""HTTP-level tests of the Telegram Bot API emulator (emulators/telegram/): the wire format, the
webhook (409 for getUpdates while it is set, push with the secret header, retries), the control
endpoints, faults and the command line."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from emulators.telegram import TelegramEmulator
from emulators.telegram.webhooks import WEBHOOK_ATTEMPTS
from tests.support.emulators import emulator_command
from tests.support.telegram import WebhookReceiver

TOKEN = "42:emulator-test-token"
CHAT = 123456789


@pytest.fixture()
def emulator() -> Iterator[TelegramEmulator]:
    with TelegramEmulator(token=TOKEN) as emu:
        yield emu


def api(emu: TelegramEmulator, method: str, token: str = TOKEN) -> str:
    return f"{emu.url}/bot{token}/{method}"


def ctl(emu: TelegramEmulator, path: str) -> str:
    return f"{emu.url}/_emulator/{path}"


def call(emu: TelegramEmulator, method: str, **params: Any) -> requests.Response:
    return requests.post(api(emu, method), json=params, timeout=5)


def control(emu: TelegramEmulator, path: str, **body: Any) -> Any:
    response = requests.post(ctl(emu, path), json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_webhook(emu: TelegramEmulator, done: Any) -> None:
    """Until `done(webhook)` holds (the pusher notifies after each update it settles)."""
    backend = emu.backend
    with backend.changed:
        assert backend.changed.wait_for(lambda: done(backend.webhook), timeout=5)


# ------------------------------------------------------------------ wire format


def test_envelopes_and_parameter_encodings(emulator: TelegramEmulator) -> None:
    as_get = requests.get(api(emulator, "getMe"), timeout=5)
    as_form = requests.post(api(emulator, "getme"), data={}, timeout=5)  # method names ignore case
    control(emulator, "text", chat_id=CHAT, text="Привет")
    as_query = requests.get(api(emulator, "getUpdates"), params={"offset": "0", "limit": "1",
                                                                  "allowed_updates": json.dumps(["message"])},
                            timeout=5)
    as_form_send = requests.post(api(emulator, "sendMessage"), data={"chat_id": str(CHAT), "text": "Здравствуйте"},
                                 timeout=5)

    assert as_get.status_code == 200 and as_get.headers["Content-Type"].startswith("application/json")
    body = as_get.json()
    assert body["ok"] is True and set(body) == {"ok", "result"}
    assert body["result"] == as_form.json()["result"]
    assert body["result"]["id"] == 42 and body["result"]["is_bot"] is True and body["result"]["username"]
    assert as_query.json()["result"][0]["message"]["text"] == "Привет"
    sent = as_form_send.json()["result"]
    assert sent["chat"] == {"id": CHAT, "type": "private", "first_name": "Anna"} and sent["from"]["id"] == 42


@pytest.mark.parametrize(("method", "token", "status", "description"), [
    ("getMe", "42:wrong", 401, "Unauthorized"),
    ("noSuchMethod", TOKEN, 404, "Not Found: method not found"),
    ("getFile", TOKEN, 400, "Bad Request: invalid file_id"),
    ("sendMessage", TOKEN, 400, "Bad Request: chat not found"),
])  # fmt: skip
def test_error_envelope_status_equals_error_code(emulator: TelegramEmulator, method: str, token: str,
                                                 status: int, description: str) -> None:
    response = requests.post(api(emulator, method, token), json={"chat_id": 1, "text": "x", "file_id": "x"},
                             timeout=5)

    assert response.status_code == status
    assert response.json() == {"ok": False, "error_code": status, "description": description}


def test_send_message_records_the_chat_and_its_message_ids(emulator: TelegramEmulator) -> None:
    control(emulator, "text", chat_id=CHAT, text="Есть доставка?")
    reply = call(emulator, "sendMessage", chat_id=CHAT, text="Да.",
                 reply_parameters={"message_id": 1}).json()["result"]
    missing = call(emulator, "sendMessage", chat_id=CHAT, text="Да.", reply_parameters={"message_id": 77})
    too_long = call(emulator, "sendMessage", chat_id=CHAT, text="я" * 4097)
    sent = requests.get(ctl(emulator, "sent"), params={"chat_id": CHAT}, timeout=5).json()

    assert (reply["message_id"], reply["text"], reply["reply_to_message"]["text"]) == (2, "Да.", "Есть доставка?")
    assert missing.status_code == 400 and missing.json()["description"] == "Bad Request: message to be replied " \
                                                                           "not found"
    assert too_long.status_code == 400 and too_long.json()["description"] == "Bad Request: message is too long"
    assert [item["message_id"] for item in sent] == [2]
    assert [item["message_id"] for item in emulator.chat_messages(CHAT)] == [1, 2]


def test_files_are_served_at_the_real_path(emulator: TelegramEmulator) -> None:
    audio = b"OggS" + bytes(range(200))
    update = control(emulator, "voice", chat_id=CHAT, data_b64=base64.b64encode(audio).decode(), duration=3)
    file_id = update["message"]["voice"]["file_id"]
    info = call(emulator, "getFile", file_id=file_id).json()["result"]
    download = requests.get(f"{emulator.url}/file/bot{TOKEN}/{info['file_path']}", timeout=5)
    wrong_token = requests.get(f"{emulator.url}/file/bot42:nope/{info['file_path']}", timeout=5)

    assert set(info) == {"file_id", "file_unique_id", "file_size", "file_path"} and info["file_size"] == len(audio)
    assert download.status_code == 200 and download.content == audio
    assert wrong_token.status_code == 401


# ------------------------------------------------------------------ webhook


def test_get_updates_gets_409_while_a_webhook_is_set(emulator: TelegramEmulator) -> None:
    set_response = call(emulator, "setWebhook", url="https://bot.example.com/hook", secret_token="abc_DEF-1")
    conflict = call(emulator, "getUpdates")
    info = call(emulator, "getWebhookInfo").json()["result"]
    deleted = call(emulator, "deleteWebhook").json()
    after = call(emulator, "getUpdates")

    assert set_response.json() == {"ok": True, "result": True, "description": "Webhook was set"}
    assert conflict.status_code == 409 and conflict.json() == {
        "ok": False, "error_code": 409,
        "description": "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
                       "delete the webhook first"}
    assert info["url"] == "https://bot.example.com/hook" and info["pending_update_count"] == 0
    assert deleted == {"ok": True, "result": True, "description": "Webhook was deleted"}
    assert after.status_code == 200 and after.json()["result"] == []


def test_webhook_push_carries_the_secret_header(emulator: TelegramEmulator) -> None:
    with WebhookReceiver() as receiver:
        call(emulator, "setWebhook", url=receiver.url, secret_token="s3cret_token")
        control(emulator, "text", chat_id=CHAT, text="Привет")
        control(emulator, "sticker", chat_id=CHAT, emoji="🔥")
        first, second = receiver.wait_for(2)
        wait_for_webhook(emulator, lambda webhook: webhook.delivered == 2)

    assert first.path == "/webhooks/telegram/bot"
    assert first.headers["x-telegram-bot-api-secret-token"] == "s3cret_token"
    assert first.headers["content-type"] == "application/json"
    assert first.body["message"]["text"] == "Привет" and second.body["message"]["sticker"]["emoji"] == "🔥"
    assert second.body["update_id"] == first.body["update_id"] + 1
    assert emulator.webhook_info()["pending_update_count"] == 0


def test_webhook_retries_a_failing_receiver_then_gives_up(emulator: TelegramEmulator) -> None:
    with WebhookReceiver() as receiver:
        receiver.status = 500
        call(emulator, "setWebhook", url=receiver.url, secret_token="s3cret")
        control(emulator, "text", chat_id=CHAT, text="Привет")
        deliveries = receiver.wait_for(WEBHOOK_ATTEMPTS)
        wait_for_webhook(emulator, lambda webhook: webhook.last_error_date > 0)
        info = call(emulator, "getWebhookInfo").json()["result"]

    assert {delivery.body["update_id"] for delivery in deliveries} == {deliveries[0].body["update_id"]}
    assert info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"
    assert info["pending_update_count"] == 0


def test_webhook_duplicated_delivery(emulator: TelegramEmulator) -> None:
    control(emulator, "faults", duplicate_updates=1)
    with WebhookReceiver() as receiver:
        call(emulator, "setWebhook", url=receiver.url, secret_token="s3cret")
        control(emulator, "text", chat_id=CHAT, text="Привет")
        first, second = receiver.wait_for(2)

    assert first.body == second.body


def test_webhook_secret_token_must_use_allowed_characters(emulator: TelegramEmulator) -> None:
    response = call(emulator, "setWebhook", url="https://bot.example.com/hook", secret_token="no spaces!")

    assert response.status_code == 400
    assert response.json()["description"] == "Bad Request: secret token contains unallowed characters"


# ------------------------------------------------------------------ control endpoints and faults


def test_control_endpoints_make_every_kind_of_update(emulator: TelegramEmulator) -> None:
    pixel = base64.b64encode(b"\xff\xd8" * 50).decode()
    control(emulator, "text", chat_id=CHAT, text="/start promo")
    control(emulator, "voice", chat_id=CHAT, data_b64=pixel, kind="audio", file_name="a.mp3")
    control(emulator, "photo", chat_id=CHAT, data_b64=pixel, caption="Такой же?")
    control(emulator, "document", chat_id=CHAT, data_b64=pixel, caption="Счёт")
    control(emulator, "sticker", chat_id=CHAT)
    control(emulator, "edit", chat_id=CHAT, message_id=1, text="/start other")
    control(emulator, "block", chat_id=CHAT)
    control(emulator, "unblock", chat_id=CHAT)
    updates = requests.get(ctl(emulator, "updates"), timeout=5).json()["pending"]
    unknown_field = requests.post(ctl(emulator, "text"), json={"chat_id": CHAT, "text": "x", "oops": 1}, timeout=5)
    unknown_message = requests.post(ctl(emulator, "edit"), json={"chat_id": CHAT, "message_id": 99, "text": "x"},
                                    timeout=5)

    kinds = [next(key for key in update if key != "update_id") for update in updates]
    assert kinds == ["message"] * 5 + ["edited_message", "my_chat_member", "my_chat_member"]
    assert updates[0]["message"]["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    assert updates[1]["message"]["audio"]["file_name"] == "a.mp3"
    assert [size["width"] for size in updates[2]["message"]["photo"]] == [90, 1280]
    assert updates[0]["message"]["text"] == "/start promo"  # the edit left the queued original alone
    assert updates[5]["edited_message"]["message_id"] == 1 and "edit_date" in updates[5]["edited_message"]
    assert updates[5]["edited_message"]["text"] == "/start other"
    assert updates[5]["edited_message"]["entities"][0]["length"] == 6
    assert updates[6]["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    assert updates[7]["my_chat_member"]["new_chat_member"]["status"] == "member"
    assert unknown_field.status_code == 400 and unknown_message.status_code == 404


def test_block_without_notice_and_reset(emulator: TelegramEmulator) -> None:
    control(emulator, "text", chat_id=CHAT, text="Привет")
    assert control(emulator, "block", chat_id=CHAT, notify=False) == {"update": None}
    blocked = call(emulator, "sendMessage", chat_id=CHAT, text="Ответ")
    control(emulator, "faults", fail_next=3)
    control(emulator, "reset")
    after = call(emulator, "getUpdates")

    assert blocked.status_code == 403 and blocked.json()["description"] == "Forbidden: bot was blocked by the user"
    assert after.status_code == 200 and after.json()["result"] == []
    assert emulator.faults()["fail_next"] == 0 and emulator.sent_messages() == []


def test_rate_limit_fault_answers_429_with_retry_after(emulator: TelegramEmulator) -> None:
    control(emulator, "faults", rate_limited_next=1, retry_after=12, methods=["getMe"])
    limited = call(emulator, "getMe")
    other_method = call(emulator, "getUpdates")
    recovered = call(emulator, "getMe")

    assert limited.status_code == 429 and limited.json() == {
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 12",
        "parameters": {"retry_after": 12}}
    assert other_method.status_code == 200 and recovered.status_code == 200


def test_random_5xx_and_timeouts(emulator: TelegramEmulator) -> None:
    control(emulator, "faults", rate_5xx=1.0, fail_status=503, seed=7)
    failing = call(emulator, "getMe")
    control(emulator, "faults", timeout_next=1, timeout_seconds=5)
    with pytest.raises(requests.ReadTimeout):
        requests.post(api(emulator, "getMe"), json={}, timeout=0.3)
    bad_faults = requests.post(ctl(emulator, "faults"), json={"rate_5xx": 2}, timeout=5)
    unknown_key = requests.post(ctl(emulator, "faults"), json={"nope": 1}, timeout=5)

    assert failing.status_code == 503 and failing.json()["description"] == "Service Unavailable"
    assert bad_faults.status_code == 400 and unknown_key.status_code == 400


def test_the_command_line() -> None:
    with emulator_command("emulators.telegram", "--token", "77:cli-token") as (port, banner, process):
        me = requests.get(f"http://127.0.0.1:{port}/bot77:cli-token/getMe", timeout=5)
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)

    assert banner == f"Telegram emulator listening on http://127.0.0.1:{port}"
    assert me.status_code == 200 and me.json()["result"]["id"] == 77
    assert exit_code == 0
