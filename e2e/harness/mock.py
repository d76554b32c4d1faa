"""Reading what a `switchyard mock` received: `/mock/stats` and `/mock/requests`."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx


def marker() -> str:
    """A word unique to one test, to find its request among those the mock recorded."""
    return f"m{uuid.uuid4().hex[:12]}"


def stats(mock_http: httpx.Client) -> dict[str, Any]:
    response = mock_http.get("/mock/stats")
    response.raise_for_status()
    return response.json()


def request_count(mock_http: httpx.Client) -> int:
    return int(stats(mock_http)["requests"])


def recorded(mock_http: httpx.Client) -> list[dict[str, Any]]:
    response = mock_http.get("/mock/requests")
    response.raise_for_status()
    return response.json()


def find(mock_http: httpx.Client, word: str) -> list[dict[str, Any]]:
    """Every recorded request whose body mentions `word`."""
    return [r for r in recorded(mock_http) if word in json.dumps(r.get("body"))]


def find_one(mock_http: httpx.Client, word: str) -> dict[str, Any]:
    found = find(mock_http, word)
    assert len(found) == 1, f"expected the mock to have received exactly one request with {word!r}, got {len(found)}"
    return found[0]
