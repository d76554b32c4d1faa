"""Every failure reaches the SDK as its matching exception, with an OpenAI error body.

Client mistakes are answered by the gateway alone: the mock must not see them."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from harness import clients, config, mock, openapi
from harness.faults import Faults
from harness.processes import Server
from harness.sse import post_stream

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]


def error_body(response: Any) -> dict[str, Any]:
    """The error body of a failed response, checked against the ErrorResponse schema."""
    body = response.json()
    openapi.validate("ErrorResponse", body)
    return body["error"]


@pytest.fixture
def mock_untouched(mock_http: httpx.Client) -> Iterator[None]:
    """Fails the test if the clean mock received any request during it."""
    before = mock.request_count(mock_http)
    yield
    after = mock.request_count(mock_http)
    assert after == before, f"the mock received {after - before} request(s) for a request the gateway should refuse"


# === 400 ===


@pytest.mark.usefixtures("mock_untouched")
@pytest.mark.parametrize(
    "payload",
    [b'{"model": "gpt-4.1", "messages": [', b"not json at all", b"[1, 2, 3]"],
    ids=["truncated", "not-json", "not-an-object"],
)
def test_malformed_json_is_400(http: httpx.Client, payload: bytes) -> None:
    response = http.post(CHAT, content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert error_body(response)["message"]


@pytest.mark.usefixtures("mock_untouched")
@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4.1"},
        {"messages": HELLO},
        {"model": "gpt-4.1", "messages": "hello"},
        {"model": 42, "messages": HELLO},
        {"model": "gpt-4.1", "messages": HELLO, "stream": "yes"},
    ],
    ids=["no-messages", "no-model", "messages-not-array", "model-not-string", "stream-not-bool"],
)
def test_missing_or_ill_typed_field_is_bad_request(client: openai.OpenAI, body: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=ChatCompletion)
    assert caught.value.status_code == 400
    error_body(caught.value.response)


@pytest.mark.usefixtures("mock_untouched")
def test_malformed_embeddings_request_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.post("/embeddings", body={"model": "text-embedding-3-small"}, cast_to=object)


# === 401 ===


@pytest.mark.usefixtures("mock_untouched")
def test_wrong_key_is_authentication_error(gateway: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        clients.sdk(gateway, api_key="sk-not-a-key").chat.completions.create(model="gpt-4.1", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 401
    error_body(caught.value.response)


@pytest.mark.usefixtures("mock_untouched")
@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer"}, {"authorization": "Basic c2stZTJlLXRlc3Q="}, {"x-api-key": "sk-nope"}],
    ids=["none", "empty-bearer", "basic", "wrong-x-api-key"],
)
def test_missing_or_bad_key_is_401(gateway: Server, headers: dict[str, str]) -> None:
    response = httpx.post(
        f"{gateway.url}{CHAT}", json={"model": "gpt-4.1", "messages": HELLO}, headers=headers, timeout=10
    )
    assert response.status_code == 401, response.text
    error_body(response)


# === 404 ===


@pytest.mark.usefixtures("mock_untouched")
def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    error_body(caught.value.response)


@pytest.mark.usefixtures("mock_untouched")
def test_unknown_embedding_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


# === 413 ===


@pytest.mark.usefixtures("mock_untouched")
def test_body_over_the_limit_is_413(client: openai.OpenAI) -> None:
    huge = "word " * 250_000  # 1.25 MB, over max_body_bytes: 1MiB
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": huge}])
    assert caught.value.status_code == 413
    error_body(caught.value.response)


def raw_request(body: bytes) -> bytes:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {config.CLIENT_KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_response_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_connection_after_413_is_closed_or_usable(gateway: Server) -> None:
    # Answering before reading the whole body is fine, but then the response must say
    # `connection: close`; closing silently makes a pooling client's next request on
    # that connection fail (a race the SDK loses when it is quick).
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(raw_request(b"x" * (2 << 20)))
        head = read_response_head(sock).decode("latin-1")
        assert head.startswith("HTTP/1.1 413"), head[:200]
        if "\r\nconnection: close\r\n" in head.lower():
            return
        try:
            sock.sendall(raw_request(json.dumps({"model": "gpt-4.1", "messages": HELLO}).encode()))
            second = read_response_head(sock)
        except OSError as e:
            second = f"{type(e).__name__}: {e}".encode()
        assert second.startswith(b"HTTP/1.1 200"), (
            "after a 413 without `connection: close` the gateway closed the connection: "
            f"the next request on it got {second[:100]!r}"
        )


def test_body_under_the_limit_passes(client: openai.OpenAI) -> None:
    big = "word " * 150_000  # 750 KB
    completion = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": big}])
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 150_000


# === upstream failures ===


def test_upstream_429_is_rate_limit_error_with_retry_after(faults: Faults) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        faults.client().chat.completions.create(model="rate-limited", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 429
    assert caught.value.response.headers.get("retry-after") == "3"
    error_body(caught.value.response)


def test_refused_upstream_is_502(faults: Faults) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        faults.client().chat.completions.create(model="refused", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    error_body(caught.value.response)


def test_first_byte_timeout_is_504(faults: Faults) -> None:
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        faults.client().chat.completions.create(model="slow", messages=HELLO)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert caught.value.status_code == 504
    error_body(caught.value.response)
    # first_byte is 500ms and the mock waits 3s: the gateway gave up, not the mock.
    assert elapsed < 2.5, f"took {elapsed:.2f}s"


def test_first_byte_timeout_on_a_stream_is_504(faults: Faults) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        faults.client().chat.completions.create(model="slow-stream", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert caught.value.status_code == 504
    error_body(caught.value.response)


# === failures in the middle of a stream ===


def assert_sdk_stream_raises(faults: Faults, model: str) -> None:
    stream = faults.client().chat.completions.create(model=model, messages=HELLO, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    # A plain APIError comes from an in-band error event; a broken connection would
    # surface as APIConnectionError instead, which is not the contract.
    assert type(caught.value) is openai.APIError, f"{type(caught.value).__name__}: {caught.value}"
    assert isinstance(caught.value.body, dict) and caught.value.body.get("message")


def assert_raw_stream_ends_with_error_event(faults: Faults, model: str) -> None:
    with faults.http() as http:
        result = post_stream(http, CHAT, {"model": model, "messages": HELLO, "stream": True})
    assert result.status == 200
    assert result.transport_error is None, f"the gateway broke the client connection: {result.transport_error}"
    assert result.done_count == 0, "an interrupted stream must not end with [DONE]"
    assert result.events, "empty stream"
    *chunks, last = result.json_events()
    openapi.validate("ErrorResponse", last)
    for chunk in chunks:
        openapi.validate("CreateChatCompletionStreamResponse", chunk)


@pytest.mark.parametrize("fault", ["cut", "inband", "idle"])
def test_interrupted_stream_raises_api_error_in_the_sdk(faults: Faults, fault: str) -> None:
    assert_sdk_stream_raises(faults, f"{fault}-sdk")


@pytest.mark.parametrize("fault", ["cut", "inband", "idle"])
def test_interrupted_stream_ends_with_an_error_event(faults: Faults, fault: str) -> None:
    assert_raw_stream_ends_with_error_event(faults, f"{fault}-raw")
