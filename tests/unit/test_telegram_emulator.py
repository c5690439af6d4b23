"""HTTP-level tests of the Telegram Bot API emulator (emulators/telegram/): the wire format, the
webhook (409 for getUpdates while it is set, push with the secret header, retries), the control
endpoints, faults, flood limits, group migration and the command line."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from clients.telegram import TelegramClient, TelegramRateLimitedError, TelegramRejectedError
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


# ------------------------------------------------------------------ flood limits (reference A8)


class FakeClock:
    """The emulator's clock, moved by the test: flood limits are about seconds, and a test never sleeps."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def timed(clock: FakeClock) -> Iterator[TelegramEmulator]:
    with TelegramEmulator(token=TOKEN, clock=clock) as emu:
        yield emu


@pytest.fixture()
def client(timed: TelegramEmulator) -> TelegramClient:
    return TelegramClient(requests.Session(), timed.url, TOKEN, timeout=5)


def users_write(emu: TelegramEmulator, *chat_ids: int) -> None:
    for chat_id in chat_ids:
        control(emu, "text", chat_id=chat_id, text="Здравствуйте")


def test_flood_limits_are_off_by_default(timed: TelegramEmulator, client: TelegramClient) -> None:
    users_write(timed, CHAT)
    for number in range(5):
        client.send_message(CHAT, f"Ответ {number}")  # five at one instant: no limit enforced

    assert len(timed.sent_messages(CHAT)) == 5
    assert timed.flood_limits() == {"enabled": False, "chat_burst": 1, "bot_per_second": 30,
                                    "group_per_minute": 20, "refused": 0}


def test_one_message_a_second_per_chat(timed: TelegramEmulator, client: TelegramClient, clock: FakeClock) -> None:
    users_write(timed, CHAT, CHAT + 1)
    turned_on = control(timed, "flood_limits")  # an empty body: on, with Telegram's limits
    client.send_message(CHAT, "Первый")
    too_soon = call(timed, "sendMessage", chat_id=CHAT, text="Второй")
    other_chat = call(timed, "sendMessage", chat_id=CHAT + 1, text="Другому")  # its own chat's pace
    clock.now += 0.5
    with pytest.raises(TelegramRateLimitedError) as still_too_soon:
        client.send_message(CHAT, "Второй")
    clock.now += 0.5  # a second after the first: the slot is free again
    client.send_message(CHAT, "Второй")
    state = requests.get(ctl(timed, "flood_limits"), timeout=5).json()

    assert turned_on == {"enabled": True, "chat_burst": 1, "bot_per_second": 30, "group_per_minute": 20,
                         "refused": 0, "refusals": []}
    assert too_soon.status_code == 429 and too_soon.json() == {
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1}}
    assert other_chat.status_code == 200
    assert still_too_soon.value.retry_after == 1.0 and still_too_soon.value.error_code == 429
    assert [item["text"] for item in timed.sent_messages(CHAT)] == ["Первый", "Второй"]  # refused ones not sent
    assert [item["message_id"] for item in timed.chat_messages(CHAT) if item["from"]["is_bot"]] == [2, 3]
    assert state["refused"] == 2 and timed.flood_limits()["refused"] == 2
    assert [(item["chat_id"], item["limit"], item["retry_after"]) for item in state["refusals"]] == [
        (CHAT, "chat", 1), (CHAT, "chat", 1)]


def test_a_short_burst_is_allowed_when_configured(timed: TelegramEmulator, client: TelegramClient,
                                                  clock: FakeClock) -> None:
    users_write(timed, CHAT)
    timed.set_flood_limits(chat_burst=3)
    for number in range(3):
        client.send_message(CHAT, f"Часть {number}")
    with pytest.raises(TelegramRateLimitedError):
        client.send_message(CHAT, "Часть 3")
    clock.now += 1.0  # one slot back per second, not the whole burst
    client.send_message(CHAT, "Часть 3")
    with pytest.raises(TelegramRateLimitedError):
        client.send_message(CHAT, "Часть 4")

    assert len(timed.sent_messages(CHAT)) == 4 and timed.flood_limits()["refused"] == 2


def test_the_whole_bot_is_held_to_n_a_second(timed: TelegramEmulator, client: TelegramClient,
                                             clock: FakeClock) -> None:
    chats = [CHAT + number for number in range(6)]
    users_write(timed, *chats)
    control(timed, "flood_limits", bot_per_second=5)
    for chat_id in chats[:5]:
        client.send_message(chat_id, "Рассылка")
        clock.now += 0.125
    with pytest.raises(TelegramRateLimitedError) as over:
        client.send_message(chats[5], "Рассылка")  # a chat of its own, but the bot's 5 a second are spent
    clock.now += 0.375  # a second after the first send, which has left the window
    client.send_message(chats[5], "Рассылка")

    assert over.value.retry_after == 1.0
    assert timed.flood_refusals()[0]["limit"] == "bot" and len(timed.sent_messages()) == 6


