"""The Gemini emulator, exercised through the real google-genai SDK over HTTP (nothing patched)."""

from __future__ import annotations

import base64
import enum
import http.client
import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

import prompts
from emulators.gemini import GeminiEmulator
from prompts.markers import CONTACT_DATA_END, CONTACT_DATA_START, KB_END, KB_START, SLOTS_PREFIX
from tests.support.emulators import emulator_command

API_KEY = "test-key"
MODEL = "gemini-3.5-flash-lite"
KB_LINES = "Доставка по Алматы — 1 500 ₸\nОплата картой или наличными при получении"
KNOWLEDGE_BASE = (
    "Ты вежливый менеджер интернет-магазина, отвечай по-русски. Доставка важна.\n"
    f"{KB_START}\n{KB_LINES}\n{KB_END}\n"
)


class LeadVerdict(BaseModel):
    is_client: bool | None
    confidence: float
    reasoning: str


class Call(BaseModel):
    at: str


class AgentTurn(BaseModel):
    reply: str
    call: Call | None


class Answer(enum.StrEnum):
    yes = "yes"
    no = "no"
    unclear = "unclear"


class FollowUpDecision(BaseModel):
    answer: Answer


class SalesTurn(BaseModel):
    reply: str
    call: Call | None
    opt_out: bool


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def emu(emulator: GeminiEmulator) -> GeminiEmulator:
    requests.post(f"{emulator.url}/_emulator/reset", timeout=5).raise_for_status()
    return emulator


def make_client(base_url: str, api_key: str = API_KEY) -> genai.Client:
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(base_url=base_url, api_version="v1beta", timeout=5000),
    )


@pytest.fixture
def client(emu: GeminiEmulator) -> Iterator[genai.Client]:
    sdk_client = make_client(emu.url)
    yield sdk_client
    sdk_client.close()


def json_config(schema: type[BaseModel]) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(response_mime_type="application/json", response_schema=schema)


def test_plain_reply_is_grounded_in_system_instruction_and_history(
    emu: GeminiEmulator, client: genai.Client
) -> None:
    history: list[types.ContentDict] = [
        {"role": "user", "parts": [{"text": "Здравствуйте"}]},
        {"role": "model", "parts": [{"text": "Добрый день! Чем помочь?"}]},
        {"role": "user", "parts": [{"text": "Сколько стоит доставка?"}]},
    ]
    config = types.GenerateContentConfig(system_instruction=KNOWLEDGE_BASE)

    response = client.models.generate_content(model=MODEL, contents=history, config=config)

    assert response.text == (
        "Здравствуйте! Вы спросили: «Сколько стоит доставка?». "
        "По нашим данным: Доставка по Алматы — 1 500 ₸. Чем ещё могу помочь?"
    )
    again = client.models.generate_content(model=MODEL, contents=history, config=config)
    assert again.text == response.text
    body = emu.requests_log()[-1]["body"]
    assert body["systemInstruction"]["parts"][0]["text"] == KNOWLEDGE_BASE
    assert [content["role"] for content in body["contents"]] == [
        "user",
        "model",
        "user",
    ]


def test_reply_without_matching_knowledge_quotes_a_short_excerpt(
    client: genai.Client,
) -> None:
    question = "Подскажите, пожалуйста, " + "очень " * 20 + "важное"

    response = client.models.generate_content(
        model=MODEL,
        contents=question,
        config=types.GenerateContentConfig(system_instruction=KNOWLEDGE_BASE),
    )

    assert response.text is not None
    excerpt = response.text.split("«", 1)[1].split("»", 1)[0]
    assert len(excerpt) <= 60 and excerpt.startswith("Подскажите, пожалуйста")
    assert "По нашим данным" not in response.text


def test_model_name_and_api_version_reach_the_url(emu: GeminiEmulator, client: genai.Client) -> None:
    client.models.generate_content(model="gemini-3.8-flash", contents="Привет")

    log = requests.get(f"{emu.url}/_emulator/requests", timeout=5).json()["requests"]
    assert [(entry["version"], entry["model"]) for entry in log] == [("v1beta", "gemini-3.8-flash")]
    assert log[0]["body"]["contents"][-1]["parts"] == [{"text": "Привет"}]


