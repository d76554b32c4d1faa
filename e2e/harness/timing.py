"""Timing of streamed responses on one keep-alive connection, over a raw socket so
nothing between the server and the clock buffers.

A server that leaves Nagle's algorithm on (no TCP_NODELAY) holds each small SSE write
until the previous one is acknowledged, and the client acknowledges late (delayed ACK,
~40 ms on Linux): streams then stall for tens of milliseconds. These helpers make that
visible."""

from __future__ import annotations

import json
import re
import socket
import statistics
import time
from dataclasses import dataclass
from typing import Any

_CONTENT = re.compile(rb'"(?:content|text)":"[^"]')
_END = b"data: [DONE]"
_LAST_CHUNK = b"\r\n0\r\n\r\n"


@dataclass
class StreamTiming:
    first_content_ms: float
    total_ms: float


def time_streams(
    port: int, body: dict[str, Any], count: int, headers: dict[str, str] | None = None
) -> list[StreamTiming]:
    """Sends `count` streaming chat requests one after another on one connection."""
    payload = json.dumps({**body, "stream": True}).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{head}"
        f"content-length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    timings: list[StreamTiming] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(request)
            data = b""
            first: float | None = None
            while not (_END in data and data.endswith(_LAST_CHUNK)):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"connection closed mid-response: {data[-300:]!r}")
                data += chunk
                if first is None and _CONTENT.search(data):
                    first = time.perf_counter()
            ended = time.perf_counter()
            if not data.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"not a 200: {data[:300]!r}")
            assert first is not None, f"no content chunk in {data[:500]!r}"
            timings.append(StreamTiming((first - started) * 1000, (ended - started) * 1000))
    return timings


def median(values: list[float]) -> float:
    return statistics.median(values)
