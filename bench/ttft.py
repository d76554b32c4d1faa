#!/usr/bin/env python3
"""Time to first token: N sequential streaming chat requests on one keep-alive
connection, each timed from just before the request is written to the first SSE
`data:` line that carries content. Standard library only.

Prints one JSON line: {"n": N, "errors": E, "p50_us": ..., "p99_us": ..., ...}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import time
from urllib.parse import urlsplit


def has_content(payload: bytes) -> bool:
    """True for a chunk with text in it (chat delta or legacy completion)."""
    if payload == b"[DONE]":
        return False
    try:
        chunk = json.loads(payload)
    except ValueError:
        return False
    for choice in chunk.get("choices") or []:
        if (choice.get("delta") or {}).get("content") or choice.get("text"):
            return True
    return False


def one_request(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> int | None:
    """Sends one streaming request and reads it to the end. Returns the time to the
    first content chunk in nanoseconds, or None if there was none (or not a 200)."""
    started = time.perf_counter_ns()
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    if response.status != 200:
        response.read()
        return None
    first: int | None = None
    while line := response.readline():
        if first is None and line.startswith(b"data:") and has_content(line[5:].strip()):
            first = time.perf_counter_ns() - started
    return first


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="e.g. http://127.0.0.1:8080/v1/chat/completions")
    parser.add_argument("--body", required=True, help="JSON request body file; `stream: true` is added")
    parser.add_argument("--key", default="", help="sent as Authorization: Bearer KEY")
    parser.add_argument("-n", "--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30, help="requests sent first and not counted")
    parser.add_argument("--timeout", type=float, default=10.0, help="socket timeout, seconds")
    args = parser.parse_args()

    url = urlsplit(args.url)
    with open(args.body, "rb") as f:
        request = json.load(f)
    request["stream"] = True
    body = json.dumps(request, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"

    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=args.timeout)
    samples: list[int] = []
    errors = 0
    try:
        for i in range(args.warmup + args.requests):
            ttft = one_request(conn, url.path, body, headers)
            if ttft is None:
                errors += 1
            elif i >= args.warmup:
                samples.append(ttft)
    finally:
        conn.close()

    if not samples:
        print(json.dumps({"n": 0, "errors": errors}))
        return 1
    samples.sort()
    print(
        json.dumps(
            {
                "n": len(samples),
                "errors": errors,
                "p50_us": round(percentile(samples, 50) / 1000, 1),
                "p90_us": round(percentile(samples, 90) / 1000, 1),
                "p99_us": round(percentile(samples, 99) / 1000, 1),
                "min_us": round(samples[0] / 1000, 1),
                "max_us": round(samples[-1] / 1000, 1),
            }
        )
    )
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