def test_base_url_path_prefix_is_accepted(emu: GeminiEmulator) -> None:
    prefixed = make_client(f"{emu.url}/gemini-proxy/")
    try:
        response = prefixed.models.generate_content(model=MODEL, contents="Привет")
    finally:
        prefixed.close()

    assert response.text is not None and "«Привет»" in response.text
    assert emu.requests_log()[-1]["model"] == MODEL


@pytest.mark.parametrize(
    ("message", "is_client", "confidence", "word"),
    [
        ("Здравствуйте, сколько стоит доставка?", True, 0.9, "сколько"),
        ("Предлагаем рекламу в нашем канале", False, 0.85, "реклам"),
        ("Добрый вечер", None, 0.5, None),
    ],
)
def test_lead_detection_with_pydantic_schema_parses(
    client: genai.Client,
    message: str,
    is_client: bool | None,
    confidence: float,
    word: str | None,
) -> None:
    response = client.models.generate_content(model=MODEL, contents=message, config=json_config(LeadVerdict))

    verdict = response.parsed
    assert isinstance(verdict, LeadVerdict)
    assert (verdict.is_client, verdict.confidence) == (is_client, confidence)
    if word is not None:
        assert f"«{word}»" in verdict.reasoning


def test_lead_detection_reads_every_user_turn(client: genai.Client) -> None:
    history: list[types.ContentDict] = [
        {"role": "user", "parts": [{"text": "Интересует ваш прайс"}]},
        {"role": "model", "parts": [{"text": "Конечно, пришлю."}]},
        {"role": "user", "parts": [{"text": "Спасибо"}]},
    ]

    response = client.models.generate_content(model=MODEL, contents=history, config=json_config(LeadVerdict))

    assert isinstance(response.parsed, LeadVerdict)
    assert response.parsed.is_client is True


def test_response_json_schema_dict_books_a_call(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        system_instruction=KNOWLEDGE_BASE,
        response_mime_type="application/json",
        response_json_schema=AgentTurn.model_json_schema(),
    )

    booked = client.models.generate_content(
        model=MODEL,
        contents="Позвоните мне 2026-12-01 15:30 про доставка",
        config=config,
    )
    plain = client.models.generate_content(model=MODEL, contents="Как оплата проходит?", config=config)

    assert isinstance(booked.parsed, dict)
    assert booked.parsed["call"] == {"at": "2026-12-01T15:30"}
    assert "Доставка по Алматы" in booked.parsed["reply"]
    assert isinstance(plain.parsed, dict)
    assert plain.parsed["call"] is None
    assert plain.parsed["reply"].startswith("Здравствуйте!")


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        ("Да, давайте", Answer.yes),
        ("Нет, не надо", Answer.no),
        ("Подумаю", Answer.unclear),
    ],
)
def test_yes_no_decision_respects_the_enum(client: genai.Client, message: str, answer: Answer) -> None:
    response = client.models.generate_content(
        model=MODEL, contents=message, config=json_config(FollowUpDecision)
    )

    assert response.parsed == FollowUpDecision(answer=answer)


def test_wrong_api_key_is_a_400_client_error(emu: GeminiEmulator) -> None:
    intruder = make_client(emu.url, api_key="wrong-key")
    try:
        with pytest.raises(errors.ClientError) as caught:
            intruder.models.generate_content(model=MODEL, contents="Привет")
    finally:
        intruder.close()

    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == "API key not valid."
    assert emu.requests_log() == []


def test_scripted_429_carries_retry_delay(emu: GeminiEmulator, client: genai.Client) -> None:
    emu.script([{"status": 429, "retry_delay": "2s"}])

    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="Привет")

    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    details = caught.value.details["error"]["details"]
    assert details == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}]
    follow_up = client.models.generate_content(model=MODEL, contents="Привет")
    assert follow_up.text is not None


