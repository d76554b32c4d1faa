"""The mock's own fault behaviour, checked directly: the failure tests build on it."""

from __future__ import annotations

from collections.abc import Callable

from harness import clients
from harness.processes import Server
from harness.sse import post_stream
from harness.timing import median, time_streams

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hello there"}], "stream": True}


def test_stream_cut_drops_the_connection_mid_stream(start_mock: Callable[..., Server]) -> None:
    # No pacing: the content before the cut must still reach the client.
    server = start_mock("mock-cut-unpaced", "--stream-cut-rate", "1")
    with clients.raw(server, api_key=None) as http:
        result = post_stream(http, "/v1/chat/completions", BODY)
    server.stop()
    assert result.status == 200, f"the mock cut the connection before the response head: {result.transport_error}"
    assert result.transport_error is not None, "the connection was not cut"
    contents = [c["choices"][0]["delta"].get("content") for c in result.json_events() if c.get("choices")]
    assert any(contents), f"no content chunk before the cut: {result.events}"
    assert result.done_count == 0


def test_stream_error_sends_an_error_event(start_mock: Callable[..., Server]) -> None:
    server = start_mock("mock-inband-direct", "--stream-error-rate", "1")
    with clients.raw(server, api_key=None) as http:
        result = post_stream(http, "/v1/chat/completions", BODY)
    server.stop()
    assert result.status == 200
    assert result.done_count == 0
    assert "error" in result.json_events()[-1]


def test_streams_are_not_stalled_by_nagle(mock: Server) -> None:
    # Ten streams on one keep-alive connection: with TCP_NODELAY unset on the mock's
    # sockets, each SSE write waits for the client's delayed ACK (~40 ms), and every
    # streaming measurement through the mock measures that stall.
    timings = time_streams(mock.port, BODY, count=10)
    total = median([t.total_ms for t in timings])
    assert total < 20.0, f"median whole-stream time {total:.1f} ms: is TCP_NODELAY set on accepted connections?"
