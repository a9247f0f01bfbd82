"""The OpenAPI document, made to tell the truth about what the API accepts and answers.

FastAPI's own document describes `kind` as a free string, a payload as any object and
every error as `application/json`. This module adds what it cannot know: the registered
kinds, each with its payload schema (a discriminated union), decimals as the payload
models check them, and problem documents with their stable types.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from dispatcher.api import problems
from workers import handlers as _handlers  # noqa: F401  (registers the task kinds)
from workers.kinds import kinds, spec_for

REF = "#/components/schemas/{model}"
SUBMITS = ("SubmitRequest", "BatchItem")  # request bodies that carry one task


class PayloadSchema(GenerateJsonSchema):
    """Decimals described with their digits and places, as the payload models check them."""

    def get_decimal_pattern(self, schema: core_schema.DecimalSchema) -> str | None:
        """The strings the model takes: digits before and after the point, zeros aside."""
        places, digits = schema.get("decimal_places"), schema.get("max_digits")
        if places is None or digits is None:
            return self.build_decimal_pattern(schema)
        whole = digits - places
        return rf"^[+-]?0*([0-9]{{1,{whole}}}(\.[0-9]{{0,{places}}}0*)?|\.[0-9]{{1,{places}}}0*)$"

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        """A decimal as a string or a number, either with at most its decimal places."""
        described = super().decimal_schema(schema)
        places = schema.get("decimal_places")
        for branch in described.get("anyOf", []):
            if branch.get("type") == "number" and places is not None:
                branch["multipleOf"] = 10**-places
        return described


def _payloads(components: dict[str, Any]) -> dict[str, str]:
    """Add each kind's payload schema to the components; kind → reference."""
    models: list[type[BaseModel]] = [spec_for(kind).payload_model for kind in kinds()]
    refs, defs = models_json_schema(
        [(model, "validation") for model in models],
        ref_template=REF,
        schema_generator=PayloadSchema,
    )
    for name, schema in defs.get("$defs", {}).items():
        if name in components:
            raise ValueError(f"payload model {name} clashes with an API schema of that name")
        components[name] = schema
    return {
        kind: refs[(model, "validation")]["$ref"]
        for kind, model in zip(kinds(), models, strict=True)
    }


def _by_kind(components: dict[str, Any], name: str, payloads: dict[str, str]) -> None:
    """Turn a body with `kind` and `payload` into one variant per kind, told apart by kind."""
    base = components.get(name)
    if base is None:
        return
    variants: dict[str, str] = {}
    for kind, payload_ref in payloads.items():
        variant_name = f"{name}.{kind}"
        variant = {
            **base,
            "title": f"{base.get('title', name)} ({kind})",
            "properties": {
                **base["properties"],
                "kind": {"type": "string", "enum": [kind], "title": "Kind"},
                "payload": {"$ref": payload_ref},
            },
        }
        components[variant_name] = variant
        variants[kind] = REF.format(model=variant_name)
    components[name] = {
        "title": base.get("title", name),
        "description": base.get("description", ""),
        "oneOf": [{"$ref": ref} for ref in variants.values()],
        "discriminator": {"propertyName": "kind", "mapping": variants},
    }


def _restart_payload(components: dict[str, Any], payloads: dict[str, str]) -> None:
    """A corrected payload is one of the kinds' payloads (the task's own kind decides)."""
    restart = components.get("RestartRequest")
    if restart is None:
        return
    restart["properties"]["payload"] = {
        "anyOf": [{"$ref": ref} for ref in dict.fromkeys(payloads.values())] + [{"type": "null"}],
        "description": "a corrected payload for the task's kind; absent or null keeps it",
    }


def _kind_filters(document: dict[str, Any]) -> None:
    """A `kind` query parameter names a registered kind."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "kind" and parameter["in"] == "query":
                    parameter["schema"] = {"type": "string", "enum": kinds()}


def describe(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with kinds, payloads and problems filled in."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = problems.SCHEMA
    payloads = _payloads(components)
    for name in SUBMITS:
        _by_kind(components, name, payloads)
    _restart_payload(components, payloads)
    _kind_filters(document)
    return document


def install(app: FastAPI) -> None:
    """Serve the described document at /openapi.json (made once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
