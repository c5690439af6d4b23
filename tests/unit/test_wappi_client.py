"""The Wappi wappi_client against the private_wappi over HTTP: every method, every error class, payload variants."""

from __future__ import annotations

import base64

import pytest
import requests

from clients.wappi import (
    WappiAuthError,
    WappiClient,
    WappiCrossedResponseError,
    WappiNotFoundError,
    WappiRejectedError,
    WappiTransientError,
    parse_dialog,
    parse_message,
)
from emulators.wappi import WappiEmulator
from tests.support.env import PRIVATE_PROFILE as PROFILE
from tests.support.env import PRIVATE_TOKEN as TOKEN


def control(private_wappi: WappiEmulator, path: str, body: dict[str, object]) -> dict[str, object]:
    response = requests.post(f"{private_wappi.url}/_emulator/{path}", json=body, timeout=5)
    response.raise_for_status()
    result: dict[str, object] = response.json()
    return result


def test_status_reports_health_and_unauthorized_profile(private_wappi: WappiEmulator,
                                                        wappi_client: WappiClient) -> None:
    assert wappi_client.get_status().healthy
    control(private_wappi, "profile", {"profile_id": PROFILE, "authorized": False, "app_status": "close"})
    status = wappi_client.get_status()
    assert not status.authorized and not status.healthy


def test_chats_and_messages_show_a_customer_message(private_wappi: WappiEmulator,
                                                    wappi_client: WappiClient) -> None:
    sent = control(private_wappi, "customer_message", {"profile_id": PROFILE, "phone": "77011234567",
                                                  "text": "Здравствуйте! 👋", "name": "Айгерим"})
    dialogs, total = wappi_client.get_chats()
    assert total == 1
    assert dialogs[0].phone == "77011234567"
    assert dialogs[0].push_name == "Айгерим"
    assert dialogs[0].last_message_id == sent["message_id"]
    messages = wappi_client.get_messages(dialogs[0].chat_id)
    assert [(m.id, m.text, m.from_me) for m in messages] == [(sent["message_id"], "Здравствуйте! 👋", False)]


def test_send_reply_and_mark_read_reach_the_chat(private_wappi: WappiEmulator,
                                                 wappi_client: WappiClient) -> None:
    inbound = control(private_wappi, "customer_message", {"profile_id": PROFILE, "phone": "77011234567",
                                                     "text": "Сколько стоит?"})
    reply = wappi_client.reply(str(inbound["message_id"]), "Ответ на ваш вопрос")
    direct = wappi_client.send_message("+7 701 123-45-67", "Отдельное сообщение")
    wappi_client.mark_read(str(inbound["message_id"]))
    sent = private_wappi.sent_messages(PROFILE)
    assert [(item["body"], item["message_id"], item["reply_to"]) for item in sent] == [
        ("Ответ на ваш вопрос", reply.message_id, inbound["message_id"]),
        ("Отдельное сообщение", direct.message_id, None),
    ]
    messages = wappi_client.get_messages("77011234567@c.us")
    assert messages[0].from_me and messages[0].from_api and messages[0].text == "Отдельное сообщение"
    dialogs, _ = wappi_client.get_chats()
    assert dialogs[0].unread_count == 0


@pytest.mark.parametrize("shape", ["b64", "link", "both"])
def test_download_media_in_every_shape(private_wappi: WappiEmulator, wappi_client: WappiClient, shape: str) -> None:
    audio = b"OggS\x00fake-opus-bytes\x01\x02"
    voice = control(private_wappi, "customer_message", {
        "profile_id": PROFILE, "phone": "77011234567", "type": "ptt",
        "media_b64": base64.b64encode(audio).decode(), "media_shape": shape})
    media = wappi_client.download_media(str(voice["message_id"]))
    assert media.data == audio
    assert media.mime_type.startswith("audio/ogg")


