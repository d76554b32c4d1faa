"""What the gateway adds to a response and what it sends upstream."""

from __future__ import annotations

import json

import httpx

from harness import config, mock
from harness.processes import Server

CHAT = "/v1/chat/completions"


def ask(word: str, **extra: object) -> dict[str, object]:
    return {"model": "gpt-4.1", "messages": [{"role": "user", "content": f"hi {word}"}], **extra}


def test_response_headers(http: httpx.Client) -> None:
    response = http.post(CHAT, json=ask(mock.marker()), headers={"x-request-id": "e2e-request-42"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "e2e-request-42"
    assert response.headers["x-switchyard-provider"] == "up"
    assert response.headers["x-switchyard-model"] == "mock-1"


def test_request_id_is_generated_when_absent(http: httpx.Client) -> None:
    ids = [http.post(CHAT, json=ask(mock.marker())).headers.get("x-request-id") for _ in range(2)]
    assert all(ids), f"missing x-request-id: {ids}"
    assert ids[0] != ids[1]


def test_stream_response_headers(http: httpx.Client) -> None:
    with http.stream("POST", CHAT, json=ask(mock.marker(), stream=True), headers={"x-request-id": "e2e-stream-7"}) as r:
        r.read()
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "e2e-stream-7"
    assert r.headers["x-switchyard-provider"] == "up"
    assert r.headers["x-switchyard-model"] == "mock-1"


def test_upstream_gets_the_upstream_key_and_model_and_unknown_fields(
    http: httpx.Client, mock_http: httpx.Client
) -> None:
    word = mock.marker()
    extra = {"x_e2e_custom": {"nested": [1, 2, 3]}, "temperature": 0.25, "user": "e2e-user", "seed": 3}
    response = http.post(CHAT, json=ask(word, **extra))
    assert response.status_code == 200, response.text

    upstream = mock.find_one(mock_http, word)
    assert upstream["method"] == "POST"
    assert upstream["path"] == "/v1/chat/completions"
    headers = upstream["headers"]
    assert headers.get("authorization") == f"Bearer {config.UPSTREAM_KEY}"
    assert config.CLIENT_KEY not in json.dumps(headers), f"client key forwarded upstream: {headers}"
    body = upstream["body"]
    assert body["model"] == "mock-1"
    for key, value in extra.items():
        assert body.get(key) == value, f"{key} did not survive: {body}"


def test_upstream_key_never_reaches_the_client(http: httpx.Client) -> None:
    response = http.post(CHAT, json=ask(mock.marker()))
    assert config.UPSTREAM_KEY not in response.text
    assert config.UPSTREAM_KEY not in json.dumps(dict(response.headers))


def test_x_api_key_header_authenticates(gateway: Server, mock_http: httpx.Client) -> None:
    word = mock.marker()
    response = httpx.post(f"{gateway.url}{CHAT}", json=ask(word), headers={"x-api-key": config.CLIENT_KEY}, timeout=10)
    assert response.status_code == 200, response.text
    headers = mock.find_one(mock_http, word)["headers"]
    assert config.CLIENT_KEY not in json.dumps(headers), f"client key forwarded upstream: {headers}"
