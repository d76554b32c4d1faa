"""A strict reader of server-sent events, for checking a stream's exact wire shape
(the SDK hides `[DONE]` and the final usage chunk)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    data: str
    event: str | None = None

    @property
    def is_done(self) -> bool:
        return self.data == "[DONE]"

    def json(self) -> Any:
        return json.loads(self.data)


def parse_lines(lines: Iterable[str]) -> list[Event]:
    """Groups SSE lines into events (a blank line ends one). Comments are ignored."""
    events: list[Event] = []
    data: list[str] = []
    name: str | None = None
    for line in lines:
        if line == "":
            if data:
                events.append(Event(data="\n".join(data), event=name))
            data, name = [], None
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
    if data:
        events.append(Event(data="\n".join(data), event=name))
    return events


@dataclass
class StreamResult:
    status: int
    headers: httpx.Headers
    events: list[Event]
    # Set when the connection broke before the body ended properly.
    transport_error: str | None = None

    @property
    def done_count(self) -> int:
        return sum(1 for e in self.events if e.is_done)

    def json_events(self) -> list[Any]:
        """Every event before `[DONE]`, parsed as JSON."""
        return [e.json() for e in self.events if not e.is_done]


def post_stream(
    client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> StreamResult:
    """POSTs `body` and reads the whole SSE answer, tolerating a connection that breaks
    (before the response head: status 0)."""
    lines: list[str] = []
    try:
        with client.stream("POST", path, json=body, headers=headers) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()
                return StreamResult(response.status_code, response.headers, [], None)
            error: str | None = None
            try:
                for line in response.iter_lines():
                    lines.append(line)
            except (httpx.RemoteProtocolError, httpx.ReadError) as e:
                error = f"{type(e).__name__}: {e}"
            return StreamResult(response.status_code, response.headers, parse_lines(lines), error)
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        return StreamResult(0, httpx.Headers(), [], f"{type(e).__name__}: {e}")
