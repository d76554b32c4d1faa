"""The admin API against its own OpenAPI document, fuzzed by Schemathesis.

A gateway with an admin key and a fresh SQLite store; `schemathesis run` (the CLI, as
a subprocess) reads /admin/openapi.json and sends generated requests, valid and
invalid, to every operation, with every check (see schemathesis.toml for the two
exclusions and why): no 5xx, only documented statuses, content types and headers,
answers that match their schemas, invalid input refused, auth enforced, unsupported
methods answered 405 with `Allow`. Deterministic: a fixed seed, no example database,
one worker.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from harness import config
from harness.processes import Server

ADMIN_KEY = "sk-e2e-admin"
HERE = Path(__file__).resolve().parent
SEED = "20261206"
MAX_EXAMPLES = "60"
# The whole run takes about 20 s on a debug build; well under the suite's bound.
RUN_TIMEOUT_S = 150


def admin_gateway(start_gateway: Callable[[str, dict[str, Any]], Server], mock: Server) -> Server:
    cfg = config.gateway(
        providers={"up": config.provider(f"{mock.url}/v1")},
        models={"gpt-4.1": config.single("up", "mock-1")},
    )
    cfg["server"]["admin_key"] = ADMIN_KEY
    return start_gateway("gateway-admin", cfg)


def test_the_document_is_served_to_the_admin_only(
    start_gateway: Callable[[str, dict[str, Any]], Server], mock: Server
) -> None:
    gateway = admin_gateway(start_gateway, mock)
    url = f"{gateway.url}/admin/openapi.json"
    assert httpx.get(url, timeout=5).status_code == 401
    response = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/admin/keys",
        "/admin/keys/{id}",
        "/admin/keys/{id}/rotate",
        "/admin/teams",
        "/admin/teams/{id}",
        "/admin/openapi.json",
    }


def test_schemathesis_finds_nothing(
    start_gateway: Callable[[str, dict[str, Any]], Server], mock: Server, tmp_path: Path
) -> None:
    gateway = admin_gateway(start_gateway, mock)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "--no-color",
        "run",
        f"{gateway.url}/admin/openapi.json",
        "--header",
        f"Authorization: Bearer {ADMIN_KEY}",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "5",
    ]
    try:
        # In a directory of its own: Schemathesis keeps a cache in `.schemathesis/` there.
        run = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path, check=False)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"schemathesis ran longer than {RUN_TIMEOUT_S}s:\n{e.stdout}\n{e.stderr}") from e
    assert run.returncode == 0, f"schemathesis exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
