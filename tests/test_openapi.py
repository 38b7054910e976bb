"""The published contract against a live server: /openapi.json documents what the service answers, and
/docs and /redoc load everything from the service itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, get_args

import pytest

from app.features.events import EventType
from app.schemas import FIELD_RULES
from tests.live import LiveServer, live_server

ERROR_REF = "#/components/schemas/ErrorBody"
KEYED = {"401", "403", "429"}


@pytest.fixture
def server(redis_url: str) -> Iterator[LiveServer]:
    with live_server(redis_url) as live:
        yield live


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from [value] if key == "$ref" else refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_every_error_status_is_documented_with_the_error_body(server: LiveServer) -> None:
    with server.client() as http:
        document = http.get("/openapi.json").json()
    statuses = {(method, path): set(op["responses"]) for method, path, op in operations(document)}
    assert statuses[("post", "/score")] == statuses[("post", "/events")] == {
        "200", "400", "401", "403", "413", "422", "429", "503"
    }  # fmt: skip
    for route in (("get", "/users/{user_id}/features"), ("delete", "/users/{user_id}")):
        assert statuses[route] == {"200", "422", "503"} | KEYED  # an unknown user is no 404
    assert statuses[("get", "/model")] == statuses[("get", "/metrics")] == {"200"} | KEYED
    for route in (("post", "/admin/model"), ("post", "/admin/model/shadow")):
        # 404: no such version in the store; 409: a bundle that fails a check
        assert statuses[route] == {"200", "400", "404", "409", "413", "422"} | KEYED
    assert statuses[("delete", "/admin/model/shadow")] == statuses[("get", "/model/drift")] == {"200"} | KEYED
    assert statuses[("get", "/healthz")] == {"200"}
    assert statuses[("get", "/readyz")] == {"200", "503"}
    for method, path, operation in operations(document):
        assert ("security" in operation) == (set(operation["responses"]) >= KEYED), (method, path)
        for status, answer in operation["responses"].items():
            if int(status) >= 400 and path != "/readyz":
                assert answer["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}
    for method, path, operation in operations(document):
        for status, answer in operation["responses"].items():
            expected = {"X-Request-ID"} | {"401": {"WWW-Authenticate"}, "429": {"Retry-After"}}.get(
                status, set()
            )
            if status == "503" and path != "/readyz":
                expected.add("Retry-After")
            assert set(answer["headers"]) == expected, (method, path, status)
    schemas = document["components"]["schemas"]
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs(document))
    assert set(schemas["ErrorBody"]["properties"]) == {"error", "message", "detail"}


def test_metrics_are_documented_and_answered_as_text(server: LiveServer) -> None:
    with server.client() as http:
        document = http.get("/openapi.json").json()
        answer = http.get("/metrics")
    assert list(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert answer.headers["content-type"].startswith("text/plain")


def example_request(path: str, operation: dict[str, Any]) -> tuple[str, Any]:
    """The URL and JSON body "Try it out" starts from: every parameter's and the body's first example."""
    for parameter in operation.get("parameters", []):
        value = next(iter(parameter["examples"].values()))["value"]
        path = path.replace(f"{{{parameter['name']}}}", value)
    body = operation.get("requestBody")
    return path, body["content"]["application/json"]["example"] if body else None


def test_every_operation_answers_its_documented_example_as_it_is(server: LiveServer) -> None:
    with server.client() as http:
        document = http.get("/openapi.json").json()
        for method, path, operation in operations(document):
            url, body = example_request(path, operation)
            for _ in range(2):  # as the page would send it, twice: erasing and ingesting again are fine
                answer = http.request(method, url, json=body)
                assert answer.status_code == 200, (method, url, answer.text)
    bodies = {path: op["requestBody"] for _, path, op in operations(document) if "requestBody" in op}
    examples = {path: body["content"]["application/json"]["example"] for path, body in bodies.items()}
    assert examples["/score"] == {"user_ids": ["u-42"], "explain": True}
    assert len(examples["/events"]["events"]) == 1
    assert (
        example_request("/users/{user_id}", document["paths"]["/users/{user_id}"]["delete"])[0]
        == "/users/u-42"
    )


def test_events_are_documented_as_a_union_discriminated_by_type(server: LiveServer) -> None:
    with server.client() as http:
        schemas = http.get("/openapi.json").json()["components"]["schemas"]
    union = schemas["Event"]
    mapping = union["discriminator"]["mapping"]
    assert union["discriminator"]["propertyName"] == "type" and set(mapping) == set(get_args(EventType))
    assert [ref["$ref"] for ref in union["oneOf"]] == list(mapping.values())
    for kind, ref in mapping.items():
        variant = schemas[ref.removeprefix("#/components/schemas/")]
        assert variant["properties"]["type"]["const"] == kind and variant["additionalProperties"] is False
        for name, (types, needed) in FIELD_RULES.items():
            assert (name in variant["required"]) == (kind in types and needed), (kind, name)
            if kind not in types:  # the service reads an explicit null as the field left out
                assert variant["properties"][name]["type"] == "null", (kind, name)
    assert "amount" in schemas["RefundEvent"]["required"] and "rating" in schemas["ReviewEvent"]["required"]


ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")
TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_their_assets_from_the_service(server: LiveServer, page: str) -> None:
    with server.client() as http:
        html = http.get(page).text
        assets = ASSET.findall(html)
        assert assets and all(url.startswith("/") and not url.startswith("//") for url in assets)
        assert "http://" not in html and "https://" not in html
        for url in assets:
            answer = http.get(url)
            assert answer.status_code == 200, url
            assert TYPES[url[url.rindex(".") :]] in answer.headers["content-type"], url
    kinds = {url[url.rindex(".") :] for url in assets}
    assert ".js" in kinds and (page == "/redoc" or ".css" in kinds)


def test_the_docs_assets_are_behind_the_docs_gate(redis_url: str) -> None:
    with live_server(redis_url) as server, server.client(headers={}) as http:
        assert http.get("/docs/assets/swagger-ui-bundle.js").status_code == 401
        assert http.get("/docs/assets/redoc.standalone.js").json()["error"] == "unauthenticated"
    with (
        live_server(redis_url, public_endpoints=frozenset({"docs"})) as server,
        server.client(headers={}) as http,
    ):
        assert http.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
