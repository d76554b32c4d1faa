"""Dialects: OpenAI clients reaching Claude and Gemini deployments, and Anthropic
clients (`POST /v1/messages`) reaching any provider — with the official SDKs.

Every provider here is a `switchyard mock`, which speaks OpenAI's, Anthropic's and
Gemini's wire formats; the gateway translates between them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from harness import clients, config, mock, openapi
from harness.processes import Server
from harness.sse import post_stream
from harness.tools import TOOLS

ANTHROPIC_TOOLS: list[dict[str, Any]] = [
    {
        "name": "lookup",
        "description": "Looks a thing up.",
        "input_schema": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]},
    }
]

# Public model → (provider, upstream model): one per dialect, all on the same mock.
MODELS = {
    "gpt-4.1": ("relay", "mock-1"),
    "claude": ("claude", "claude-mock"),
    "gemini": ("gemini", "gemini-mock"),
}
TRANSLATED = ["claude", "gemini"]


@pytest.fixture(scope="module")
def dialect_mock(start_mock: Any) -> Server:
    return start_mock("mock-dialects")


@pytest.fixture(scope="module")
def dialect_gateway(start_gateway: Any, dialect_mock: Server) -> Server:
    cfg = config.gateway(
        providers={
            "relay": config.provider(f"{dialect_mock.url}/v1"),
            "claude": config.provider(dialect_mock.url, kind="anthropic"),
            "gemini": config.provider(dialect_mock.url, kind="gemini"),
        },
        models={name: config.single(provider, upstream) for name, (provider, upstream) in MODELS.items()},
    )
    cfg["models"]["claude"]["max_output_tokens"] = 64
    return start_gateway("gateway-dialects", cfg)


@pytest.fixture(scope="module")
def oai(dialect_gateway: Server) -> openai.OpenAI:
    return clients.sdk(dialect_gateway)


@pytest.fixture(scope="module")
def claude_sdk(dialect_gateway: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=dialect_gateway.url, api_key=config.CLIENT_KEY, max_retries=0, timeout=10)


@pytest.fixture(scope="module")
def dialect_http(dialect_mock: Server) -> Iterator[httpx.Client]:
    with clients.raw(dialect_mock, api_key=None) as c:
        yield c


@pytest.fixture(scope="module")
def gw_http(dialect_gateway: Server) -> Iterator[httpx.Client]:
    with clients.raw(dialect_gateway) as c:
        yield c


# === OpenAI clients, Claude and Gemini deployments ===


@pytest.mark.parametrize("model", TRANSLATED)
def test_openai_chat_reaches_a_translated_deployment(
    oai: openai.OpenAI, dialect_http: httpx.Client, model: str
) -> None:
    word = mock.marker()
    raw = oai.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"hello {word}"}],
    )
    completion = raw.parse()
    openapi.validate("CreateChatCompletionResponse", json.loads(raw.content))
    assert raw.headers["x-switchyard-provider"] == MODELS[model][0]
    assert raw.headers["x-switchyard-model"] == MODELS[model][1]
    choice = completion.choices[0]
    assert choice.message.content is not None
    assert choice.message.content.startswith(f"echo: hello {word}")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    # The mock counts every word of every message (system included) and the reply.
    assert completion.usage.prompt_tokens == 4
    assert completion.usage.completion_tokens == len(choice.message.content.split())
    sent = mock.find_one(dialect_http, word)
    assert "authorization" not in {k.lower() for k in sent["headers"]}
    if model == "claude":
        assert sent["path"] == "/v1/messages"
        assert sent["body"]["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
        assert sent["body"]["max_tokens"] == 64, "the model's max_output_tokens, as the client set none"
        assert sent["headers"]["x-api-key"] == "[redacted]" or sent["headers"]["x-api-key"] == config.UPSTREAM_KEY
    else:
        assert sent["path"] == "/v1beta/models/gemini-mock:generateContent"
        assert sent["body"]["systemInstruction"]["parts"][0]["text"] == "Be brief."


@pytest.mark.parametrize("model", TRANSLATED)
def test_openai_tools_round_trip_through_a_translated_deployment(oai: openai.OpenAI, model: str) -> None:
    word = mock.marker()
    messages: list[Any] = [{"role": "user", "content": f"find {word}"}]
    first = oai.chat.completions.with_raw_response.create(model=model, messages=messages, tools=TOOLS)
    openapi.validate("CreateChatCompletionResponse", json.loads(first.content))
    choice = first.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"echo": f"find {word}"}
    assert call.id
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": f"found {word}"},
    ]
    second = oai.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert second.choices[0].message.content is not None
    assert second.choices[0].message.content.startswith(f"echo: found {word}")
    assert second.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", TRANSLATED)
def test_openai_stream_from_a_translated_deployment(oai: openai.OpenAI, model: str) -> None:
    word = mock.marker()
    stream = oai.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": f"stream {word}"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    for chunk in stream.parse():
        openapi.validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert text.startswith(f"echo: stream {word}")
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == len(text.split())


@pytest.mark.parametrize("model", TRANSLATED)
def test_openai_stream_tool_calls_from_a_translated_deployment(oai: openai.OpenAI, model: str) -> None:
    word = mock.marker()
    stream = oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"call {word}"}], tools=TOOLS, stream=True
    )
    name, arguments, finish, ids = "", "", None, set()
    for chunk in stream:
        assert chunk.usage is None, "usage only when asked for"
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                if call.id:
                    ids.add(call.id)
                name += (call.function and call.function.name) or ""
                arguments += (call.function and call.function.arguments) or ""
            finish = choice.finish_reason or finish
    assert name == "lookup" and len(ids) == 1
    assert json.loads(arguments) == {"echo": f"call {word}"}
    assert finish == "tool_calls"


def test_openai_embeddings_from_gemini_match_the_openai_route(oai: openai.OpenAI) -> None:
    assert {m.id for m in oai.models.list().data} >= set(MODELS)
    via_gemini = oai.embeddings.create(model="gemini", input=["one text", "another"], dimensions=8)
    via_openai = oai.embeddings.create(model="gpt-4.1", input=["one text", "another"], dimensions=8)
    assert len(via_gemini.data) == len(via_openai.data) == 2
    for ours, theirs in zip(via_gemini.data, via_openai.data, strict=True):
        assert ours.embedding == pytest.approx(theirs.embedding)
    assert [e.index for e in via_gemini.data] == [0, 1]


def test_an_unexpressible_request_is_refused_and_a_droppable_field_named(gw_http: httpx.Client) -> None:
    body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    refused = gw_http.post("/v1/chat/completions", json={**body, "n": 2})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "n"
    dropped = gw_http.post("/v1/chat/completions", json={**body, "seed": 7, "logit_bias": {"1": 1}})
    assert dropped.status_code == 200
    assert set(dropped.headers["x-switchyard-dropped-fields"].split(", ")) == {"seed", "logit_bias"}
    legacy = gw_http.post("/v1/completions", json={"model": "claude", "prompt": "hi"})
    assert legacy.status_code == 400
    assert legacy.json()["error"]["code"] == "unsupported_endpoint"


# === Anthropic clients ===


@pytest.mark.parametrize("model", ["gpt-4.1", "gemini", "claude"])
def test_anthropic_sdk_messages(claude_sdk: anthropic.Anthropic, model: str) -> None:
    word = mock.marker()
    message = claude_sdk.messages.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": f"hello {word}"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith(f"echo: hello {word}")
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 4
    assert message.usage.output_tokens == len(message.content[0].text.split())


@pytest.mark.parametrize("model", ["gpt-4.1", "gemini", "claude"])
def test_anthropic_sdk_tool_use_round_trip(claude_sdk: anthropic.Anthropic, model: str) -> None:
    word = mock.marker()
    messages: list[Any] = [{"role": "user", "content": f"find {word}"}]
    first = claude_sdk.messages.create(model=model, max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS)
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "lookup"
    assert uses[0].input == {"echo": f"find {word}"}
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": f"found {word}"}]},
    ]
    second = claude_sdk.messages.create(model=model, max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS)
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text.startswith(f"echo: found {word}")


@pytest.mark.parametrize("model", ["gpt-4.1", "gemini", "claude"])
def test_anthropic_sdk_stream_with_tool_use(claude_sdk: anthropic.Anthropic, model: str) -> None:
    word = mock.marker()
    with claude_sdk.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": f"call {word}"}], tools=ANTHROPIC_TOOLS
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "message_delta" in kinds
    assert final.stop_reason == "tool_use"
    uses = [block for block in final.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].input == {"echo": f"call {word}"}
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["gpt-4.1", "gemini", "claude"])
def test_anthropic_sdk_text_stream(claude_sdk: anthropic.Anthropic, model: str) -> None:
    word = mock.marker()
    with claude_sdk.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": f"stream {word}"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith(f"echo: stream {word}")
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 2
    assert final.usage.output_tokens == len(text.split())


def test_anthropic_pass_through_keeps_what_the_client_sent(gw_http: httpx.Client, dialect_http: httpx.Client) -> None:
    word = mock.marker()
    body = {
        "model": "claude",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": f"hi {word}"}],
        "thinking": {"type": "disabled"},
        "future_field": {"kept": True},
    }
    response = gw_http.post("/v1/messages", json=body, headers={"anthropic-beta": "some-beta-2025"})
    assert response.status_code == 200, response.text
    assert "x-switchyard-dropped-fields" not in response.headers
    sent = mock.find_one(dialect_http, word)
    assert sent["body"] == {**body, "model": "claude-mock"}
    assert sent["headers"]["anthropic-beta"] == "some-beta-2025"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    # The mock counts words of cache_control blocks as cache reads.
    assert response.json()["usage"]["cache_read_input_tokens"] == 2


def test_anthropic_request_to_openai_names_what_it_drops(gw_http: httpx.Client) -> None:
    body = {
        "model": "gpt-4.1",
        "max_tokens": 50,
        "top_k": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = gw_http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-dropped-fields"] == "top_k"


def test_anthropic_errors_come_in_anthropics_shape(claude_sdk: anthropic.Anthropic, gw_http: httpx.Client) -> None:
    with pytest.raises(anthropic.BadRequestError) as missing:
        claude_sdk.messages.create(model="gpt-4.1", max_tokens=10, messages=[])  # type: ignore[arg-type]
    assert missing.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as unknown:
        claude_sdk.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    bad_key = gw_http.post(
        "/v1/messages",
        json={"model": "claude", "max_tokens": 5, "messages": []},
        headers={"authorization": "", "x-api-key": "sk-wrong"},
    )
    assert bad_key.status_code == 401
    assert bad_key.json()["error"]["type"] == "authentication_error"


# === upstream errors of each dialect ===


@pytest.fixture(scope="module")
def failing(start_mock: Any, start_gateway: Any) -> dict[str, Server]:
    """One gateway per failure class, each provider kind in front of a mock that fails so."""
    mocks = {
        "529": start_mock("mock-529", "--error-rate", "1", "--error-status", "529"),
        "429": start_mock("mock-429", "--error-rate", "1", "--error-status", "429", "--retry-after", "7"),
        "400": start_mock("mock-400", "--error-rate", "1", "--error-status", "400"),
        "401": start_mock("mock-401", "--error-rate", "1", "--error-status", "401"),
    }
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for status, server in mocks.items():
        for kind in ("openai", "anthropic", "gemini"):
            name = f"{kind}-{status}"
            base = f"{server.url}/v1" if kind == "openai" else server.url
            providers[name] = config.provider(base, kind=kind)
            models[name] = config.single(name, "m")
    cfg = config.gateway(providers=providers, models=models)
    cfg["retries"] = {"attempts": 1}
    cfg["circuit_breaker"] = {"consecutive_failures": 1000000, "failure_rate": 1.0}
    return {"gateway": start_gateway("gateway-failing", cfg)}


# (upstream status) → (status an OpenAI client gets, status an Anthropic client gets, Anthropic error type)
EXPECTED = {
    "529": (503, 529, "overloaded_error"),
    "429": (429, 429, "rate_limit_error"),
    "400": (400, 400, "invalid_request_error"),
    "401": (502, 502, "api_error"),
}


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("status", sorted(EXPECTED))
def test_upstream_errors_map_to_the_clients_dialect(failing: dict[str, Server], kind: str, status: str) -> None:
    openai_status, anthropic_status, anthropic_type = EXPECTED[status]
    model = f"{kind}-{status}"
    with clients.raw(failing["gateway"]) as http:
        as_openai = http.post(
            "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "x"}]}
        )
        as_anthropic = http.post(
            "/v1/messages", json={"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        )
    assert as_openai.status_code == openai_status, as_openai.text
    assert set(as_openai.json()["error"]) >= {"message", "type", "code"}
    assert as_anthropic.status_code == anthropic_status, as_anthropic.text
    assert as_anthropic.json()["type"] == "error"
    assert as_anthropic.json()["error"]["type"] == anthropic_type
    for response in (as_openai, as_anthropic):
        assert config.UPSTREAM_KEY not in response.text
        if status == "429":
            assert response.headers["retry-after"] == "7"
        if status == "400":
            assert response.json()["error"]["message"], "the provider's message is kept"


def test_stream_errors_in_an_anthropic_stream(start_mock: Any, start_gateway: Any) -> None:
    broken = start_mock("mock-stream-error", "--stream-error-rate", "1")
    cfg = config.gateway(
        providers={
            "relay": config.provider(f"{broken.url}/v1"),
            "claude": config.provider(broken.url, kind="anthropic"),
        },
        models={"gpt-4.1": config.single("relay", "m"), "claude": config.single("claude", "m")},
    )
    gateway = start_gateway("gateway-stream-error", cfg)
    with clients.raw(gateway) as http:
        for model in ("gpt-4.1", "claude"):
            result = post_stream(
                http,
                "/v1/messages",
                {"model": model, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]},
            )
            assert result.status == 200
            names = [e.event for e in result.events]
            assert names[0] == "message_start", names
            assert names[-1] == "error", names
            assert "message_stop" not in names
            assert result.events[-1].json()["type"] == "error"