def test_bad_token_is_an_auth_error(private_wappi: WappiEmulator) -> None:
    wappi_client = WappiClient(requests.Session(), private_wappi.url, "wrong", PROFILE, timeout=2.0)
    with pytest.raises(WappiAuthError):
        wappi_client.get_chats()


def test_unknown_profile_and_message_are_not_found(private_wappi: WappiEmulator) -> None:
    stranger = WappiClient(requests.Session(), private_wappi.url, TOKEN, "ffffffff-ffff", timeout=2.0)
    with pytest.raises(WappiNotFoundError, match="Profile not found"):
        stranger.get_status()
    wappi_client = WappiClient(requests.Session(), private_wappi.url, TOKEN, PROFILE, timeout=2.0)
    with pytest.raises(WappiNotFoundError):
        wappi_client.reply("DEADBEEF00000000", "ответ")


def test_server_errors_and_timeouts_are_transient(private_wappi: WappiEmulator,
                                                  wappi_client: WappiClient) -> None:
    control(private_wappi, "faults", {"fail_next": 2, "fail_status": 503, "paths": ["message/send"]})
    with pytest.raises(WappiTransientError) as caught:
        wappi_client.send_message("77011234567", "привет")
    assert caught.value.status_code == 503
    control(private_wappi, "faults", {"rate_timeout": 1.0, "timeout_seconds": 3.0, "paths": ["chats/get"]})
    with pytest.raises(WappiTransientError, match="timed out"):
        wappi_client.get_chats()


def test_rejection_is_not_retried(private_wappi: WappiEmulator,
                                  wappi_client: WappiClient) -> None:
    with pytest.raises(WappiRejectedError):
        wappi_client.send_message("77011234567", "")
    control(private_wappi, "faults", {"fail_next": 1, "fail_status": 400, "paths": ["message/send"]})
    with pytest.raises(WappiRejectedError):
        wappi_client.send_message("77011234567", "текст")


def test_unauthorized_profile_rejects_sends_as_auth_error(private_wappi: WappiEmulator,
                                                          wappi_client: WappiClient) -> None:
    control(private_wappi, "profile", {"profile_id": PROFILE, "authorized": False, "app_status": "close"})
    with pytest.raises(WappiAuthError):
        wappi_client.send_message("77011234567", "привет")


def test_token_never_appears_in_errors(private_wappi: WappiEmulator,
                                       wappi_client: WappiClient) -> None:
    control(private_wappi, "faults", {"fail_next": 2, "fail_status": 500})  # reads retry once
    with pytest.raises(WappiTransientError) as caught:
        wappi_client.get_chats()
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value.__cause__ or "")


# -- tolerant parsing of the documented variants (reference §3.2, §3.8, §4) ----------------------

VOICE_WEBHOOK = {
    "id": "AC8E75A6449B5266788EC85213A8B358", "profile_id": "02a4708d-ec6c", "wh_type": "incoming_message",
    "timestamp": "2026-08-03T16:42:06+03:00", "time": 1785764526, "body": "T2dnUwACAAAAAAAA",
    "type": "ptt", "from": "996500000001@c.us", "to": "996707660009@c.us", "senderName": "Тест",
    "chatId": "996500000001@c.us", "caption": None, "from_where": "phone",
    "mimetype": "audio/ogg; codecs=opus", "is_me": False, "chat_type": "dialog",
    "file_link": "https://example.invalid/x.ogg", "whatsapp_chat_id": "996500000001@lid",
    "platform": "whatsapp",
}


def test_parse_webhook_voice_note() -> None:
    message = parse_message(VOICE_WEBHOOK)
    assert message.type == "ptt" and message.phone == "996500000001"
    assert message.text == ""  # a media body is base64 of the file, never text
    assert message.lid == "996500000001@lid" and message.file_link.endswith("x.ogg")
    assert not message.from_me and not message.is_group