@pytest.mark.parametrize(("status", "rpc_status"), [(503, "UNAVAILABLE"), (500, "INTERNAL")])
def test_scripted_5xx_is_a_server_error(
    emu: GeminiEmulator, client: genai.Client, status: int, rpc_status: str
) -> None:
    requests.post(
        f"{emu.url}/_emulator/script",
        json={"responses": [{"status": status}]},
        timeout=5,
    ).raise_for_status()

    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model=MODEL, contents="Привет")

    assert (caught.value.code, caught.value.status) == (status, rpc_status)


def test_blocked_prompt_and_safety_finish_give_no_text(emu: GeminiEmulator, client: genai.Client) -> None:
    emu.script([{"blocked": True}, {"finish_reason": "SAFETY"}])

    blocked = client.models.generate_content(model=MODEL, contents="…")
    unsafe = client.models.generate_content(model=MODEL, contents="…")

    assert blocked.text is None
    assert blocked.prompt_feedback is not None
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert unsafe.text is None
    assert unsafe.candidates is not None
    assert unsafe.candidates[0].finish_reason == types.FinishReason.SAFETY


def test_scripted_text_json_raw_and_truncated_json(emu: GeminiEmulator, client: genai.Client) -> None:
    emu.script(
        [
            {"text": "Готово"},
            {
                "delay": 0.05,
                "json": {"is_client": False, "confidence": 0.1, "reasoning": "нет"},
            },
            {"text": '{"is_client": tr', "finish_reason": "MAX_TOKENS"},
            {"raw": {"candidates": [{"content": {"parts": [{"text": "сырой"}]}}]}},
        ]
    )
    config = json_config(LeadVerdict)

    text = client.models.generate_content(model=MODEL, contents="а")
    parsed = client.models.generate_content(model=MODEL, contents="б", config=config)
    truncated = client.models.generate_content(model=MODEL, contents="в", config=config)
    raw = client.models.generate_content(model=MODEL, contents="г")

    assert text.text == "Готово"
    assert parsed.parsed == LeadVerdict(is_client=False, confidence=0.1, reasoning="нет")
    assert truncated.parsed is None
    assert truncated.candidates is not None
    assert truncated.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert raw.text == "сырой"


def test_match_routes_scripted_items_to_their_contact(emu: GeminiEmulator, client: genai.Client) -> None:
    emu.script(
        [
            {"match": "Айгерим", "text": "ответ для Айгерим"},
            {"match": "Бахыт", "text": "ответ для Бахыта"},
            {"match": "Айгерим", "text": "второй ответ для Айгерим"},
        ]
    )

    def ask(name: str) -> str | None:
        return client.models.generate_content(model=MODEL, contents=f"Меня зовут {name}").text

    assert ask("Бахыт") == "ответ для Бахыта"
    assert ask("Айгерим") == "ответ для Айгерим"
    assert "«Меня зовут Бахыт»" in (ask("Бахыт") or "")  # his queue is empty now
    assert ask("Айгерим") == "второй ответ для Айгерим"


def test_inline_audio_round_trip_returns_embedded_transcript(
    emu: GeminiEmulator, client: genai.Client
) -> None:
    ogg = "OggS\x00\x02…TRANSCRIPT:Привет, хочу заказать\x00\x00trailer".encode()

    prompt: list[types.PartUnionDict] = [
        types.Part.from_bytes(data=ogg, mime_type="audio/ogg"),
        "Transcribe this voice note verbatim.",
    ]

    response = client.models.generate_content(model=MODEL, contents=prompt)

    assert response.text == "Привет, хочу заказать"
    blob = emu.requests_log()[-1]["body"]["contents"][0]["parts"][0]
    sent = blob.get("inlineData") or blob["inline_data"]
    assert base64.urlsafe_b64decode(sent["data"]) == ogg


def test_inline_audio_in_camel_case_and_standard_base64(emu: GeminiEmulator) -> None:
    speech = "OggS??>>TRANSCRIPT:Сколько стоит?".encode()
    silence = b"OggS\xfb\xff\xfe no speech here"
    url = f"{emu.url}/v1beta/models/{MODEL}:generateContent"

    def transcribe(audio: bytes) -> str:
        encoded = base64.b64encode(audio).decode().rstrip("=")
        part = {"inlineData": {"mimeType": "audio/ogg", "data": encoded}}
        body = {"contents": [{"role": "user", "parts": [part]}]}
        reply = requests.post(url, json=body, headers={"x-goog-api-key": API_KEY}, timeout=5)
        reply.raise_for_status()
        return str(reply.json()["candidates"][0]["content"]["parts"][0]["text"])

    assert transcribe(speech) == "Сколько стоит?"
    assert transcribe(silence) == "Голосовое сообщение без распознаваемой речи."


