"""Tool definitions the tests offer the model (the mock calls the first one)."""

from __future__ import annotations

from typing import Any

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Looks a thing up.",
            "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]},
        },
    },
    {
        "type": "function",
        "function": {"name": "unused", "parameters": {"type": "object", "properties": {}}},
    },
]
