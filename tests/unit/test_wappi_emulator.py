"""HTTP-level tests of the Wappi emulator (emulators/wappi/)."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from clients.wappi import WappiAuthError, WappiClient, WappiRejectedError, WappiTelegramClient
from emulators.wappi import WappiEmulator
from tests.support.emulators import emulator_command

TOKEN = "test-token"
PROFILE = "a1b2c3d4-e5f6"
PHONE = "79115576367"


@pytest.fixture()
def emulator() -> Iterator[WappiEmulator]:
    with WappiEmulator(token=TOKEN, profile_ids=(PROFILE,)) as emu:
        yield emu


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = TOKEN
        yield session


def api(emu: WappiEmulator, path: str) -> str:
    return f"{emu.url}/api/sync/{path}"


def ctl(emu: WappiEmulator, path: str) -> str:
    return f"{emu.url}/_emulator/{path}"


def inject(emu: WappiEmulator, **fields: Any) -> dict[str, Any]:
    payload = {"profile_id": PROFILE, "phone": PHONE, "text": "Здравствуйте", **fields}
    response = requests.post(ctl(emu, "customer_message"), json=payload, timeout=5)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_auth_errors(emulator: WappiEmulator, http: requests.Session) -> None:
    bad = requests.get(
        api(emulator, "get/status"),
        params={"profile_id": PROFILE},
        headers={"Authorization": "nope"},
        timeout=5,
    )
    assert bad.status_code == 401
    assert bad.json() == {"status": "error", "detail": "Unauthorized"}
    bearer = requests.get(
        api(emulator, "get/status"),
        params={"profile_id": PROFILE},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert bearer.status_code == 401

    unknown = http.get(api(emulator, "chats/get"), params={"profile_id": "ffffffff-0000"}, timeout=5)
    assert unknown.status_code == 400
    assert unknown.json() == {"status": "error", "detail": "Profile not found"}
    missing = http.get(api(emulator, "chats/get"), timeout=5)
    assert missing.status_code == 400
    assert missing.headers["Content-Type"] == "application/json; charset=utf-8"


def test_status_and_unauthorized_profile(emulator: WappiEmulator, http: requests.Session) -> None:
    status = http.get(api(emulator, "get/status"), params={"profile_id": PROFILE}, timeout=5).json()
    assert "status" not in status
    assert status["authorized"] is True and status["app_status"] == "open"
    assert status["profile_id"] == PROFILE and status["uuid"] == PROFILE

    requests.post(ctl(emulator, "profile"), json={"profile_id": PROFILE, "authorized": False}, timeout=5)
    status = http.get(api(emulator, "get/status"), params={"profile_id": PROFILE}, timeout=5).json()
    assert status["authorized"] is False and status["app_status"] == "close"
    assert status["logouted_at"]
    chats = http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5)
    assert chats.status_code == 400
    assert chats.json()["detail"] == "Profile is not authorized"


def test_customer_message_in_chats_and_history(emulator: WappiEmulator, http: requests.Session) -> None:
    old = inject(emulator, phone="79990000001", text="old", time=1_700_000_000, name="Старый")
    first = inject(emulator, text="Привет", name="Сергей")
    second = inject(emulator, text="Сколько стоит?", chat_suffix="s.whatsapp.net")
    assert first["chat_id"] == f"{PHONE}@c.us" == second["chat_id"]
    assert len(first["message_id"]) == 20 and first["message_id"] == first["message_id"].upper()

    chats = http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).json()
    assert chats["status"] == "done" and chats["detail"] == "Chats fetched"
    assert chats["total_count"] == 2
    dialog, older = chats["dialogs"]
    assert dialog["id"] == f"{PHONE}@c.us"
    assert dialog["last_message_id"] == second["message_id"]
    assert dialog["last_message_data"] == "Сколько стоит?"
    assert dialog["unread_count"] == 2
    assert dialog["contact"]["PushName"] == "Клиент"  # the default name of the latest message
    assert dialog["last_message_sender"]["isMe"] is False
    assert dialog["last_timestamp"].endswith("Z") and isinstance(dialog["last_time"], int)
    assert older["last_message_id"] == old["message_id"] and older["name"] == "Старый"

    page = http.get(
        api(emulator, "chats/get"), params={"profile_id": PROFILE, "limit": "1", "offset": "1"}, timeout=5
    )
    assert [d["id"] for d in page.json()["dialogs"]] == ["79990000001@c.us"]

    for chat_id in (PHONE, f"{PHONE}@c.us", f"{PHONE}@s.whatsapp.net"):
        desc = http.get(
            api(emulator, "messages/get"), params={"profile_id": PROFILE, "chat_id": chat_id}, timeout=5
        ).json()
        assert [m["id"] for m in desc["messages"]] == [second["message_id"], first["message_id"]]
        assert desc["total_count"] == 2
    asc = http.get(
        api(emulator, "messages/get"),
        params={"profile_id": PROFILE, "chat_id": PHONE, "order": "asc", "limit": "1"},
        timeout=5,
    ).json()
    assert [m["id"] for m in asc["messages"]] == [first["message_id"]]
    message = asc["messages"][0]
    assert message["fromMe"] is False and message["body"] == "Привет" and message["type"] == "chat"
    assert message["from"] == f"{PHONE}@c.us" and message["to"] == "77000000000@c.us"
    assert message["senderName"] == "Сергей"

    dated = http.get(
        api(emulator, "messages/get"),
        params={"profile_id": PROFILE, "chat_id": "79990000001", "date": "2023-11-14T22:13:21"},
        timeout=5,
    ).json()
    assert dated["messages"] == []
    unknown = http.get(
        api(emulator, "messages/get"), params={"profile_id": PROFILE, "chat_id": "70000000000"}, timeout=5
    )
    assert unknown.status_code == 200 and unknown.json()["messages"] == []

    by_id = http.get(
        api(emulator, "messages/id/get"),
        params={"profile_id": PROFILE, "message_id": first["message_id"]},
        timeout=5,
    )
    assert by_id.json()["message"]["body"] == "Привет"
    missing = http.get(
        api(emulator, "messages/id/get"), params={"profile_id": PROFILE, "message_id": "X"}, timeout=5
    )
    assert missing.status_code == 400 and missing.json()["detail"] == "message not found"


def test_send_reply_and_mark_read(emulator: WappiEmulator, http: requests.Session) -> None:
    incoming = inject(emulator)
    sent = http.post(
        api(emulator, "message/send"),
        params={"profile_id": PROFILE},
        json={"body": "Добрый день!", "recipient": PHONE},
        timeout=5,
    ).json()
    assert sent["status"] == "done" and sent["message_id"] and sent["task_id"]
    reply = http.post(
        api(emulator, "message/reply"),
        params={"profile_id": PROFILE},
        json={"body": "Отвечаю", "message_id": incoming["message_id"]},
        timeout=5,
    ).json()
    assert reply["status"] == "done"

    empty = http.post(
        api(emulator, "message/send"),
        params={"profile_id": PROFILE},
        json={"body": "", "recipient": PHONE},
        timeout=5,
    )
    assert empty.status_code == 400 and empty.json()["status"] == "error"
    bad_reply = http.post(
        api(emulator, "message/reply"),
        params={"profile_id": PROFILE},
        json={"body": "x", "message_id": "NOPE"},
        timeout=5,
    )
    assert bad_reply.status_code == 400 and bad_reply.json()["detail"] == "message not found"

    log = requests.get(ctl(emulator, "sent"), params={"profile_id": PROFILE}, timeout=5).json()["messages"]
    assert [(m["body"], m["reply_to"], m["phone"]) for m in log] == [
        ("Добрый день!", None, PHONE),
        ("Отвечаю", incoming["message_id"], PHONE),
    ]
    assert emulator.sent_messages(PROFILE) == log
    assert emulator.sent_count(PROFILE) == 2 and emulator.sent_since(PROFILE, 1) == log[1:]

    chat = requests.get(
        ctl(emulator, "chat"), params={"profile_id": PROFILE, "phone": PHONE}, timeout=5
    ).json()
    own = [m for m in chat["messages"] if m["fromMe"]]
    assert [m["id"] for m in own] == [sent["message_id"], reply["message_id"]]
    assert all(m["isFromAPI"] and m["delivery_status"] == "delivered" for m in own)
    assert own[1]["isReply"] is True and own[1]["stanzaId"] == incoming["message_id"]

    dialogs = http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).json()[
        "dialogs"
    ]
    assert dialogs[0]["last_message_sender"]["isMe"] is True and dialogs[0]["unread_count"] == 1

    marked = http.post(
        api(emulator, "message/mark/read"),
        params={"profile_id": PROFILE, "mark_all": "true"},
        json={"message_id": incoming["message_id"]},
        timeout=5,
    ).json()
    assert marked["status"] == "done" and marked["uuid"] == PROFILE
    dialogs = http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).json()[
        "dialogs"
    ]
    assert dialogs[0]["unread_count"] == 0
    assert all(m["isRead"] for m in emulator.chat_messages(PROFILE, PHONE) if not m["fromMe"])


def test_media_download_shapes_and_file_link(emulator: WappiEmulator, http: requests.Session) -> None:
    audio = b"OggS fake opus payload"
    encoded = base64.b64encode(audio).decode()
    both = inject(emulator, type="ptt", text="", media_b64=encoded)
    b64_only = inject(emulator, type="ptt", text="", media_b64=encoded, media_shape="b64")
    link_only = inject(emulator, type="image", text="", caption="фото", media_shape="link")

    def download(message_id: str) -> requests.Response:
        return http.get(
            api(emulator, "message/media/download"),
            params={"profile_id": PROFILE, "message_id": message_id},
            timeout=5,
        )

    full = download(both["message_id"]).json()
    assert full["status"] == "done" and full["media_type"] == "ptt"
    assert full["mime_type"] == "audio/ogg; codecs=opus" and full["file_name"].endswith(".ogg")
    assert base64.b64decode(full["file_b64"]) == audio
    raw = requests.get(full["file_link"], timeout=5)  # no auth, like a signed S3 link
    assert raw.status_code == 200 and raw.content == audio

    only_b64 = download(b64_only["message_id"]).json()
    assert "file_link" not in only_b64 and base64.b64decode(only_b64["file_b64"]) == audio
    only_link = download(link_only["message_id"]).json()
    assert "file_b64" not in only_link and only_link["mime_type"] == "image/jpeg"
    assert requests.get(only_link["file_link"], timeout=5).status_code == 200

    message = emulator.chat_messages(PROFILE, PHONE)[-1]
    assert message["type"] == "image" and isinstance(message["body"], dict) and message["caption"] == "фото"

    text = inject(emulator)
    for message_id in (text["message_id"], "UNKNOWN"):
        failed = download(message_id)
        assert failed.status_code == 400 and failed.json()["detail"] == "download media error"


def test_fail_next_and_request_log(emulator: WappiEmulator, http: requests.Session) -> None:
    requests.post(ctl(emulator, "faults"), json={"fail_next": 2, "fail_status": 503}, timeout=5)
    statuses = [
        http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).status_code
        for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    log = requests.get(ctl(emulator, "requests"), timeout=5).json()["requests"]
    assert [entry["status"] for entry in log] == [503, 503, 200]
    assert log[0]["path"] == "/api/sync/chats/get" and log[0]["query"] == {"profile_id": PROFILE}

    requests.post(ctl(emulator, "faults"), json={"fail_next": 1, "paths": ["message/send"]}, timeout=5)
    assert http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).status_code == 200
    send = http.post(
        api(emulator, "message/send"),
        params={"profile_id": PROFILE},
        json={"body": "x", "recipient": PHONE},
        timeout=5,
    )
    assert send.status_code == 500 and send.json() == {"status": "error", "detail": "Internal Server Error"}
    assert emulator.sent_messages(PROFILE) == []

    requests.post(ctl(emulator, "requests/clear"), timeout=5)
    assert requests.get(ctl(emulator, "requests"), timeout=5).json()["requests"] == []


def test_accept_then_timeout_records_message(emulator: WappiEmulator, http: requests.Session) -> None:
    requests.post(
        ctl(emulator, "faults"), json={"rate_accept_then_timeout": 1.0, "timeout_seconds": 1.0}, timeout=5
    ).raise_for_status()
    with pytest.raises(requests.exceptions.Timeout):
        http.post(
            api(emulator, "message/send"),
            params={"profile_id": PROFILE},
            json={"body": "Дошло?", "recipient": PHONE},
            timeout=0.5,
        )
    sent = emulator.sent_messages(PROFILE)
    assert [m["body"] for m in sent] == ["Дошло?"]
    assert emulator.chat_messages(PROFILE, PHONE)[-1]["delivery_status"] == "delivered"

    requests.post(ctl(emulator, "reset"), timeout=5)
    assert emulator.sent_messages(PROFILE) == []
    ok = http.post(
        api(emulator, "message/send"),
        params={"profile_id": PROFILE},
        json={"body": "ok", "recipient": PHONE},
        timeout=5,
    )
    assert ok.status_code == 200


def test_webhook_push(emulator: WappiEmulator) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    got_two = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append((self.headers.get("Authorization"), json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if len(received) >= 2:
                got_two.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        requests.post(
            ctl(emulator, "webhook"),
            json={"profile_id": PROFILE, "url": hook_url, "secret": "s3cret"},
            timeout=5,
        ).raise_for_status()
        incoming = inject(emulator, text="Есть доставка?")
        requests.post(
            ctl(emulator, "phone_message"),
            json={"profile_id": PROFILE, "phone": PHONE, "text": "Да"},
            timeout=5,
        ).raise_for_status()
        assert got_two.wait(5)
    finally:
        server.shutdown()
        server.server_close()

    by_type = {
        payload["messages"][0]["wh_type"]: (auth, payload["messages"][0]) for auth, payload in received
    }
    auth, message = by_type["incoming_message"]
    assert auth == "s3cret"
    assert message["id"] == incoming["message_id"] and message["body"] == "Есть доставка?"
    assert message["is_me"] is False and message["chat_type"] == "dialog" and message["profile_id"] == PROFILE
    assert message["chatId"] == f"{PHONE}@c.us" and message["timestamp"].endswith("+03:00")
    _, own = by_type["outgoing_message_phone"]
    assert own["is_me"] is True and own["from_where"] == "phone" and own["body"] == "Да"


def test_seed_chats_bulk(emulator: WappiEmulator, http: requests.Session) -> None:
    chat_ids = emulator.seed_chats(PROFILE, 500, messages_per_chat=2)
    assert len(chat_ids) == len(set(chat_ids)) == 500
    page = http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).json()
    assert page["total_count"] == 500 and len(page["dialogs"]) == 200
    assert page["dialogs"][0]["id"] == chat_ids[-1]
    everything = http.get(
        api(emulator, "chats/get"), params={"profile_id": PROFILE, "show_all": "true"}, timeout=5
    ).json()
    assert len(everything["dialogs"]) == 500
    created = requests.post(ctl(emulator, "seed_chats"), json={"profile_id": PROFILE, "count": 10}, timeout=5)
    assert created.json()["created"] == 10


def test_late_message_keeps_the_dialog_on_our_reply(emulator: WappiEmulator, http: requests.Session) -> None:
    inbound = inject(emulator, text="Первое")
    reply = http.post(api(emulator, "message/reply"), params={"profile_id": PROFILE}, timeout=5,
                      json={"body": "Ответ", "message_id": inbound["message_id"]}).json()
    before = http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).json()["dialogs"][0]
    late = requests.post(ctl(emulator, "late_message"), timeout=5, json={
        "profile_id": PROFILE, "phone": PHONE, "text": "Написано раньше", "written_ago": 60}).json()
    dialog = http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).json()["dialogs"][0]
    assert dialog["last_message_id"] == reply["message_id"] and dialog["last_time"] == before["last_time"]
    assert dialog["last_message_sender"]["isMe"] and dialog["unread_count"] == before["unread_count"] + 1
    history = http.get(api(emulator, "messages/get"), params={"profile_id": PROFILE, "chat_id": PHONE},
                       timeout=5).json()["messages"]
    order = [m["id"] for m in history]  # newest first: the late message comes after our reply
    assert order.index(reply["message_id"]) < order.index(late["message_id"])
    assert late["time"] < history[0]["time"]


def test_channel_and_broadcast_chats(emulator: WappiEmulator, http: requests.Session) -> None:
    for chat_id in ("120363041234567890@newsletter", "status@broadcast"):
        response = requests.post(ctl(emulator, "channel_message"), timeout=5, json={
            "profile_id": PROFILE, "chat_id": chat_id, "text": "Пост", "sender": "77019998877"})
        assert response.status_code == 200, response.text
    ids = {d["id"] for d in http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE},
                                     timeout=5).json()["dialogs"]}
    assert ids == {"120363041234567890@newsletter", "status@broadcast"}
    status = http.get(api(emulator, "messages/get"), timeout=5,
                      params={"profile_id": PROFILE, "chat_id": "status@broadcast"}).json()["messages"]
    assert status[0]["chatId"] == "status@broadcast" and status[0]["from"] == "77019998877@c.us"
    bad = requests.post(ctl(emulator, "channel_message"), timeout=5,
                        json={"profile_id": PROFILE, "chat_id": PHONE, "text": "x"})
    assert bad.status_code == 400


def test_overrides_produce_raw_payload_shapes(emulator: WappiEmulator, http: requests.Session) -> None:
    now_ms = int(time.time() * 1000)
    inject(emulator, text="a\u0000b", overrides={"id": 12345, "time": now_ms})
    dialog = http.get(api(emulator, "chats/get"), params={"profile_id": PROFILE}, timeout=5).json()["dialogs"][0]
    assert dialog["last_message_id"] == 12345 and dialog["last_time"] == now_ms
    message = http.get(api(emulator, "messages/get"), params={"profile_id": PROFILE, "chat_id": PHONE},
                       timeout=5).json()["messages"][0]
    assert message["body"] == "a\u0000b" and message["id"] == 12345


def test_chat_faults_fail_one_chat_and_cross_answers(emulator: WappiEmulator, http: requests.Session) -> None:
    inject(emulator, text="Мой чат")
    inject(emulator, phone="77019990001", text="Другой чат")
    assert requests.post(ctl(emulator, "chat_faults"), json={"fail_chats": [PHONE]}, timeout=5).ok

    def history(phone: str) -> requests.Response:
        return http.get(api(emulator, "messages/get"), params={"profile_id": PROFILE, "chat_id": phone}, timeout=5)

    assert history(PHONE).status_code == 500 and history(f"{PHONE}@c.us").status_code == 500
    assert history("77019990001").status_code == 200
    requests.post(ctl(emulator, "chat_faults"), json={"cross_next": 1}, timeout=5)
    crossed = history(PHONE).json()["messages"]
    assert {m["chatId"] for m in crossed} == {"77019990001@c.us"}
    assert {m["chatId"] for m in history(PHONE).json()["messages"]} == {f"{PHONE}@c.us"}
    assert requests.get(ctl(emulator, "chat_faults"), timeout=5).json()["crossed"] == 1
    unknown = requests.post(ctl(emulator, "chat_faults"), json={"nope": 1}, timeout=5)
    assert unknown.status_code == 400


# --------------------------------------------------------------------------- accounts

OTHER_TOKEN = "other-account-token-0123456789abcdef"
OTHER_PROFILE = "b2c3d4e5-f6a7"
OTHER_TELEGRAM_PROFILE = "c3d4e5f6-a7b8"
UNAUTHORIZED = {"status": "error", "detail": "Unauthorized"}


def status_with(emu: WappiEmulator, token: str, profile_id: str, api_prefix: str = "api") -> requests.Response:
    return requests.get(f"{emu.url}/{api_prefix}/sync/get/status", params={"profile_id": profile_id},
                        headers={"Authorization": token}, timeout=5)


def test_an_account_token_serves_only_its_own_profiles(emulator: WappiEmulator) -> None:
    added = requests.post(ctl(emulator, "account/add"), timeout=5, json={
        "token": OTHER_TOKEN, "profile_ids": [OTHER_PROFILE], "telegram_profile_ids": [OTHER_TELEGRAM_PROFILE]})
    session = requests.Session()
    own = WappiClient(session, emulator.url, TOKEN, PROFILE, timeout=2.0)
    other = WappiClient(session, emulator.url, OTHER_TOKEN, OTHER_PROFILE, timeout=2.0)
    other_telegram = WappiTelegramClient(session, emulator.url, OTHER_TOKEN, OTHER_TELEGRAM_PROFILE, timeout=2.0)
    trespassing = WappiClient(session, emulator.url, TOKEN, OTHER_PROFILE, timeout=2.0)
    inject(emulator, profile_id=OTHER_PROFILE)

    assert added.status_code == 200
    assert own.get_status().healthy and other.get_status().healthy and other_telegram.get_status().healthy
    # Each token is refused for the other account's profiles, on /api/ and /tapi/ alike, as a
    # wrong token is; nothing is sent.
    for token, profile_id, api_prefix in ((TOKEN, OTHER_PROFILE, "api"), (TOKEN, OTHER_TELEGRAM_PROFILE, "tapi"),
                                          (OTHER_TOKEN, PROFILE, "api")):
        refused = status_with(emulator, token, profile_id, api_prefix)
        assert (refused.status_code, refused.json()) == (401, UNAUTHORIZED)
    with pytest.raises(WappiAuthError) as not_yours:
        trespassing.send_message(PHONE, "Чужой профиль")
    assert not_yours.value.status_code == 401 and emulator.sent_messages(OTHER_PROFILE) == []
    with pytest.raises(WappiAuthError):
        trespassing.get_messages(PHONE)
    assert [message.text for message in other.get_messages(PHONE)] == ["Здравствуйте"]


def test_accounts_grow_by_profile_and_outlive_reset(emulator: WappiEmulator) -> None:
    emulator.add_account(OTHER_TOKEN)
    requests.post(ctl(emulator, "profile/add"), json={"profile_id": OTHER_PROFILE, "token": OTHER_TOKEN},
                  timeout=5).raise_for_status()
    emulator.add_profile(OTHER_TELEGRAM_PROFILE, platform="telegram", token=OTHER_TOKEN)
    emulator.add_profile("d4e5f6a7-b8c9")  # no token: the emulator's own account, as before
    requests.post(ctl(emulator, "reset"), timeout=5).raise_for_status()
    unknown_token = requests.post(ctl(emulator, "profile/add"), json={"profile_id": "e5f6a7b8-c9d0", "token": "x"},
                                  timeout=5)
    same_token = requests.post(ctl(emulator, "account/add"), json={"token": OTHER_TOKEN}, timeout=5)
    taken_profile = requests.post(ctl(emulator, "account/add"), json={"token": "third", "profile_ids": [PROFILE]},
                                  timeout=5)
    both_platforms = requests.post(ctl(emulator, "account/add"), timeout=5, json={
        "token": "fourth", "profile_ids": ["f6a7b8c9-d0e1"], "telegram_profile_ids": ["f6a7b8c9-d0e1"]})

    assert status_with(emulator, OTHER_TOKEN, OTHER_PROFILE).status_code == 200
    assert status_with(emulator, OTHER_TOKEN, OTHER_TELEGRAM_PROFILE, "tapi").json()["platform"] == "tg"
    assert status_with(emulator, TOKEN, "d4e5f6a7-b8c9").status_code == 200
    assert status_with(emulator, OTHER_TOKEN, "d4e5f6a7-b8c9").status_code == 401
    assert unknown_token.status_code == 400 and unknown_token.json()["detail"] == "no account has this token"
    assert same_token.status_code == 400 and taken_profile.status_code == 400 and both_platforms.status_code == 400
    assert "e5f6a7b8-c9d0" not in emulator.profile_ids and "f6a7b8c9-d0e1" not in emulator.profile_ids
    assert status_with(emulator, "third", PROFILE).status_code == 401  # refused as a whole: no such account


# --------------------------------------------------------------------------- one profile's faults


def test_faults_scoped_to_one_profile_spare_the_others(emulator: WappiEmulator, http: requests.Session) -> None:
    second = "0f1e2d3c-4b5a"
    emulator.add_profile(second)
    voices = {profile_id: inject(emulator, profile_id=profile_id, type="ptt", text="",
                                 media_b64=base64.b64encode(f"OggS-{profile_id}".encode()).decode())
              for profile_id in (PROFILE, second)}  # the same customer writes to both profiles

    def history(profile_id: str) -> requests.Response:
        return http.get(api(emulator, "messages/get"), params={"profile_id": profile_id, "chat_id": PHONE}, timeout=5)

    emulator.set_faults({"fail_next": 1, "fail_status": 503, "profile_ids": [PROFILE]})
    spared_status = http.get(api(emulator, "get/status"), params={"profile_id": second}, timeout=5)
    failed_status = http.get(api(emulator, "get/status"), params={"profile_id": PROFILE}, timeout=5)
    scoped = requests.get(ctl(emulator, "faults"), timeout=5).json()
    emulator.set_chat_faults({"fail_chats": [PHONE], "profile_ids": [PROFILE]})
    failed_history, spared_history = history(PROFILE), history(second)
    emulator.set_chat_faults({})
    emulator.set_media_faults({"fail_message_ids": [voice["message_id"] for voice in voices.values()],
                               "profile_ids": [second]})
    clients = {profile_id: WappiClient(requests.Session(), emulator.url, TOKEN, profile_id, timeout=2.0)
               for profile_id in (PROFILE, second)}
    spared_media = clients[PROFILE].download_media(voices[PROFILE]["message_id"])
    with pytest.raises(WappiRejectedError):
        clients[second].download_media(voices[second]["message_id"])
    emulator.set_media_faults({})
    emulator.set_faults({"history_lag_seconds": 60, "profile_ids": [second]})
    for client in clients.values():
        client.send_message(PHONE, "Ответ")

    assert (spared_status.status_code, failed_status.status_code) == (200, 503)
    assert scoped["profile_ids"] == [PROFILE] and scoped["fail_next"] == 0
    assert failed_history.status_code == 500
    assert spared_history.status_code == 200 and [m["id"] for m in spared_history.json()["messages"]] == [
        voices[second]["message_id"]]
    assert spared_media.data == f"OggS-{PROFILE}".encode()
    assert clients[second].download_media(voices[second]["message_id"]).data == f"OggS-{second}".encode()
    assert clients[PROFILE].get_messages(PHONE)[0].text == "Ответ"  # newest first: no lag in this profile
    assert [(m.type, m.from_me) for m in clients[second].get_messages(PHONE)] == [("ptt", False)]  # send lags


def test_command_line_serves_until_sigterm() -> None:
    with emulator_command("emulators.wappi", "--token", "cli-token", "--profile", PROFILE) as (port, banner, process):
        status = requests.get(f"http://127.0.0.1:{port}/api/sync/get/status", params={"profile_id": PROFILE},
                              headers={"Authorization": "cli-token"}, timeout=5)
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)

    assert banner == f"Wappi emulator listening on http://127.0.0.1:{port}"
    assert status.status_code == 200 and status.json()["profile_id"] == PROFILE
    assert exit_code == 0