def test_a_group_gets_20_a_minute_and_retry_after_counts_whole_seconds(timed: TelegramEmulator,
                                                                        clock: FakeClock) -> None:
    group = -4127433587
    control(timed, "text", chat_id=group, text="Всем привет", chat_type="group", title="Оптовики")
    timed.set_flood_limits()
    for _ in range(20):
        assert call(timed, "sendMessage", chat_id=group, text="Новости").status_code == 200
        clock.now += 1.0
    clock.now += 0.5  # 20.5 s after the first of the 20: its slot frees in 39.5 s
    refused = call(timed, "sendMessage", chat_id=group, text="Новости")

    assert refused.status_code == 429 and refused.json()["parameters"] == {"retry_after": 40}
    assert refused.json()["description"] == "Too Many Requests: retry after 40"
    assert timed.flood_refusals()[-1]["limit"] == "group" and len(timed.sent_messages(group)) == 20


def test_flood_limit_controls(timed: TelegramEmulator, client: TelegramClient) -> None:
    users_write(timed, CHAT)
    bad_value = requests.post(ctl(timed, "flood_limits"), json={"chat_burst": 0}, timeout=5)
    unknown_key = requests.post(ctl(timed, "flood_limits"), json={"per_chat": 2}, timeout=5)
    control(timed, "flood_limits", chat_burst=2)
    control(timed, "faults", rate_limited_next=1, methods=["sendMessage"])
    with pytest.raises(TelegramRateLimitedError):
        client.send_message(CHAT, "Ответ")  # an injected 429: not the flood limits' doing
    limits_after_fault = timed.flood_limits()
    off = control(timed, "flood_limits", enabled=False)
    for _ in range(3):
        client.send_message(CHAT, "Ответ")
    control(timed, "flood_limits")
    control(timed, "reset")

    assert bad_value.status_code == 400 and bad_value.json() == {"error": "chat_burst must be a positive integer"}
    assert unknown_key.status_code == 400
    assert limits_after_fault["chat_burst"] == 2 and limits_after_fault["refused"] == 0
    assert off["enabled"] is False and len(timed.sent_messages()) == 0  # reset forgot the sends
    assert timed.flood_limits()["enabled"] is False  # and turned the limits off


# ------------------------------------------------------------------ a group upgraded to a supergroup


def test_sends_to_a_migrated_group_answer_400_with_migrate_to_chat_id(emulator: TelegramEmulator) -> None:
    group = -4127433587
    control(emulator, "text", chat_id=group, text="Всем привет", chat_type="group", title="Оптовики")
    migrated = control(emulator, "migrate", chat_id=group)
    refused = call(emulator, "sendMessage", chat_id=group, text="Ответ")
    client = TelegramClient(requests.Session(), emulator.url, TOKEN, timeout=5)
    with pytest.raises(TelegramRejectedError) as rejected:
        client.send_message(group, "Ответ")
    resent = client.send_message(migrated["migrate_to_chat_id"], "Ответ")
    chosen_id = emulator.migrate_group(-555, -1009999999999)
    not_a_group = requests.post(ctl(emulator, "migrate"), json={"chat_id": CHAT}, timeout=5)

    assert migrated == {"migrate_to_chat_id": -1004127433587}
    assert refused.status_code == 400 and refused.json() == {
        "ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": -1004127433587}}
    assert rejected.value.error_code == 400 and "upgraded to a supergroup" in rejected.value.description
    assert [(item["chat"]["id"], item["chat"]["type"], item["chat"]["title"]) for item in emulator.sent_messages()] \
        == [(-1004127433587, "supergroup", "Оптовики")]
    assert resent.message_id == 1
    assert chosen_id == -1009999999999
    assert call(emulator, "sendMessage", chat_id=-555, text="x").json()["parameters"] == {
        "migrate_to_chat_id": -1009999999999}
    assert not_a_group.status_code == 400


def test_the_command_line() -> None:
    with emulator_command("emulators.telegram", "--token", "77:cli-token") as (port, banner, process):
        me = requests.get(f"http://127.0.0.1:{port}/bot77:cli-token/getMe", timeout=5)
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)

    assert banner == f"Telegram emulator listening on http://127.0.0.1:{port}"
    assert me.status_code == 200 and me.json()["result"]["id"] == 77
    assert exit_code == 0
