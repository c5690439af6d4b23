"""Wappi's Telegram API (`/tapi/`): the real `WappiTelegramClient` against the Wappi emulator's
Telegram profile over HTTP, the refusal of the other API, auth as on `/api/`, several profiles kept
apart (webhooks, chats, sends, files), and the parsing of Telegram payloads."""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from clients.wappi import (
    WappiAuthError,
    WappiClient,
    WappiNotFoundError,
    WappiRejectedError,
    WappiTelegramClient,
    WappiTransientError,
    parse_telegram_dialog,
    parse_telegram_message,
)
from emulators.wappi import WappiEmulator
from tests.support.telegram import WebhookReceiver

TOKEN = "tapi-test-token-0123456789abcdef"
WHATSAPP_PROFILE = "1a2b3c4d-5e6f"
TELEGRAM_PROFILE = "7f8e9d0c-1b2a"
CUSTOMER = "60227586"  # a Telegram user id
OWN_ID = "5279188641"


@pytest.fixture()
def emulator() -> Iterator[WappiEmulator]:
    with WappiEmulator(token=TOKEN, profile_ids=(WHATSAPP_PROFILE,), telegram_profile_ids=(TELEGRAM_PROFILE,),
                       own_telegram_id=OWN_ID) as running:
        yield running


@pytest.fixture()
def telegram(emulator: WappiEmulator) -> WappiTelegramClient:
    return WappiTelegramClient(requests.Session(), emulator.url, TOKEN, TELEGRAM_PROFILE, timeout=2.0)


def control(emulator: WappiEmulator, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{emulator.url}/_emulator/{path}", json=body, timeout=5)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def write(emulator: WappiEmulator, text: str = "Здравствуйте, есть доставка?", **fields: Any) -> dict[str, Any]:
    return control(emulator, "customer_message", {"profile_id": TELEGRAM_PROFILE, "phone": CUSTOMER,
                                                  "text": text, "name": "Sinn", **fields})


def tapi(emulator: WappiEmulator, path: str, **params: str) -> requests.Response:
    return requests.get(f"{emulator.url}/tapi/sync/{path}", params={"profile_id": TELEGRAM_PROFILE, **params},
                        headers={"Authorization": TOKEN}, timeout=5)


# --------------------------------------------------------------------------- status and refusals


def test_status_of_a_telegram_profile(emulator: WappiEmulator, telegram: WappiTelegramClient) -> None:
    status = telegram.get_status()
    assert status.healthy
    raw = tapi(emulator, "get/status").json()
    assert "status" not in raw and raw["platform"] == "tg" and raw["account"]["user_id"] == int(OWN_ID)
    control(emulator, "profile", {"profile_id": TELEGRAM_PROFILE, "authorized": False})
    assert not telegram.get_status().healthy
    with pytest.raises(WappiAuthError):
        telegram.get_chats()


def test_each_api_refuses_the_other_kind_of_profile(emulator: WappiEmulator) -> None:
    session = requests.Session()
    whatsapp_on_telegram = WappiClient(session, emulator.url, TOKEN, TELEGRAM_PROFILE, timeout=2.0)
    telegram_on_whatsapp = WappiTelegramClient(session, emulator.url, TOKEN, WHATSAPP_PROFILE, timeout=2.0)
    with pytest.raises(WappiNotFoundError) as on_api:
        whatsapp_on_telegram.get_status()
    assert on_api.value.status_code == 400 and "/tapi/" in on_api.value.detail
    with pytest.raises(WappiNotFoundError) as on_tapi:
        telegram_on_whatsapp.get_chats()
    assert on_tapi.value.status_code == 400 and "/api/" in on_tapi.value.detail
    raw = requests.get(f"{emulator.url}/api/sync/get/status", params={"profile_id": TELEGRAM_PROFILE},
                       headers={"Authorization": TOKEN}, timeout=5)
    assert raw.status_code == 400 and raw.json()["status"] == "error"
    # The WhatsApp profile beside it is served as before.
    assert WappiClient(session, emulator.url, TOKEN, WHATSAPP_PROFILE, timeout=2.0).get_status().healthy


OTHER_TOKEN = "other-account-token-0123456789abcdef"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "wrong-token"}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": OTHER_TOKEN},
], ids=["no token", "wrong token", "bearer prefix", "another account's token"])  # fmt: skip
def test_tapi_checks_auth_exactly_like_api(emulator: WappiEmulator, headers: dict[str, str]) -> None:
    emulator.add_account(OTHER_TOKEN, ["9a8b7c6d-5e4f"], telegram_profile_ids=["8a7b6c5d-4e3f"])
    calls = [("GET", "sync/get/status", None), ("GET", "sync/chats/get", None),
             ("POST", "sync/message/send", {"recipient": CUSTOMER, "body": "Ответ"}),
             ("POST", "webhook/url/set", None)]
    answers: dict[str, list[tuple[int, Any]]] = {}
    for api_prefix, profile_id in (("api", WHATSAPP_PROFILE), ("tapi", TELEGRAM_PROFILE)):
        answers[api_prefix] = [
            (response.status_code, response.json()) for response in (
                requests.request(method, f"{emulator.url}/{api_prefix}/{path}", json=body, headers=headers,
                                 params={"profile_id": profile_id, "url": "https://example.test/hook"}, timeout=5)
                for method, path, body in calls)]

    assert answers["tapi"] == answers["api"] == [(401, {"status": "error", "detail": "Unauthorized"})] * len(calls)
    assert emulator.sent_messages(TELEGRAM_PROFILE) == emulator.sent_messages(WHATSAPP_PROFILE) == []
    for api_prefix, profile_id in (("api", WHATSAPP_PROFILE), ("tapi", TELEGRAM_PROFILE)):
        installed = requests.get(f"{emulator.url}/{api_prefix}/webhook/url/get", params={"profile_id": profile_id},
                                 headers={"Authorization": TOKEN}, timeout=5).json()
        assert installed["installed"] is False and installed["url"] == ""