def test_usage_metadata_counts_request_and_answer(client: genai.Client) -> None:
    question = "Сколько стоит доставка?"

    response = client.models.generate_content(
        model=MODEL,
        contents=question,
        config=types.GenerateContentConfig(system_instruction=KNOWLEDGE_BASE),
    )

    usage = response.usage_metadata
    assert usage is not None and response.text is not None
    assert usage.prompt_token_count == (len(question) + len(KNOWLEDGE_BASE)) // 4
    assert usage.candidates_token_count == len(response.text) // 4
    assert usage.total_token_count == (usage.prompt_token_count + usage.candidates_token_count)
    assert response.model_version == MODEL
    assert response.response_id


def test_faults_inject_429_until_reset(emu: GeminiEmulator, client: genai.Client) -> None:
    requests.post(
        f"{emu.url}/_emulator/faults",
        json={"rate_429": 1.0, "retry_delay": "7s", "seed": 1},
        timeout=5,
    ).raise_for_status()
    emu.script([{"text": "скрипт важнее"}])

    scripted = client.models.generate_content(model=MODEL, contents="а")
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="б")
    requests.post(f"{emu.url}/_emulator/reset", timeout=5).raise_for_status()
    healthy = client.models.generate_content(model=MODEL, contents="в")

    assert scripted.text == "скрипт важнее"
    assert caught.value.code == 429
    assert caught.value.details["error"]["details"][0]["retryDelay"] == "7s"
    assert healthy.text is not None
    assert len(emu.requests_log()) == 1


def test_wire_format_keep_alive_headers_and_unknown_routes(emu: GeminiEmulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", int(emu.url.rsplit(":", 1)[1]), timeout=5)
    body = json.dumps({"contents": [{"parts": [{"text": "Привет"}]}]})
    try:
        replies = []
        sockets = []
        for path, headers in [
            (f"/v1/models/{MODEL}:generateContent", {"x-goog-api-key": API_KEY}),
            ("/v1beta/models/x:countTokens", {"x-goog-api-key": API_KEY}),
            (f"/v1alpha/models/{MODEL}:generateContent", {}),
        ]:
            connection.request("POST", path, body=body, headers=headers)
            reply = connection.getresponse()
            raw = reply.read()
            replies.append((reply.status, reply.getheaders(), json.loads(raw), len(raw)))
            sockets.append(connection.sock)
    finally:
        connection.close()

    (
        (ok, ok_headers, ok_body, ok_length),
        (missing, _, missing_body, _),
        (denied, _, _, _),
    ) = replies
    headers = dict(ok_headers)
    assert (ok, missing, denied) == (200, 404, 400)
    assert sockets[0] is not None and sockets.count(sockets[0]) == 3  # keep-alive
    assert headers["Content-Type"] == "application/json; charset=UTF-8"
    assert int(headers["Content-Length"]) == ok_length
    assert ok_body["candidates"][0]["content"]["role"] == "model"
    assert missing_body == {
        "error": {
            "code": 404,
            "message": "no route /v1beta/models/x:countTokens",
            "status": "NOT_FOUND",
        }
    }


def test_command_line_serves_until_sigterm() -> None:
    with emulator_command("emulators.gemini", "--api-key", "cli-key") as (port, banner, process):
        cli_client = make_client(f"http://127.0.0.1:{port}", api_key="cli-key")
        try:
            response = cli_client.models.generate_content(model=MODEL, contents="Привет")
        finally:
            cli_client.close()
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)

    assert banner == f"Gemini emulator listening on http://127.0.0.1:{port}"
    assert response.text is not None
    assert exit_code == 0


# --- blind to prompt prose: only the markers of prompts.markers and the schema choose the answer ---


