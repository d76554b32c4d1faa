"""Legacy completions, embeddings, the model list, health and readiness."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest

from harness import mock, openapi
from harness.processes import Server
from harness.sse import post_stream

MODEL = "gpt-4.1"
EMBEDDING_MODEL = "text-embedding-3-small"


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


# === legacy completions ===


def test_completion_is_the_mocks_echo(client: openai.OpenAI, mock_client: openai.OpenAI, http: httpx.Client) -> None:
    prompt = f"Say this is a test {mock.marker()}"
    raw = http.post("/v1/completions", json={"model": MODEL, "prompt": prompt})
    assert raw.status_code == 200, raw.text
    openapi.validate("CreateCompletionResponse", raw.json())

    completion = client.completions.create(model=MODEL, prompt=prompt)
    reference = mock_client.completions.create(model="mock-1", prompt=prompt)
    text = completion.choices[0].text
    assert text.startswith(f"echo: {prompt}")
    assert text == reference.choices[0].text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len(prompt.split())
    assert completion.usage.completion_tokens == len(text.split())
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_completion_stream(client: openai.OpenAI, http: httpx.Client) -> None:
    prompt = f"Stream this {mock.marker()}"
    whole = client.completions.create(model=MODEL, prompt=prompt).choices[0].text
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(model=MODEL, prompt=prompt, stream=True) if c.choices
    )
    assert streamed == whole

    result = post_stream(http, "/v1/completions", {"model": MODEL, "prompt": prompt, "stream": True})
    assert result.status == 200
    assert result.transport_error is None
    assert result.events[-1].is_done
    assert result.done_count == 1
    chunks = result.json_events()
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# === embeddings ===


def test_embedding_float(http: httpx.Client) -> None:
    response = http.post(
        "/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": "hello world", "encoding_format": "float"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    openapi.validate("CreateEmbeddingResponse", body)
    vector = body["data"][0]["embedding"]
    assert len(vector) == 8
    assert norm(vector) == pytest.approx(1.0, abs=1e-6)
    assert body["usage"]["prompt_tokens"] == 2


def test_embedding_dimensions(client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model=EMBEDDING_MODEL, input="hello world", dimensions=16, encoding_format="float"
    )
    vector = result.data[0].embedding
    assert len(vector) == 16
    assert norm(vector) == pytest.approx(1.0, abs=1e-6)


def test_embedding_sdk_default_is_base64_and_decodes_to_the_float_vector(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    text = f"base64 please {mock.marker()}"
    as_float = client.embeddings.create(model=EMBEDDING_MODEL, input=text, encoding_format="float").data[0].embedding
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    by_default = client.embeddings.create(model=EMBEDDING_MODEL, input=text).data[0].embedding
    assert by_default == pytest.approx(as_float, abs=1e-6)

    raw = http.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": text, "encoding_format": "base64"})
    assert raw.status_code == 200, raw.text
    encoded = raw.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = struct.unpack(f"<{len(base64.b64decode(encoded)) // 4}f", base64.b64decode(encoded))
    assert list(decoded) == pytest.approx(as_float, abs=1e-6)


def test_embedding_batch_is_deterministic(client: openai.OpenAI) -> None:
    inputs = ["alpha", "beta", "alpha"]
    result = client.embeddings.create(model=EMBEDDING_MODEL, input=inputs, encoding_format="float")
    assert [d.index for d in result.data] == [0, 1, 2]
    vectors = [d.embedding for d in result.data]
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]


# === models, health ===


def test_models_list(client: openai.OpenAI, http: httpx.Client) -> None:
    raw = http.get("/v1/models")
    assert raw.status_code == 200, raw.text
    openapi.validate("ListModelsResponse", raw.json())
    assert {m.id for m in client.models.list()} == {MODEL, EMBEDDING_MODEL}


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_health_and_ready_need_no_key(gateway: Server, path: str) -> None:
    response = httpx.get(f"{gateway.url}{path}", timeout=10)
    assert response.status_code == 200, response.text
