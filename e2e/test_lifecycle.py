"""Start-up and shutdown: one stdout line, SIGTERM finishes in-flight requests, exit 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from harness import clients, config, mock
from harness.processes import Server

SLOW = "400ms"


def wait_until_received(mock_http: httpx.Client, count: int, timeout: float = 5.0) -> None:
    """Waits (bounded) until the mock has received `count` requests."""
    deadline = time.monotonic() + timeout
    while mock.request_count(mock_http) < count:
        assert time.monotonic() < deadline, f"the mock did not receive {count} request(s) within {timeout}s"
        time.sleep(0.02)


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as e:  # reported by the test
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_stdout_is_one_listening_line(gateway: Server, mock: Server) -> None:
    for server in (gateway, mock):
        assert server.stdout_lines == [f"listening on 127.0.0.1:{server.port}"]


def test_sigterm_finishes_in_flight_requests_and_exits_zero(
    start_mock: Callable[..., Server], start_gateway: Callable[[str, dict[str, Any]], Server]
) -> None:
    upstream = start_mock("mock-lifecycle", "--latency", SLOW)
    gateway = start_gateway(
        "gateway-lifecycle",
        config.gateway({"up": config.provider(f"{upstream.url}/v1")}, {"gpt-4.1": config.single("up", "mock-1")}),
    )
    with clients.raw(upstream, api_key=None) as mock_http, clients.raw(gateway) as http:
        body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "still there?"}]}
        thread, out = in_background(lambda: http.post("/v1/chat/completions", json=body))
        wait_until_received(mock_http, 1)
        gateway.proc.send_signal(signal.SIGTERM)
        thread.join(timeout=10)

        assert "error" not in out, f"in-flight request failed during shutdown: {out.get('error')!r}"
        response = out["result"]
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"].startswith("echo: still there?")
        assert gateway.proc.wait(timeout=10) == 0
        assert gateway.stdout_lines == [f"listening on 127.0.0.1:{gateway.port}"]

        # The mock honours the same contract.
        thread, out = in_background(lambda: mock_http.post("/v1/chat/completions", json=body))
        wait_until_received(mock_http, 2)
        upstream.proc.send_signal(signal.SIGTERM)
        thread.join(timeout=10)
        assert "error" not in out, f"in-flight request failed during shutdown: {out.get('error')!r}"
        assert out["result"].status_code == 200
        assert upstream.proc.wait(timeout=10) == 0