def sales_prompt(knowledge: str) -> str:
    """The product's sales-agent system instruction, rendered."""
    return prompts.render("sales_agent", approach="- Отвечай коротко.", business_name="Ромашка",
                          current_datetime="понедельник, 10:00", working_hours="пн–пт 9:00–18:00",
                          knowledge_base=knowledge)


def contact_block(**names: str) -> str:
    return f"{CONTACT_DATA_START}\n{json.dumps(names, ensure_ascii=False)}\n{CONTACT_DATA_END}"


def test_every_prompt_with_a_knowledge_base_renders_the_exported_markers() -> None:
    with_knowledge = [name for name, required in prompts.REQUIRED.items() if "knowledge_base" in required]

    assert sorted(with_knowledge) == ["follow_up", "sales_agent"]
    for name in with_knowledge:
        values = {key: f"<{key}>" for key in prompts.REQUIRED[name] - prompts.MARKERS.keys()}
        rendered = prompts.render(name, **{**values, "knowledge_base": KB_LINES})
        assert f"{KB_START}\n{KB_LINES}\n{KB_END}" in rendered, name
        assert KB_START not in prompts.load(name)  # the marker's text lives in prompts.markers only


@pytest.mark.parametrize(
    "question", ["Сколько стоит доставка?", "Позвоните мне 2026-12-01 15:30", "Больше не пишите мне", "Да, давайте"]
)
def test_answers_follow_the_markers_and_schema_not_the_prompt_wording(client: genai.Client, question: str) -> None:
    slots = f"{SLOTS_PREFIX} пн 10:00; пн 11:00"
    product = f"{sales_prompt(KB_LINES)}\n\nКлиент просит другое время.\n{slots}"
    reworded = (
        "You are a shop bot. No sentence here is worded like the product's prompts.\n"
        f"{KB_START}\n{KB_LINES}\n{KB_END}\nOffer a call instead.\n{slots}"
    )
    contents: list[types.ContentDict] = [
        {"role": "user", "parts": [{"text": contact_block(имя_в_профиле="Хочу скидку")}, {"text": question}]},
    ]

    def ask(system: str, schema: type[BaseModel]) -> Any:
        config = types.GenerateContentConfig(system_instruction=system, response_mime_type="application/json",
                                             response_schema=schema)
        return client.models.generate_content(model=MODEL, contents=contents, config=config).parsed

    for schema in (SalesTurn, LeadVerdict, FollowUpDecision):
        assert ask(product, schema) == ask(reworded, schema), schema.__name__
    turn = ask(reworded, SalesTurn)
    assert isinstance(turn, SalesTurn)
    assert "могу предложить созвон: пн 10:00; пн 11:00" in turn.reply
    if "доставка" in question:
        assert "По нашим данным: Доставка по Алматы — 1 500 ₸." in turn.reply


def test_without_the_markers_the_same_prose_grounds_nothing(client: genai.Client) -> None:
    unmarked = sales_prompt(KB_LINES).replace(KB_START, "База:").replace(KB_END, "Конец.")
    config = types.GenerateContentConfig(system_instruction=unmarked)

    response = client.models.generate_content(model=MODEL, contents="Сколько стоит доставка?", config=config)

    assert response.text == "Здравствуйте! Вы спросили: «Сколько стоит доставка?». Чем ещё могу помочь?"


def test_contact_data_is_recognised_by_its_marker_only(client: genai.Client) -> None:
    def verdict(first_part: str) -> LeadVerdict:
        parts: list[types.PartDict] = [{"text": first_part}, {"text": "Добрый вечер"}]
        contents: list[types.ContentDict] = [{"role": "user", "parts": parts}]
        response = client.models.generate_content(model=MODEL, contents=contents, config=json_config(LeadVerdict))
        assert isinstance(response.parsed, LeadVerdict)
        return response.parsed

    names = json.dumps({"имя_в_профиле": "Хочу купить"}, ensure_ascii=False)
    assert verdict(contact_block(имя_в_профиле="Хочу купить")).is_client is None  # names are not messages
    assert verdict(f"Данные контакта:\n{names}").is_client is True  # without the marker it is customer text