def test_the_token_stays_out_of_errors_and_logs(emulator: WappiEmulator, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-token-that-must-not-leak"
    client = WappiTelegramClient(requests.Session(), emulator.url, wrong, TELEGRAM_PROFILE, timeout=2.0)
    with caplog.at_level(logging.DEBUG), pytest.raises(WappiAuthError) as failure:
        client.get_status()
    assert failure.value.status_code == 401
    assert wrong not in str(failure.value) and wrong not in failure.value.detail and wrong not in caplog.text


# --------------------------------------------------------------------------- chats and messages


def test_a_customer_message_shows_in_chats_and_history(emulator: WappiEmulator,
                                                       telegram: WappiTelegramClient) -> None:
    sent = write(emulator, full_name="Sinn Test", username="sinay")
    assert sent["chat_id"] == CUSTOMER and sent["message_id"].isdigit()
    dialogs, total = telegram.get_chats()
    assert total == 1
    dialog = dialogs[0]
    assert (dialog.chat_id, dialog.phone, dialog.name, dialog.first_name) == (CUSTOMER, CUSTOMER, "Sinn Test", "Sinn")
    assert dialog.is_person and not dialog.is_group and not dialog.last_from_me
    assert dialog.last_message_id == sent["message_id"] and dialog.last_time == sent["time"]
    assert dialog.unread_count == 1
    raw = tapi(emulator, "chats/get").json()["dialogs"][0]
    assert raw["type"] == "user" and "isGroup" not in raw and raw["user"]["Username"] == "sinay"
    assert raw["last_timestamp"] == sent["time"] and isinstance(raw["last_time"], str)

    messages = telegram.get_messages(CUSTOMER)
    assert [(m.id, m.type, m.text, m.from_me, m.phone) for m in messages] == [
        (sent["message_id"], "text", "Здравствуйте, есть доставка?", False, CUSTOMER)]
    assert messages[0].is_person and messages[0].sender_name == "Sinn"


def test_send_reply_and_mark_read(emulator: WappiEmulator, telegram: WappiTelegramClient) -> None:
    inbound = write(emulator)
    reply = telegram.reply(inbound["message_id"], "Да, доставляем по городу")
    direct = telegram.send_message(CUSTOMER, "Ещё вопрос?")
    assert reply.message_id.isdigit() and int(direct.message_id) > int(reply.message_id)
    assert [(item["body"], item["message_id"], item["reply_to"]) for item in emulator.sent_messages(TELEGRAM_PROFILE)] \
        == [("Да, доставляем по городу", reply.message_id, inbound["message_id"]),
            ("Ещё вопрос?", direct.message_id, None)]
    newest = telegram.get_messages(CUSTOMER)
    assert [(m.text, m.from_me, m.from_api, m.type) for m in newest[:2]] == [
        ("Ещё вопрос?", True, True, "text"), ("Да, доставляем по городу", True, True, "text")]
    assert newest[1].raw["from"] == OWN_ID and newest[1].raw["isReply"]

    emulator.clear_requests()
    telegram.mark_read(inbound["message_id"])
    (request,) = [r for r in emulator.requests_log() if r["path"].endswith("mark/read")]
    assert request["path"] == "/tapi/sync/message/mark/read" and "mark_all" not in request["query"]
    dialogs, _ = telegram.get_chats()
    assert dialogs[0].unread_count == 0


def test_an_operator_reply_from_the_phone_and_a_late_message(emulator: WappiEmulator,
                                                             telegram: WappiTelegramClient) -> None:
    write(emulator, "Есть синий?")
    control(emulator, "phone_message", {"profile_id": TELEGRAM_PROFILE, "phone": CUSTOMER, "text": "Есть"})
    late = control(emulator, "late_message", {"profile_id": TELEGRAM_PROFILE, "phone": CUSTOMER,
                                              "text": "А красный?", "written_ago": 3600})
    messages = telegram.get_messages(CUSTOMER)
    assert [(m.text, m.from_me, m.from_api) for m in messages] == [
        ("Есть", True, False), ("Есть синий?", False, False), ("А красный?", False, False)]
    assert messages[-1].id == late["message_id"]
    dialogs, _ = telegram.get_chats()
    assert dialogs[0].last_from_me


def test_group_and_channel_dialogs_are_no_persons(emulator: WappiEmulator, telegram: WappiTelegramClient) -> None:
    write(emulator, "Всем привет", group=True, group_id="4127433587", group_name="Оптовики")
    control(emulator, "channel_message", {"profile_id": TELEGRAM_PROFILE, "chat_id": "1987654321",
                                          "text": "Новости магазина"})
    write(emulator, "Лично вам")
    dialogs = {dialog.chat_id: dialog for dialog in telegram.get_chats()[0]}
    assert {chat_id: (d.is_group, d.is_channel, d.is_person) for chat_id, d in dialogs.items()} == {
        "4127433587": (True, False, False), "1987654321": (False, True, False), CUSTOMER: (False, False, True)}
    assert dialogs["4127433587"].name == "Оптовики"
    (group_message,) = telegram.get_messages("4127433587")
    assert group_message.is_group and not group_message.is_person and group_message.raw["from"] == CUSTOMER
    (channel_post,) = telegram.get_messages("1987654321")
    assert channel_post.is_channel and not channel_post.is_person


# --------------------------------------------------------------------------- media


@pytest.mark.parametrize(("message_type", "mime_prefix"), [
    ("ptt", "audio/ogg"), ("audio", "audio/mpeg"), ("image", "image/jpeg"), ("video", "video/mp4"),
    ("document", "application/pdf"),
])  # fmt: skip
def test_each_media_kind_parses_and_downloads(emulator: WappiEmulator, telegram: WappiTelegramClient,
                                              message_type: str, mime_prefix: str) -> None:
    data = f"{message_type}-bytes".encode() + bytes(range(8))
    sent = write(emulator, "", type=message_type, caption="Такой же, но синий?",
                 media_b64=base64.b64encode(data).decode())
    (message,) = telegram.get_messages(CUSTOMER)
    assert (message.id, message.type, message.text, message.caption) == (
        sent["message_id"], message_type, "", "Такой же, но синий?")
    assert message.raw["body"] == "" and message.raw["mimetype"].startswith(mime_prefix)
    assert message.file_link == message.raw["s3Info"]["url"]
    assert message.raw["media_info"]["size"] == len(data)
    media = telegram.download_media(message.id)
    assert media.data == data and media.mime_type.startswith(mime_prefix) and media.media_type == message_type
    raw = tapi(emulator, "message/media/download", message_id=message.id).json()
    assert "file_b64" not in raw and raw["file_link"] and raw["file_link_expire"] > raw["timestamp"]


def test_an_expired_file_cannot_be_downloaded(emulator: WappiEmulator, telegram: WappiTelegramClient) -> None:
    write(emulator, "", type="ptt", media_expired=True)
    (message,) = telegram.get_messages(CUSTOMER)
    assert message.raw["s3Info"] == {} and message.file_link == ""
    with pytest.raises(WappiRejectedError) as failure:
        telegram.download_media(message.id)
    assert failure.value.detail == "download media error"


def test_a_sticker_and_a_location_are_no_text(emulator: WappiEmulator, telegram: WappiTelegramClient) -> None:
    write(emulator, "", type="sticker")
    write(emulator, "Точка выдачи", type="location")
    sticker, location = reversed(telegram.get_messages(CUSTOMER))
    assert (sticker.type, sticker.text, location.type, location.text) == ("sticker", "", "location", "")


# --------------------------------------------------------------------------- faults and webhooks


def test_faults_hit_the_telegram_api(emulator: WappiEmulator, telegram: WappiTelegramClient) -> None:
    inbound = write(emulator)
    emulator.set_faults({"fail_next": 2, "fail_status": 503, "paths": ["/tapi/"]})
    with pytest.raises(WappiTransientError):
        telegram.get_chats()  # retried once inside the client: both attempts fail
    emulator.set_faults({"rate_accept_then_5xx": 1.0, "paths": ["message/reply"]})
    with pytest.raises(WappiTransientError):
        telegram.reply(inbound["message_id"], "Ответ")
    assert [item["body"] for item in emulator.sent_messages(TELEGRAM_PROFILE)] == ["Ответ"]  # accepted anyway


def test_webhooks_carry_telegram_payloads(emulator: WappiEmulator) -> None:
    received: queue.Queue[tuple[str | None, dict[str, Any]]] = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.put((self.headers.get("Authorization"), json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        control(emulator, "webhook", {"profile_id": TELEGRAM_PROFILE,
                                      "url": f"http://127.0.0.1:{server.server_address[1]}/hook", "secret": "s3"})
        text = write(emulator, username="sinay")
        secret, first = received.get(timeout=5)
        voice = write(emulator, "", type="ptt", media_b64=base64.b64encode(b"OggS-voice").decode(), duration=4)
        _, second = received.get(timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert secret == "s3"
    (incoming,) = first["messages"]
    assert (incoming["wh_type"], incoming["type"], incoming["id"], incoming["chatId"], incoming["from"],
            incoming["to"], incoming["chat_type"], incoming["is_me"], incoming["contact_username"]) == (
        "incoming_message", "text", text["message_id"], CUSTOMER, CUSTOMER, OWN_ID, "user", False, "sinay")
    assert "platform" not in incoming and "media_info" not in incoming
    message = parse_telegram_message(incoming)
    assert (message.text, message.is_person, message.from_me) == ("Здравствуйте, есть доставка?", True, False)
    (voice_note,) = second["messages"]
    assert voice_note["id"] == voice["message_id"] and voice_note["type"] == "ptt"
    assert base64.b64decode(voice_note["body"]) == b"OggS-voice" and voice_note["length_seconds"] == 4
    assert voice_note["file_link"] and voice_note["mimetype"].startswith("audio/ogg")
    assert parse_telegram_message(voice_note).text == ""


WHATSAPP_CUSTOMER = "79115576367"


def test_several_profiles_push_to_their_own_webhooks_and_keep_their_state_apart() -> None:
    whatsapp = (WHATSAPP_PROFILE, "2a3b4c5d-6e7f")
    telegram = (TELEGRAM_PROFILE, "8f9e0d1c-2b3a")
    customers = {**dict.fromkeys(whatsapp, WHATSAPP_CUSTOMER), **dict.fromkeys(telegram, CUSTOMER)}
    with WappiEmulator(token=TOKEN, profile_ids=whatsapp, telegram_profile_ids=telegram) as emulator, \
            ExitStack() as stack:
        receivers = {profile_id: stack.enter_context(WebhookReceiver()) for profile_id in customers}
        for profile_id, receiver in receivers.items():
            control(emulator, "webhook", {"profile_id": profile_id, "url": receiver.url, "secret": f"s-{profile_id}"})
        # The same customer writes to every profile of a platform. Telegram accounts number their
        # messages alike, so the two Telegram profiles' first messages share an id.
        voice = write(emulator, "", type="ptt", media_b64=base64.b64encode(b"OggS-first-profile").decode())
        text = control(emulator, "customer_message", {"profile_id": telegram[1], "phone": CUSTOMER,
                                                      "text": "Текст второму"})
        for profile_id in whatsapp:
            control(emulator, "customer_message", {"profile_id": profile_id, "phone": WHATSAPP_CUSTOMER,
                                                   "text": f"Привет {profile_id}"})
        for profile_id, customer in customers.items():
            control(emulator, "phone_message", {"profile_id": profile_id, "phone": customer,
                                                "text": f"Оператор {profile_id}"})
        deliveries = {profile_id: receiver.wait_for(2) for profile_id, receiver in receivers.items()}
        session = requests.Session()
        clients = {profile_id: (WappiTelegramClient if profile_id in telegram else WappiClient)(
            session, emulator.url, TOKEN, profile_id, timeout=2.0) for profile_id in customers}
        clients[telegram[0]].send_message(CUSTOMER, "Ответ первого")
        clients[whatsapp[0]].send_message(WHATSAPP_CUSTOMER, "Ответ первого")
        first_voice = clients[telegram[0]].download_media(voice["message_id"])
        with pytest.raises(WappiRejectedError):
            clients[telegram[1]].download_media(text["message_id"])  # the same id: a text here, no file
        second_history = tapi(emulator, "messages/get", chat_id=CUSTOMER, profile_id=telegram[1]).json()
        whatsapp_history = [m.text for m in clients[whatsapp[1]].get_messages(WHATSAPP_CUSTOMER)]
        telegram_history = [m.text for m in clients[telegram[1]].get_messages(CUSTOMER)]
        sent = {profile_id: [item["body"] for item in emulator.sent_messages(profile_id)] for profile_id in customers}
        arrived = {profile_id: len(receiver.deliveries) for profile_id, receiver in receivers.items()}

    assert voice["message_id"] == text["message_id"]
    assert arrived == dict.fromkeys(customers, 2)
    for profile_id, items in deliveries.items():
        assert {delivery.headers["authorization"] for delivery in items} == {f"s-{profile_id}"}
        pushed = [message for delivery in items for message in delivery.body["messages"]]
        assert {message["profile_id"] for message in pushed} == {profile_id}
        assert sorted(message["wh_type"] for message in pushed) == ["incoming_message", "outgoing_message_phone"]
        assert f"Оператор {profile_id}" in {message["body"] for message in pushed}
    second_pushed = {m["wh_type"]: m for d in deliveries[telegram[1]] for m in d.body["messages"]}
    assert second_pushed["incoming_message"]["body"] == "Текст второму"
    assert "file_link" not in second_pushed["incoming_message"]
    assert [m["s3Info"] for m in second_history["messages"]] == [{}, {}]
    assert first_voice.data == b"OggS-first-profile"
    assert sent == {whatsapp[0]: ["Ответ первого"], whatsapp[1]: [], telegram[0]: ["Ответ первого"], telegram[1]: []}
    assert whatsapp_history == [f"Оператор {whatsapp[1]}", f"Привет {whatsapp[1]}"]
    assert telegram_history == [f"Оператор {telegram[1]}", "Текст второму"]


# --------------------------------------------------------------------------- parsing the reference's payloads


def test_parse_the_reference_dialog() -> None:
    dialog = parse_telegram_dialog({
        "id": "1234567890", "type": "user",
        "user": {"ID": 1234567890, "FirstName": "Test", "LastName": "User", "Username": "test_user"},
        "unread_count": 2, "name": "", "last_message_id": 287, "last_message_type": "text",
        "last_timestamp": None, "last_time": "2022-03-18T14:42:41Z",
        "last_message_sender": {"id": "1234567890", "type": "user", "pushname": "Test User", "isMe": False},
    })  # fmt: skip
    assert (dialog.chat_id, dialog.phone, dialog.name, dialog.full_name, dialog.last_message_id) == (
        "1234567890", "1234567890", "Test User", "Test User", "287")
    assert dialog.last_time == 1647614561 and dialog.unread_count == 2 and dialog.is_person
    nameless = parse_telegram_dialog({"id": 42, "type": "user", "user": {"Username": "anna"}})
    assert (nameless.chat_id, nameless.name) == ("42", "@anna")


def test_parse_the_reference_messages() -> None:
    own = parse_telegram_message({"id": "2910", "type": "text", "from": "996507585526", "to": "FL00D",
                                  "fromMe": True, "time": 1709456814, "body": "Нрн", "chatId": "89323786"})
    assert (own.id, own.chat_id, own.phone, own.text, own.from_me, own.time) == (
        "2910", "89323786", "89323786", "Нрн", True, 1709456814)
    # A numeric id that would look like a Russian phone with a trunk 8 is kept as it is.
    numeric = parse_telegram_message({"id": 5902, "chatId": 80123456789, "type": "text", "body": "Привет",
                                      "is_me": False, "chat_type": "user"})
    assert (numeric.id, numeric.chat_id, numeric.phone) == ("5902", "80123456789", "80123456789")
    grouped = parse_telegram_message({"id": "7", "chatId": "4127433587", "type": "text", "body": "x",
                                      "chat_type": "chat"})
    assert grouped.is_group and not grouped.is_person


# --------------------------------------------------------------------------- what only tapi has


def test_a_telegram_profile_added_at_run_time(emulator: WappiEmulator) -> None:
    control(emulator, "profile/add", {"profile_id": "2b3c4d5e-6f70", "platform": "telegram"})
    added = WappiTelegramClient(requests.Session(), emulator.url, TOKEN, "2b3c4d5e-6f70", timeout=2.0)
    assert added.get_status().healthy and emulator.profile_platform("2b3c4d5e-6f70") == "telegram"
    refused = requests.post(f"{emulator.url}/_emulator/profile/add",
                            json={"profile_id": "3c4d5e6f-7081", "platform": "max"}, timeout=5)
    assert refused.status_code == 400 and "platform" in refused.json()["detail"]


def test_typing_webhook_config_and_the_history_cap(emulator: WappiEmulator) -> None:
    headers = {"Authorization": TOKEN}
    params = {"profile_id": TELEGRAM_PROFILE}
    typing = requests.post(f"{emulator.url}/tapi/sync/chats/typing/start", params=params, headers=headers,
                           json={"recipient": CUSTOMER}, timeout=5)
    assert typing.status_code == 200 and typing.json()["status"] == "done" and "message_id" not in typing.json()
    on_whatsapp = requests.post(f"{emulator.url}/api/sync/chats/typing/start",
                                params={"profile_id": WHATSAPP_PROFILE}, headers=headers,
                                json={"recipient": "77011234567"}, timeout=5)
    assert on_whatsapp.status_code == 404
    hook = requests.post(f"{emulator.url}/tapi/webhook/url/set", headers=headers, timeout=5,
                         params={**params, "url": "https://example.test/hook", "auth": "s3"})
    assert hook.json()["detail"] == "webhook url: https://example.test/hook"
    installed = requests.get(f"{emulator.url}/tapi/webhook/url/get", params=params, headers=headers, timeout=5)
    assert {key: installed.json()[key] for key in ("url", "auth", "installed")} == {
        "url": "https://example.test/hook", "auth": "s3", "installed": True}
    emulator.set_webhook(TELEGRAM_PROFILE, "")
    emulator.seed_chats(WHATSAPP_PROFILE, 1)  # WhatsApp seeding is untouched by the Telegram profile
    for number in range(105):
        write(emulator, f"Сообщение {number}", time=1_767_225_600 + number)
    page = tapi(emulator, "messages/get", chat_id=CUSTOMER, limit="500").json()
    assert len(page["messages"]) == 100 and page["total_count"] == 105
    assert page["messages"][0]["body"] == "Сообщение 104"
