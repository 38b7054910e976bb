"""API keys with scopes: 401 without a known key, 403 without the route's scope, health always open."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.api.auth import new_key
from app.main import create_app
from tests.helpers import T, rfc3339
from tests.live import TEST_KEY_ENTRY, live_server, settings_for

EVENTS_KEY, EVENTS_ENTRY = new_key("shop-backend", ["events"])
SCORE_KEY, SCORE_ENTRY = new_key("crm", ["score"])
KEYS = [TEST_KEY_ENTRY, EVENTS_ENTRY, SCORE_ENTRY]

SCORE = ("POST", "/score", {"user_ids": ["u-1"]})
EVENTS = (
    "POST",
    "/events",
    {"events": [{"event_id": "a-1", "user_id": "u-1", "type": "page_view", "ts": rfc3339(T)}]},
)
FEATURES = ("GET", "/users/u-1/features", None)
KEYED = [SCORE, EVENTS, FEATURES, ("GET", "/model", None), ("GET", "/metrics", None)]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def call(http: httpx.Client, route: tuple[str, str, object], headers: dict[str, str]) -> httpx.Response:
    method, path, body = route
    return http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("fast_routes", [True, False])
def test_every_keyed_route_refuses_a_missing_or_unknown_key_in_the_error_shape(
    redis_url: str, fast_routes: bool
) -> None:
    forged = SCORE_KEY[: SCORE_KEY.index(".") + 1] + "x" * 43  # a known key id, the wrong secret
    with (
        live_server(redis_url, api_keys=KEYS, fast_routes=fast_routes) as server,
        server.client(headers={}) as http,
    ):
        for route in KEYED:
            for headers in ({}, bearer(forged), bearer("ck_nobody.secret"), {"authorization": SCORE_KEY}):
                answer = call(http, route, headers)
                assert answer.status_code == 401, (route, headers)
                body = answer.json()
                assert body["error"] == "unauthenticated" and body["message"], route
                assert answer.headers["www-authenticate"] == "Bearer"
            assert call(
                http, route, bearer(SCORE_KEY if route is not EVENTS else EVENTS_KEY)
            ).status_code in (
                200,
                403,  # /metrics needs the metrics scope
            )


@pytest.mark.parametrize("fast_routes", [True, False])
def test_a_key_without_the_routes_scope_is_forbidden(redis_url: str, fast_routes: bool) -> None:
    with live_server(redis_url, api_keys=KEYS, fast_routes=fast_routes) as server, server.client() as http:
        assert call(http, EVENTS, bearer(EVENTS_KEY)).status_code == 200
        assert call(http, SCORE, bearer(SCORE_KEY)).status_code == 200
        assert call(http, FEATURES, bearer(SCORE_KEY)).status_code == 200
        for route, key in [(SCORE, EVENTS_KEY), (FEATURES, EVENTS_KEY), (EVENTS, SCORE_KEY)]:
            answer = call(http, route, bearer(key))
            assert answer.status_code == 403, route
            assert answer.json()["error"] == "forbidden"
            assert "lacks the scope" in answer.json()["message"]
        assert call(http, ("GET", "/metrics", None), bearer(SCORE_KEY)).status_code == 403
        # An events-only key cannot inject and then read: the event above was applied once.
        features = call(http, FEATURES, bearer(SCORE_KEY)).json()
        assert features["features"]["page_view_count_7d"] == 1


def test_health_is_open_and_the_docs_model_and_metrics_open_only_by_setting(redis_url: str) -> None:
    operational = ["/docs", "/openapi.json", "/model", "/metrics"]
    with live_server(redis_url, api_keys=KEYS) as server, server.client(headers={}) as http:
        assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
        assert [http.get(path).status_code for path in operational] == [401] * 4
        assert http.get("/openapi.json", headers=bearer(EVENTS_KEY)).status_code == 200  # docs: any key
    public = frozenset({"docs", "model", "metrics"})
    with (
        live_server(redis_url, api_keys=KEYS, public_endpoints=public) as server,
        server.client(headers={}) as http,
    ):
        assert [http.get(path).status_code for path in operational] == [200] * 4
        assert http.post("/score", json=SCORE[2]).status_code == 401  # the rest stays keyed


def test_the_schema_documents_the_bearer_scheme(redis_url: str) -> None:
    with live_server(redis_url, api_keys=KEYS) as server, server.client() as http:
        document = http.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert document["paths"]["/score"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_keys_come_from_a_file_and_the_service_refuses_to_start_without_any(
    redis_url: str, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="no API keys configured"):
        create_app(settings_for(redis_url, api_keys=[]))
    keys_file = tmp_path / "api_keys.json"
    keys_file.write_text(json.dumps([SCORE_ENTRY.model_dump()]))
    with live_server(redis_url, api_keys=[], api_keys_file=keys_file) as server, server.client() as http:
        assert call(http, SCORE, bearer(SCORE_KEY)).status_code == 200
        assert call(http, SCORE, bearer(EVENTS_KEY)).status_code == 401
    with live_server(redis_url, api_keys=[], auth="off") as server, server.client(headers={}) as http:
        assert call(http, SCORE, {}).status_code == 200