def test_parse_variants_of_chat_ids_and_missing_fields() -> None:
    newer = parse_message({"id": "BAE5DF204DCCFFB1", "chatId": "79827328888@s.whatsapp.net",
                           "type": "chat", "body": "Привет", "fromMe": False})
    assert newer.phone == "79827328888" and newer.time == 0 and newer.sender_name == ""
    lid_only = parse_message({"id": "X1", "chatId": "123456789@lid", "from": "123456789@lid",
                              "contact_phone": "8 701 123 45 67", "body": "hi", "type": "chat"})
    assert lid_only.phone == "77011234567" and lid_only.lid == "123456789@lid"
    group = parse_message({"id": "G1", "chatId": "120363029426478403@g.us", "from": "79115576366@c.us",
                           "body": "всем привет", "type": "chat", "chat_type": "group"})
    assert group.is_group
    media = parse_message({"id": "M1", "chatId": "79115576367@c.us", "type": "image",
                           "body": {"caption": "Вот фото", "mimetype": "image/jpeg"}})
    assert media.text == "" and media.caption == "Вот фото"
    with pytest.raises(WappiRejectedError):
        parse_message({"body": "no id"})


def test_parse_old_and_new_dialog_shapes() -> None:
    old = parse_dialog({"id": "79115576367@c.us", "contact": {"FirstName": "Иван"}, "isGroup": False,
                        "last_message_id": "3EB0", "last_time": 1674101988, "name": "Иван"})
    assert old.phone == "79115576367" and old.first_name == "Иван" and old.unread_count == 0
    new = parse_dialog({"id": "79827328888@s.whatsapp.net", "contact": None, "last_time": "1674101988",
                        "last_message_sender": {"isMe": True}, "unread_count": 2})
    assert new.phone == "79827328888" and new.last_from_me and new.last_time == 1674101988


def test_a_crossed_history_answer_is_refused_and_asked_again(private_wappi: WappiEmulator,
                                                             wappi_client: WappiClient) -> None:
    mine = control(private_wappi, "customer_message", {"profile_id": PROFILE, "phone": "77011234567", "text": "Моё"})
    control(private_wappi, "customer_message", {"profile_id": PROFILE, "phone": "77019990001", "text": "Чужое"})
    control(private_wappi, "chat_faults", {"cross_next": 1})  # the client's one retry gets the right answer
    assert [m.id for m in wappi_client.get_messages("77011234567@c.us")] == [mine["message_id"]]
    control(private_wappi, "chat_faults", {"cross_next": 2})  # crossed twice: refused, for the caller to retry
    with pytest.raises(WappiCrossedResponseError):
        wappi_client.get_messages("77011234567@c.us")
    assert issubclass(WappiCrossedResponseError, WappiTransientError)


def test_unreadable_history_items_are_set_aside(private_wappi: WappiEmulator,
                                                wappi_client: WappiClient) -> None:
    control(private_wappi, "customer_message", {"profile_id": PROFILE, "phone": "77011234567", "text": "Плохой",
                                           "overrides": {"id": {"not": "an id"}}})
    good = control(private_wappi, "customer_message",
                   {"profile_id": PROFILE, "phone": "77011234567", "text": "Хороший"})
    page = wappi_client.get_messages_page("77011234567@c.us")
    assert [m.id for m in page.messages] == [good["message_id"]]
    assert len(page.rejected) == 1 and "without an id" in page.rejected[0][1]


def test_a_download_body_in_a_history_answer_is_crossed_not_an_empty_page(private_wappi: WappiEmulator,
                                                                            wappi_client: WappiClient) -> None:
    mine = control(private_wappi, "customer_message", {"profile_id": PROFILE, "phone": "77011234567", "text": "Моё"})
    control(private_wappi, "chat_faults", {"cross_next": 1, "cross_kind": "media"})  # dropped, asked again
    assert [m.id for m in wappi_client.get_messages("77011234567@c.us")] == [mine["message_id"]]
    control(private_wappi, "chat_faults", {"cross_next": 2, "cross_kind": "media"})  # both tries crossed
    with pytest.raises(WappiCrossedResponseError):
        wappi_client.get_messages("77011234567@c.us")
