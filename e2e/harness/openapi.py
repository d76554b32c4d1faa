"""Validation of response bodies against OpenAI's published OpenAPI schemas.

The whole OpenAPI document is loaded once and registered as one JSON Schema resource,
so `#/components/schemas/...` references inside it resolve as they are written.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "openai-openapi.yaml"
SPEC_URI = "urn:switchyard-e2e:openai-openapi"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _nullable_to_anyof(node: Any) -> Any:
    """Rewrites OpenAPI 3.0's `nullable: true` (ignored by JSON Schema 2020-12) as
    `anyOf: [schema, {type: null}]`, recursively."""
    if isinstance(node, list):
        return [_nullable_to_anyof(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_to_anyof(value) for key, value in node.items()}
    if converted.pop("nullable", None) is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def _registry() -> Registry:
    with SPEC_PATH.open("rb") as f:
        document = yaml.load(f, Loader=_Loader)
    # The whole document is one resource: its `#/components/schemas/...` references
    # resolve against it exactly as written.
    resource = Resource.from_contents(_nullable_to_anyof(document), default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    registry = _registry()
    schemas = registry.contents(SPEC_URI)["components"]["schemas"]
    if name not in schemas:
        raise KeyError(f"no schema named {name!r} in {SPEC_PATH.name}")
    schema = {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(name: str, instance: Any) -> None:
    """Raises `jsonschema.ValidationError` (with every problem listed) unless `instance`
    is valid against `#/components/schemas/<name>`."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "\n".join(
            f"  at {'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors
        )
        first = errors[0]
        raise jsonschema.ValidationError(
            f"{name}: {len(errors)} problem(s)\n{problems}\ninstance: {instance!r}"[:4000],
            validator=first.validator,
            path=first.absolute_path,
            instance=first.instance,
        )
