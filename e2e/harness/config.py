"""Gateway configs for the suite, written as YAML files the way a user writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CLIENT_KEY = "sk-e2e-test"
UPSTREAM_KEY = "sk-upstream-secret"
# The upstream key reaches the config through `${VAR}` interpolation, the client key
# through a `${VAR:-default}` default: both forms are exercised by every test.
UPSTREAM_KEY_ENV = {"E2E_UPSTREAM_KEY": UPSTREAM_KEY}

DEFAULT_TIMEOUTS = {"connect": "1s", "first_byte": "2s", "idle": "2s", "total": "30s"}


def provider(base_url: str, kind: str = "openai", **timeouts: str) -> dict[str, Any]:
    """A provider of `kind` whose key comes from `${E2E_UPSTREAM_KEY}`."""
    return {
        "kind": kind,
        "base_url": base_url,
        "api_key": "${E2E_UPSTREAM_KEY}",
        "timeouts": {**DEFAULT_TIMEOUTS, **timeouts},
    }


def single(provider_name: str, upstream_model: str) -> dict[str, Any]:
    """A public model served by one deployment."""
    return {"deployments": [{"provider": provider_name, "model": upstream_model}]}


def gateway(providers: dict[str, Any], models: dict[str, Any], max_body_bytes: str = "1MiB") -> dict[str, Any]:
    return {
        "server": {"listen": "127.0.0.1:0", "max_body_bytes": max_body_bytes},
        "auth": {"mode": "keys"},
        "keys": [{"name": "e2e", "key": "${E2E_CLIENT_KEY:-" + CLIENT_KEY + "}"}],
        "providers": providers,
        "models": models,
    }


def write(config: dict[str, Any], path: Path) -> Path:
    """Writes `config` to `path`; a config without `store` gets a SQLite file of its own beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if "store" not in config:
        config = {**config, "store": {"url": f"sqlite://{path.with_suffix('.db')}"}}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
