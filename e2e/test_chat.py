"""Chat completions through the gateway: JSON, streaming, tools.

The mock is deterministic, so the gateway's answer must equal what the mock itself
answers to the same request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from harness import config, mock, openapi
from harness.processes import Server
from harness.sse import post_stream
from harness.timing import median, time_streams
from harness.tools import TOOLS

MODEL = "gpt-4.1"
UPSTREAM_MODEL = "mock-1"


def conversation(word: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "What is a switchyard?"},
        {"role": "assistant", "content": "A place where trains are sorted."},
        {"role": "user", "content": f"Tell me more about {word} please"},
    ]


def words(messages: list[dict[str, Any]]) -> int:
    return sum(len(m["content"].split()) for m in messages if isinstance(m.get("content"), str))


# === JSON ===


def test_chat_completion_is_the_mocks_echo(client: openai.OpenAI, mock_client: openai.OpenAI) -> None:
    messages = conversation(mock.marker())
    completion = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    reference = mock_client.chat.completions.create(model=UPSTREAM_MODEL, messages=messages)  # type: ignore[arg-type]

    choice = completion.choices[0]
    assert len(completion.choices) == 1
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert choice.message.content.startswith(f"echo: {messages[-1]['content']}")
    assert choice.message.content == reference.choices[0].message.content
    assert choice.finish_reason == "stop"

    assert completion.usage is not None
    assert completion.usage.prompt_tokens == words(messages)
    assert completion.usage.completion_tokens == len(choice.message.content.split())
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_chat_completion_body_matches_the_openapi_schema(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": conversation(mock.marker())})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    openapi.validate("CreateChatCompletionResponse", response.json())


# === streaming ===


def stream_text(client: openai.OpenAI, messages: list[dict[str, Any]], **kwargs: Any) -> tuple[str, list[Any]]:
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, stream=True, **kwargs))  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_stream_deltas_add_up_to_the_json_answer(client: openai.OpenAI) -> None:
    messages = conversation(mock.marker())
    whole = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    text, chunks = stream_text(client, messages)

    assert text == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("stream_options", [None, {"include_usage": False}], ids=["absent", "false"])
def test_stream_without_include_usage(
    http: httpx.Client, mock_http: httpx.Client, stream_options: dict[str, Any] | None
) -> None:
    word = mock.marker()
    body: dict[str, Any] = {"model": MODEL, "messages": conversation(word), "stream": True}
    if stream_options is not None:
        body["stream_options"] = stream_options
    result = post_stream(http, "/v1/chat/completions", body)

    assert result.status == 200
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.transport_error is None
    assert result.events, "empty stream"
    assert result.events[-1].is_done, f"last event is {result.events[-1].data!r}, not [DONE]"
    assert result.done_count == 1
    chunks = result.json_events()
    for chunk in chunks:
        openapi.validate("CreateChatCompletionStreamResponse", chunk)
        assert chunk.get("usage") is None, f"usage chunk reached a client that did not ask: {chunk}"
        assert chunk["choices"], f"chunk without choices: {chunk}"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[-1] == "stop"
    assert all(f is None for f in finishes[:-1])

    # The gateway asked upstream for usage anyway (it needs it for accounting).
    upstream = mock.find_one(mock_http, word)
    assert upstream["body"].get("stream") is True
    assert upstream["body"].get("stream_options", {}).get("include_usage") is True


def test_stream_with_include_usage(http: httpx.Client, client: openai.OpenAI) -> None:
    messages = conversation(mock.marker())
    whole = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    body = {"model": MODEL, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    result = post_stream(http, "/v1/chat/completions", body)

    assert result.status == 200
    assert result.events[-1].is_done
    assert result.done_count == 1
    chunks = result.json_events()
    for chunk in chunks:
        openapi.validate("CreateChatCompletionStreamResponse", chunk)
    last = chunks[-1]
    assert last["choices"] == []
    assert whole.usage is not None
    assert last["usage"]["prompt_tokens"] == whole.usage.prompt_tokens
    assert last["usage"]["completion_tokens"] == whole.usage.completion_tokens
    assert last["usage"]["total_tokens"] == whole.usage.total_tokens
    assert all(c.get("usage") is None for c in chunks[:-1])


def test_sdk_stream_with_include_usage(client: openai.OpenAI) -> None:
    messages = conversation(mock.marker())
    text, chunks = stream_text(client, messages, stream_options={"include_usage": True})
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == words(messages)
    assert usage.completion_tokens == len(text.split())


# === tools ===


def tool_call_message(call: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
        ],
    }


def test_tool_round_trip(client: openai.OpenAI, http: httpx.Client) -> None:
    question = f"weather in Paris {mock.marker()}"
    ask = [{"role": "user", "content": question}]

    raw = http.post("/v1/chat/completions", json={"model": MODEL, "messages": ask, "tools": TOOLS})
    assert raw.status_code == 200, raw.text
    openapi.validate("CreateChatCompletionResponse", raw.json())

    first = client.chat.completions.create(model=MODEL, messages=ask, tools=TOOLS)  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls, f"no tool call in {choice.message}"
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"echo": question}

    answer = client.chat.completions.create(
        model=MODEL,
        messages=[*ask, tool_call_message(call), {"role": "tool", "tool_call_id": call.id, "content": "sunny and 21C"}],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content is not None
    assert answer.choices[0].message.content.startswith("echo: sunny and 21C")


def accumulate_tool_calls(chunks: Iterator[Any]) -> tuple[dict[int, dict[str, str]], str | None]:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    return calls, finish


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    question = f"time in Tokyo {mock.marker()}"
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        tools=TOOLS,
        stream=True,  # type: ignore[arg-type]
    )
    calls, finish = accumulate_tool_calls(iter(stream))
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "lookup"
    assert calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"echo": question}


# === latency ===

STALL_MS = 20.0  # far above a debug build's time for a whole stream, far below a 40 ms delayed-ACK stall


def test_streams_are_not_stalled_by_nagle(gateway: Server) -> None:
    # Ten streams on one keep-alive connection: with TCP_NODELAY unset on the gateway's
    # sockets, each SSE write waits for the client's delayed ACK (~40 ms).
    body = {"model": MODEL, "messages": [{"role": "user", "content": "quick"}]}
    timings = time_streams(gateway.port, body, count=10, headers={"authorization": f"Bearer {config.CLIENT_KEY}"})
    first = median([t.first_content_ms for t in timings])
    total = median([t.total_ms for t in timings])
    assert first < STALL_MS and total < STALL_MS, (
        f"median time to first content {first:.1f} ms, whole stream {total:.1f} ms (limit {STALL_MS} ms): "
        "is TCP_NODELAY set on accepted connections? (When test_mock.py's test of the same name fails too, the "
        "stall is upstream, in the mock.)"
    )
