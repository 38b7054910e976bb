"""OpenAPI for routes that read their own body, and every status each operation can answer.

The routes' own declarations say only part of it: the key checks, the rate limit and the error handlers
answer from outside FastAPI's view, so `install` sets each operation's error answers from `STATUSES`."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.api.answer_headers import USABLE
from app.features.events import EventType
from app.schemas import FIELD_RULES, ErrorBody

REF = "#/components/schemas/{model}"
_BODY_MODELS: list[type[BaseModel]] = []

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON: the message names line and column"},
    401: {"model": ErrorBody, "description": "No API key, or one the service does not know"},
    403: {"model": ErrorBody, "description": "The API key lacks the route's scope"},
    404: {"model": ErrorBody, "description": "No bundle of that version in the model store"},
    409: {"model": ErrorBody, "description": "Bundle refused: the message names the failed check"},
    413: {"model": ErrorBody, "description": "Body over the size limit"},
    422: {"model": ErrorBody, "description": "Invalid request: each problem names its field"},
    429: {"model": ErrorBody, "description": "Rate limited, or at capacity: retry after Retry-After seconds"},
    503: {
        "model": ErrorBody,
        "description": "Feature store unavailable, not durable in time or partly written (a cluster node "
        "failed: retrying is safe), deadline missed, shutting down",
    },
}

# Headers the answers carry: X-Request-ID on every one (app/api/answer_headers.py), and on errors what
# app/api/errors.py adds for their status.
REQUEST_ID = {
    "description": "The client's X-Request-ID when usable, else a new one; on every log line of the request",
    "required": True,
    "schema": {"type": "string", "pattern": USABLE.pattern},
}
RETRY_AFTER = {
    "description": "Seconds to wait before a retry",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}

KEYED = (401, 403, 429)  # the key check and the key's rate limit
BODY = (400, 413, 422)  # a body the handler parses itself
STORE = (503,)  # Redis, the batcher's deadline or a shutdown
# Error statuses per operation. Unknown users are no error anywhere (`known_user: false`; erasing is
# idempotent); only a model version the store does not have is not found (404).
STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/events"): (*BODY, *KEYED, *STORE),
    ("post", "/score"): (*BODY, *KEYED, *STORE),
    ("get", "/users/{user_id}/features"): (422, *KEYED, *STORE),
    ("delete", "/users/{user_id}"): (422, *KEYED, *STORE),
    ("get", "/model"): KEYED,
    ("get", "/metrics"): KEYED,
    ("post", "/admin/model"): (*BODY, 404, 409, *KEYED),
    ("post", "/admin/model/shadow"): (*BODY, 404, 409, *KEYED),
    ("delete", "/admin/model/shadow"): KEYED,
    ("get", "/model/drift"): KEYED,
    ("get", "/healthz"): (),
    ("get", "/readyz"): (),
}


class Readiness(BaseModel):
    """/readyz's answer, 200 when ready and 503 when not."""

    ready: bool
    checks: dict[str, bool]


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose handler parses `model` from the raw body itself; the model's
    first example is the request "Try it out" starts from."""
    _BODY_MODELS.append(model)
    media: dict[str, Any] = {"schema": {"$ref": REF.format(model=model.__name__)}}
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if isinstance(examples, list) and examples:
        media["example"] = examples[0]
    return {"requestBody": {"required": True, "content": {"application/json": media}}}


def _error(status: int) -> dict[str, Any]:
    schema = {"$ref": REF.format(model=ErrorBody.__name__)}
    return {
        "description": ERRORS[status]["description"],
        "headers": dict(ERROR_HEADERS.get(status, {})),
        "content": {"application/json": {"schema": schema}},
    }


def _document_statuses(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in [s for s in responses if int(s) >= 400]:
                del responses[status]  # FastAPI's own 422 has a shape the service never answers
            for status in STATUSES[method, path]:
                responses[str(status)] = _error(status)
    readiness = {"$ref": REF.format(model=Readiness.__name__)}
    answers = document["paths"]["/readyz"]["get"]["responses"]
    answers["200"]["content"] = {"application/json": {"schema": readiness}}
    answers["503"] = {"description": "Not ready", "content": {"application/json": {"schema": readiness}}}
    for operations in document["paths"].values():
        for operation in operations.values():
            for answer in operation["responses"].values():
                answer.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _variant_name(event_type: str) -> str:
    return "".join(part.title() for part in event_type.split("_")) + "Event"  # "page_view": PageViewEvent


def _event_variant(event: dict[str, Any], event_type: str) -> dict[str, Any]:
    """`event`'s schema for one type: its own optional fields, required or not as FIELD_RULES says, and
    the other types' fields as null only (the service reads an explicit null as the field left out)."""
    properties = dict(event["properties"])
    properties["type"] = {"type": "string", "const": event_type, "title": "Type"}
    required = list(event["required"])
    for name, (types, needed) in FIELD_RULES.items():
        nullable = properties[name]
        value = next(branch for branch in nullable["anyOf"] if branch.get("type") != "null")
        if event_type not in types:
            only = " and ".join(sorted(types))
            properties[name] = {"type": "null", "description": f"Only for {only} events; null is as absent"}
        elif needed:
            properties[name] = {**value, "title": nullable.get("title", name)}
            required.append(name)
    return {
        "title": _variant_name(event_type),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _event_union(schemas: dict[str, Any]) -> None:
    """The event schema as a union discriminated by `type`, one variant per type.

    The model checks which optional fields belong to which type in one validator (app/schemas.py), which
    its generated schema cannot show: it would let a refund without an amount pass as valid. Stated as a
    union, the document says exactly which events the service takes."""
    event = schemas["Event"]
    variants = {event_type: _event_variant(event, event_type) for event_type in get_args(EventType)}
    for event_type, variant in variants.items():
        schemas[_variant_name(event_type)] = variant
    refs = {event_type: REF.format(model=_variant_name(event_type)) for event_type in variants}
    schemas["Event"] = {
        "title": "Event",
        "description": event.get("description", ""),
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }


def install(app: FastAPI) -> None:
    """Add the body models' schemas to the generated document's components, and the error answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            models: list[type[BaseModel]] = [*_BODY_MODELS, Readiness]
            _, definitions = models_json_schema([(model, "validation") for model in models], ref_template=REF)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in definitions.get("$defs", {}).items():
                components.setdefault(name, schema)
            _event_union(components)
            _document_statuses(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
