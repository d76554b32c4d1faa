"""The schema checks the suite relies on can fail: broken objects are rejected.

These run without a server."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from harness import openapi
from harness.sse import parse_lines

GOOD_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "mock-1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hi", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}

GOOD_CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "mock-1",
    "choices": [{"index": 0, "delta": {"content": "echo"}, "finish_reason": None, "logprobs": None}],
}


def test_valid_objects_pass() -> None:
    openapi.validate("CreateChatCompletionResponse", GOOD_COMPLETION)
    openapi.validate("CreateChatCompletionStreamResponse", GOOD_CHUNK)
    openapi.validate("ErrorResponse", {"error": {"message": "m", "type": "t", "param": None, "code": None}})


def test_nullable_fields_accept_null_and_nothing_else() -> None:
    # `finish_reason` is `nullable: true` in the document: null passes, a number not.
    chunk = copy.deepcopy(GOOD_CHUNK)
    chunk["usage"] = None
    openapi.validate("CreateChatCompletionStreamResponse", chunk)
    chunk["choices"][0]["finish_reason"] = 42
    with pytest.raises(jsonschema.ValidationError):
        openapi.validate("CreateChatCompletionStreamResponse", chunk)


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda o: o.pop("choices"), id="missing-choices"),
        pytest.param(lambda o: o.update(object="chat.completion.chunk"), id="wrong-object"),
        pytest.param(lambda o: o["choices"][0].update(finish_reason="done"), id="bad-finish-reason"),
        pytest.param(lambda o: o["choices"][0]["message"].update(role="user"), id="bad-role"),
        pytest.param(lambda o: o["usage"].update(prompt_tokens="1"), id="ill-typed-usage"),
    ],
)
def test_broken_completion_fails(breakage: Any) -> None:
    broken = copy.deepcopy(GOOD_COMPLETION)
    breakage(broken)
    with pytest.raises(jsonschema.ValidationError):
        openapi.validate("CreateChatCompletionResponse", broken)


def test_refs_are_resolved() -> None:
    # `message` is a $ref to ChatCompletionResponseMessage, which requires `content`.
    broken = copy.deepcopy(GOOD_COMPLETION)
    del broken["choices"][0]["message"]["content"]
    with pytest.raises(jsonschema.ValidationError, match="content"):
        openapi.validate("CreateChatCompletionResponse", broken)


def test_error_body_needs_all_four_fields() -> None:
    with pytest.raises(jsonschema.ValidationError):
        openapi.validate("ErrorResponse", {"error": {"message": "m"}})


def test_unknown_schema_name_is_an_error() -> None:
    with pytest.raises(KeyError):
        openapi.validate("NoSuchSchema", {})


def test_sse_parser_groups_events() -> None:
    events = parse_lines(['data: {"a":1}', "", ": comment", "event: x", "data: 2", "", "data: [DONE]", ""])
    assert [e.data for e in events] == ['{"a":1}', "2", "[DONE]"]
    assert events[1].event == "x"
    assert events[2].is_done
