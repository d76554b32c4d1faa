"""A gateway whose public models each lead to one kind of upstream failure.

Each scenario has its own provider and model, so a circuit breaker opened by one test
never changes what another test sees."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from harness import clients, config
from harness.processes import Server

# Mocks started with fault flags, by name.
MOCK_FLAGS: dict[str, list[str]] = {
    "ratelimit": ["--error-rate", "1", "--error-status", "429", "--retry-after", "3"],
    "slow": ["--latency", "3s"],
    # Paced, so the chunks before the cut are on the wire before the connection drops
    # (test_mock.py checks that the mock cuts mid-stream without pacing too).
    "cut": ["--stream-cut-rate", "1", "--tokens-per-second", "200"],
    "inband": ["--stream-error-rate", "1"],
    "drip": ["--tokens-per-second", "2"],
}

# Public model → (mock it goes to, or None for a closed port; provider timeouts).
MODELS: dict[str, tuple[str | None, dict[str, str]]] = {
    "rate-limited": ("ratelimit", {}),
    "refused": (None, {}),
    "slow": ("slow", {"first_byte": "500ms"}),
    "slow-stream": ("slow", {"first_byte": "500ms"}),
    "cut-sdk": ("cut", {}),
    "cut-raw": ("cut", {}),
    "inband-sdk": ("inband", {}),
    "inband-raw": ("inband", {}),
    "idle-sdk": ("drip", {"idle": "200ms"}),
    "idle-raw": ("drip", {"idle": "200ms"}),
}


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_config(mocks: dict[str, Server]) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for model, (mock_name, timeouts) in MODELS.items():
        base = mocks[mock_name].url if mock_name else f"http://127.0.0.1:{closed_port()}"
        providers[f"p-{model}"] = config.provider(f"{base}/v1", **timeouts)
        models[model] = config.single(f"p-{model}", "mock-1")
    cfg = config.gateway(providers, models)
    # Each failure is seen as the provider sent it: one attempt per request, and a
    # breaker that never opens (retries and breakers are tested on their own).
    cfg["retries"] = {"attempts": 1}
    cfg["circuit_breaker"] = {"consecutive_failures": 1000000, "failure_rate": 1.0}
    return cfg


@dataclass
class Faults:
    gateway: Server
    mocks: dict[str, Server]

    def client(self) -> openai.OpenAI:
        return clients.sdk(self.gateway)

    def http(self) -> httpx.Client:
        return clients.raw(self.gateway)
