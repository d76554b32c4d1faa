"""The response cache, seen through the official SDKs: a streamed miss, then a hit
replayed as a stream (and as JSON), parse to the same text in both dialects."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from harness import clients, config, mock
from harness.processes import Server

MODELS = {"gpt-4.1": ("relay", "mock-1"), "claude": ("claude", "claude-mock")}


@pytest.fixture(scope="module")
def cache_mock(start_mock: Any) -> Server:
    return start_mock("mock-cache")


@pytest.fixture(scope="module")
def cache_gateway(start_gateway: Any, cache_mock: Server) -> Server:
    cfg = config.gateway(
        providers={
            "relay": config.provider(f"{cache_mock.url}/v1"),
            "claude": config.provider(cache_mock.url, kind="anthropic"),
        },
        models={name: config.single(provider, upstream) for name, (provider, upstream) in MODELS.items()},
    )
    cfg["cache"] = {"backend": "memory"}
    return start_gateway("gateway-cache", cfg)


def upstream_calls(server: Server) -> int:
    with clients.raw(server, api_key=None) as http:
        return int(http.get("/mock/stats").json()["requests"])


@pytest.mark.parametrize("model", list(MODELS))
def test_openai_sdk_streams_a_hit_as_it_streamed_the_miss(
    cache_gateway: Server, cache_mock: Server, model: str
) -> None:
    sdk = clients.sdk(cache_gateway)
    messages = [{"role": "user", "content": f"cache me {mock.marker()}"}]

    def stream() -> tuple[str, Any, str]:
        raw = sdk.chat.completions.with_raw_response.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        text, usage = "", None
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage:
                usage = chunk.usage
        return text, usage, raw.headers["x-switchyard-cache"]

    before = upstream_calls(cache_mock)
    missed, miss_usage, status = stream()
    assert status == "miss"
    hit, hit_usage, status = stream()
    assert status == "hit"
    assert hit == missed and hit.startswith("echo: cache me")
    assert hit_usage is not None and miss_usage is not None
    assert hit_usage.total_tokens == miss_usage.total_tokens
    whole = sdk.chat.completions.with_raw_response.create(model=model, messages=messages)
    assert whole.headers["x-switchyard-cache"] == "hit"
    assert whole.parse().choices[0].message.content == missed
    assert upstream_calls(cache_mock) == before + 1


@pytest.mark.parametrize("model", list(MODELS))
def test_anthropic_sdk_streams_a_hit_as_it_streamed_the_miss(
    cache_gateway: Server, cache_mock: Server, model: str
) -> None:
    sdk = anthropic.Anthropic(base_url=cache_gateway.url, api_key=config.CLIENT_KEY, max_retries=0, timeout=10)
    messages: list[Any] = [{"role": "user", "content": f"cache me {mock.marker()}"}]
    before = upstream_calls(cache_mock)
    texts = []
    for _ in range(2):
        with sdk.messages.stream(model=model, max_tokens=100, messages=messages) as stream:
            texts.append("".join(stream.text_stream))
            final = stream.get_final_message()
        assert final.stop_reason == "end_turn"
    assert texts[0] == texts[1] and texts[0].startswith("echo: cache me")
    whole = sdk.messages.with_raw_response.create(model=model, max_tokens=100, messages=messages)
    assert whole.headers["x-switchyard-cache"] == "hit"
    assert whole.parse().content[0].text == texts[0]  # type: ignore[union-attr]
    assert upstream_calls(cache_mock) == before + 1
