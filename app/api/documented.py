"""OpenAPI for routes that read their own body: the request model is documented, not re-validated."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.schemas import ErrorBody

REF = "#/components/schemas/{model}"
_BODY_MODELS: list[type[BaseModel]] = []

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON: the message names line and column"},
    401: {"model": ErrorBody, "description": "No API key, or one the service does not know"},
    403: {"model": ErrorBody, "description": "The API key lacks the route's scope"},
    413: {"model": ErrorBody, "description": "Body over the size limit"},
    422: {"model": ErrorBody, "description": "Invalid request: each problem names its field"},
    429: {"model": ErrorBody, "description": "Rate limited, or at capacity: retry after Retry-After seconds"},
    503: {
        "model": ErrorBody,
        "description": "Feature store unavailable or not durable in time, deadline missed, shutting down",
    },
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose handler parses `model` from the raw body itself."""
    _BODY_MODELS.append(model)
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install(app: FastAPI) -> None:
    """Add the body models' schemas to the generated document's components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            _, definitions = models_json_schema(
                [(model, "validation") for model in _BODY_MODELS], ref_template=REF
            )
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in definitions.get("$defs", {}).items():
                components.setdefault(name, schema)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
