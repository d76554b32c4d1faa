"""Clients for a running server: the official SDK and raw httpx."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from harness import config
from harness.processes import Server


def sdk(server: Server, api_key: str = config.CLIENT_KEY, **kwargs: Any) -> openai.OpenAI:
    """The OpenAI SDK pointed at `server`, without retries (each request is one request)."""
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0, timeout=10, **kwargs)


def raw(server: Server, api_key: str | None = config.CLIENT_KEY) -> httpx.Client:
    """An httpx client for `server`, authenticated with `api_key` unless None."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key is not None else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)
