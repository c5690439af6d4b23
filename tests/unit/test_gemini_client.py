"""`clients.gemini.GeminiClient` against the Gemini emulator over HTTP: text-only requests are
written in the wire format by the client itself (the SDK's converter costs a tenth of a worker's
time); they must reach the service exactly as the SDK would send them, and every answer the service
can give must come back as the same typed result or error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google import genai
from google.genai import types

from clients.gemini import (
    GeminiClient,
    GeminiEmptyAnswerError,
    GeminiRejectedError,
    GeminiTransientError,
    text_only,
)
from emulators.gemini import GeminiEmulator
from pipeline.classify import VERDICT_SCHEMA
from pipeline.respond import AGENT_SCHEMA
from tests.support import env

API_KEY = env.GEMINI_KEY
MODEL = "gemini-3.5-flash-lite"
CONVERSATION = [
    {"role": "user", "parts": [{"text": "[данные контакта] Анна"}, {"text": "Сколько стоит торт?"}]},
    {"role": "model", "parts": [{"text": "Торт стоит 9 000 ₸."}]},
    {"role": "user", "parts": [{"text": "А доставка? \u0000 🚚"}]},
]


@pytest.fixture
def emu(gemini: GeminiEmulator) -> GeminiEmulator:
    """The shared Gemini emulator, its log and script emptied."""
    requests.post(f"{gemini.url}/_emulator/reset", timeout=5).raise_for_status()
    return gemini


def sdk_client(url: str, key: str = API_KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=url, api_version="v1beta",
                                                                     timeout=5000))


@pytest.fixture
def client(emu: GeminiEmulator) -> Iterator[GeminiClient]:
    sdk = sdk_client(emu.url)
    yield GeminiClient(sdk, MODEL)
    sdk.close()


@pytest.mark.parametrize(("system", "schema", "model"), [
    ("Ты менеджер пекарни.", AGENT_SCHEMA, MODEL),
    ("Модератор.", VERDICT_SCHEMA, "models/gemini-3.5-flash"),
    (None, None, MODEL),
])
def test_a_text_request_reaches_the_service_as_the_sdk_sends_it(
        emu: GeminiEmulator, client: GeminiClient, system: str | None, schema: dict[str, Any] | None,
        model: str) -> None:
    ours = client.generate(CONVERSATION, system_instruction=system, response_schema=schema, model=model)
    config = types.GenerateContentConfig(system_instruction=system,
                                         automatic_function_calling=types.AutomaticFunctionCallingConfig(
                                             disable=True))
    if schema is not None:
        config.response_mime_type = "application/json"
        config.response_json_schema = schema
    sdk = client._client.models.generate_content(model=model, contents=CONVERSATION,  # type: ignore[arg-type]
                                                 config=config)

    ours_sent, sdk_sent = emu.requests_log()
    assert ours_sent["model"] == sdk_sent["model"] == model.removeprefix("models/")
    assert ours_sent["body"] == sdk_sent["body"]
    assert ours.text == (sdk.text or "").strip()
    usage = sdk.usage_metadata
    assert usage is not None
    assert (ours.usage.prompt_tokens, ours.usage.output_tokens, ours.usage.total_tokens) == (
        usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count)
    assert ours.usage.prompt_tokens > 0 and ours.model == model


def test_only_text_parts_take_the_direct_path() -> None:
    assert text_only(CONVERSATION)
    assert not text_only([{"role": "user", "parts": [{"inline_data": {"mime_type": "audio/ogg", "data": b"x"}},
                                                     {"text": "Расшифруй"}]}])
    assert not text_only([{"role": "user", "parts": [{"text": 5}]}])
    assert not text_only([{"role": "user", "parts": "текст"}])


def test_a_voice_note_still_goes_through_the_sdk(emu: GeminiEmulator, client: GeminiClient) -> None:
    emu.script([{"text": "Привет, хочу торт"}])
    contents = [{"role": "user", "parts": [{"inline_data": {"mime_type": "audio/ogg", "data": b"OggS\x00voice"}},
                                           {"text": "Расшифруй голосовое сообщение."}]}]

    answer = client.generate(contents)

    assert answer.text == "Привет, хочу торт"
    sent = emu.requests_log()[0]["body"]["contents"][0]["parts"][0]
    assert sent["inlineData"]["data"] == "T2dnUwB2b2ljZQ=="  # base64 by the SDK


@pytest.mark.parametrize(("item", "error", "says"), [
    ({"status": 429, "retry_delay": "2s"}, GeminiTransientError, "429"),
    ({"status": 503}, GeminiTransientError, "503"),
    ({"status": 500}, GeminiTransientError, "500"),
    ({"status": 404}, GeminiRejectedError, "404"),
    ({"blocked": True}, GeminiEmptyAnswerError, "blocked"),
    ({"finish_reason": "SAFETY"}, GeminiEmptyAnswerError, "SAFETY"),
    ({"text": "   "}, GeminiEmptyAnswerError, "no text"),
    ({"body": "<html><body>502 Bad Gateway</body></html>"}, GeminiTransientError, "not a JSON object"),
    ({"raw": "просто строка"}, GeminiTransientError, "not a JSON object"),
    ({"raw": {"candidates": "не список"}}, GeminiTransientError, "malformed response"),
])
def test_every_answer_comes_back_typed(emu: GeminiEmulator, client: GeminiClient, item: dict[str, Any],
                                       error: type[Exception], says: str) -> None:
    emu.script([item])

    with pytest.raises(error) as caught:
        client.generate(CONVERSATION, system_instruction="Ты менеджер.", response_schema=AGENT_SCHEMA)

    assert says in str(caught.value)
    if item.get("status") == 429:
        assert isinstance(caught.value, GeminiTransientError) and caught.value.retry_after == 2.0


def test_a_wrong_key_is_refused_not_retried(emu: GeminiEmulator) -> None:
    sdk = sdk_client(emu.url, key="wrong-key")
    try:
        with pytest.raises(GeminiRejectedError, match="400"):
            GeminiClient(sdk, MODEL).generate(CONVERSATION)
    finally:
        sdk.close()
    assert emu.requests_log() == []


def test_a_dead_service_is_transient(emu: GeminiEmulator) -> None:
    sdk = sdk_client("http://127.0.0.1:9")  # nothing listens on the discard port
    try:
        with pytest.raises(GeminiTransientError, match="transport"):
            GeminiClient(sdk, MODEL).generate(CONVERSATION)
    finally:
        sdk.close()


def test_fields_the_sdk_does_not_know_yet_are_ignored(emu: GeminiEmulator, client: GeminiClient) -> None:
    """Google adds response fields over time; the SDK drops unknown ones, and so must we."""
    emu.script([{"raw": {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Торт стоит 9 000 ₸.", "newPartField": 1}]},
                        "finishReason": "STOP", "newCandidateField": {"a": [1, 2]}}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17,
                          "newUsageField": 3},
        "modelVersion": MODEL, "newTopLevelField": {"x": True},
    }}])

    answer = client.generate(CONVERSATION, system_instruction="Ты менеджер.")

    assert answer.text == "Торт стоит 9 000 ₸."
    assert (answer.usage.prompt_tokens, answer.usage.output_tokens, answer.usage.total_tokens) == (12, 5, 17)

