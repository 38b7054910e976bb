"""Strict input, end to end through a real uvicorn and a real Redis: event times in RFC 3339 only, a key
given twice refused, malformed JSON a 400 at a line and column, and every error in the one shape."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from app.api import errors
from app.api.event_parsing import CHUNKED_ABOVE_BYTES
from app.api.score import ids_at_least
from app.api.strict_json import repeats_ruled_out, score_strings
from app.schemas import MAX_BATCH, TS_MESSAGE, ErrorBody, ScoreRequest
from tests.helpers import T_S, before, event
from tests.live import LiveServer, live_server

JSON = {"content-type": "application/json"}
TS = "2026-02-28T10:00:00Z"  # a day before the test clock


@pytest.fixture(params=[True, False], ids=["fast routes", "FastAPI routes"])
def server(request: pytest.FixtureRequest, redis_url: str) -> Iterator[LiveServer]:
    with live_server(redis_url, fast_routes=request.param) as live:
        yield live


def refused(reply: httpx.Response, status: int, code: str) -> list[dict[str, str]]:
    """The detail of an answer in the documented error shape, after checking status and code."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"error", "message", "detail"} and body["error"] == code, body
    return ErrorBody.model_validate(body).model_dump()["detail"]


def known(http: httpx.Client, user: str) -> bool:
    reply = http.get(f"/users/{user}/features")
    assert reply.status_code == 200
    return bool(reply.json()["known_user"])


def post(http: httpx.Client, path: str, raw: bytes) -> httpx.Response:
    return http.post(path, content=raw, headers=JSON)


def events_body(*events: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps({"events": list(events)}, indent=indent).encode()


def many_events(n: int, user: str) -> list[dict[str, Any]]:
    return [event(user, "page_view", before(days=1 + i % 20), f"{user}-{i}") for i in range(n)]


# --- event times ---------------------------------------------------------------------------------------

REFUSED_TIMES = [
    str(T_S - 86_400),  # Unix seconds, milliseconds and fractions as text, which pydantic alone reads
    str((T_S - 86_400) * 1000),
    f"{T_S - 86_400}.5",
    "2026-02-28T10:00Z",  # no seconds
    "2026-02-28 10:00:00Z",
    "2026-02-28T10:00:00+0100",
]


@pytest.mark.parametrize("ts", REFUSED_TIMES)
def test_times_that_are_not_rfc3339_with_seconds_are_422_and_store_nothing(redis_url: str, ts: str) -> None:
    good = event("t-user", "session_start", before(days=2), "t-1")
    bad = event("t-user", "page_view", before(days=1), "t-2") | {"ts": ts}
    with live_server(redis_url) as live, live.client() as http:
        reply = post(http, "/events", events_body(good, bad))
        assert refused(reply, 422, "invalid_request") == [{"field": "events[1].ts", "message": TS_MESSAGE}]
        assert not known(http, "t-user")


def test_rfc3339_times_with_a_fraction_an_offset_or_lower_case_are_stored(redis_url: str) -> None:
    times = ["2026-02-28T10:00:00Z", "2026-02-28T10:00:00.123+02:00", "2026-02-28t10:00:00z"]
    sent = [event("r-user", "page_view", before(days=2), f"r-{i}") | {"ts": ts} for i, ts in enumerate(times)]
    with live_server(redis_url) as live, live.client() as http:
        assert post(http, "/events", events_body(*sent)).json() == {
            "accepted": 3,
            "duplicates": 0,
            "rejected": [],
        }
        assert known(http, "r-user")


# --- keys given twice ------------------------------------------------------------------------------------

ONE = '{"event_id": "d-1", "user_id": "d-user", "ts": "' + TS + '", '
REPEATED_EVENT_KEYS = [
    # (case, body, the field named): pydantic alone keeps the last value of a repeated key
    (
        "type twice",
        '{"events": [' + ONE + '"type": "session_start", "type": "page_view"}]}',
        "events[0].type",
    ),
    (
        "the last value fails the schema",
        '{"events": [' + ONE + '"type": "purchase", "amount": 5, "type": "page_view"}]}',
        "events[0].type",
    ),
    (
        "written with an escape",
        '{"events": [' + ONE + '"type": "session_start", "typ\\u0065": "page_view"}]}',
        "events[0].type",
    ),
    (
        "the envelope's key",
        '{"events": [' + ONE + '"type": "page_view"}], "events": [' + ONE + '"type": "page_view"}]}',
        "events",
    ),
]


@pytest.mark.parametrize(
    ("case", "raw", "field"), REPEATED_EVENT_KEYS, ids=[c[0] for c in REPEATED_EVENT_KEYS]
)
def test_a_key_given_twice_in_events_is_422_naming_it_and_stores_nothing(
    server: LiveServer, case: str, raw: str, field: str
) -> None:
    with server.client() as http:
        detail = refused(post(http, "/events", raw.encode()), 422, "invalid_request")
        assert [d["field"] for d in detail] == [field], case
        assert "given more than once" in detail[0]["message"]
        assert not known(http, "d-user")


@pytest.mark.parametrize("also_invalid", [False, True], ids=["otherwise valid", "and a schema error"])
def test_a_key_given_twice_in_a_large_body_is_found_on_the_chunked_path(
    server: LiveServer, also_invalid: bool
) -> None:
    events = many_events(400, "big-user")
    if also_invalid:
        events[5] = events[5] | {"amount": 3.0}
    target = b'"event_id": "big-user-317"'
    raw = events_body(*events).replace(target, b'"ts": "' + TS.encode() + b'", ' + target)
    assert len(raw) > CHUNKED_ABOVE_BYTES
    with server.client() as http:
        detail = refused(post(http, "/events", raw), 422, "invalid_request")
        assert [d["field"] for d in detail] == ["events[317].ts"]
        assert not known(http, "big-user")


REPEATED_SCORE_KEYS = [
    ("user_ids twice", '{"user_ids": ["a"], "user_ids": ["b"]}', "user_ids"),
    ("explain twice", '{"user_ids": ["a"], "explain": true, "explain": false}', "explain"),
    ("and a schema error", '{"user_ids": ["a"], "user_ids": [5]}', "user_ids"),
]


@pytest.mark.parametrize(
    ("case", "raw", "field"), REPEATED_SCORE_KEYS, ids=[c[0] for c in REPEATED_SCORE_KEYS]
)
def test_a_key_given_twice_in_a_score_request_is_422_naming_it(
    server: LiveServer, case: str, raw: str, field: str
) -> None:
    with server.client() as http:
        detail = refused(post(http, "/score", raw.encode()), 422, "invalid_request")
    assert [d["field"] for d in detail] == [field], case


# Ids equal to key names, every optional field, explicit nulls, indentation, and (in the second) escapes:
# what must not be mistaken for a repeated key, by the quick count or by the full parse.
LOOK_REPETITIVE = [
    [
        event("type", "purchase", before(days=3), "events", amount=1.5, items=2),
        event("ts", "review", before(days=2), "user_id", rating=4, amount=None),
        event("amount", "page_view", before(days=1), "type") | {"items": None},
    ],
    [
        event('say "hi"', "review", before(days=2), "a\\/b", rating=4),
        event("type", "page_view", before(days=1), "back\\slash"),
    ],
]


@pytest.mark.parametrize("odd", LOOK_REPETITIVE, ids=["no escapes", "escapes"])
@pytest.mark.parametrize("n", [3, 400], ids=["small", "chunked"])
def test_events_that_only_look_repetitive_are_stored(server: LiveServer, odd: list[Any], n: int) -> None:
    raw = events_body(*odd, *many_events(n - len(odd), "filler"), indent=2)
    assert (len(raw) > CHUNKED_ABOVE_BYTES) == (n > 3)
    with server.client() as http:
        assert post(http, "/events", raw).json() == {"accepted": n, "duplicates": 0, "rejected": []}
        assert all(known(http, e["user_id"]) for e in odd)


@pytest.mark.parametrize(
    "raw",
    [b'{"user_ids": ["user_ids", "explain"], "explain": false}', b'{"user_ids": ["say \\"hi\\"", "a\\/b"]}'],
    ids=["no escapes", "escapes"],
)
def test_score_requests_that_only_look_repetitive_are_scored(server: LiveServer, raw: bytes) -> None:
    with server.client() as http:
        reply = post(http, "/score", raw)
    assert [r["user_id"] for r in reply.json()["results"]] == json.loads(raw)["user_ids"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_ids": ["a"]}',
        b'{ "explain" : true, "user_ids" : ["user_ids", "explain", "b"] }',
        b'{\n  "user_ids": [\n    "x"\n  ],\n  "explain": false\n}',
    ],
)
def test_score_requests_without_escapes_are_cleared_by_the_quote_count_alone(raw: bytes) -> None:
    # The slower parse that finds a repeated key is needed only when this does not hold.
    assert repeats_ruled_out(raw, score_strings(ScoreRequest.model_validate_json(raw)))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_ids": ["a"]}',
        b'{ "explain" : true, "user_ids" : ["user_ids", "explain", "b"] }',
        b'{"user_ids": ["say \\"hi\\"", "a\\/b", "c"]}',
        json.dumps({"user_ids": [f"u{i}" for i in range(256)], "explain": False}).encode(),
    ],
)
def test_the_ids_counted_before_parsing_never_exceed_the_ids_given(raw: bytes) -> None:
    # Under overload a request is refused on this count, unparsed: it must never refuse a request that fits.
    given = len(ScoreRequest.model_validate_json(raw).user_ids)
    assert 1 <= ids_at_least(raw) <= given
    if b"\\" not in raw:
        assert ids_at_least(raw) >= given - 1  # and it is close: the key "explain" may be missing


def test_a_body_of_too_many_ids_is_still_parsed_and_told_so(server: LiveServer) -> None:
    raw = json.dumps({"user_ids": [f"u{i}" for i in range(MAX_BATCH + 1)]}).encode()
    with server.client() as http:
        detail = refused(post(http, "/score", raw), 422, "invalid_request")
    assert [d["field"] for d in detail] == ["user_ids"]


# --- malformed JSON --------------------------------------------------------------------------------------

MALFORMED = [
    ("syntax error on line 3", b'{\n  "events": [\n    {"event_id": "m-1",, }\n  ]\n}', "line 3 column"),
    ("invalid UTF-8", b'{"events": [{"event_id": "m-\xff", "user_id": "m-user"}]}', "line 1 column"),
    ("nested too deep", b'{"events": ' + b"[" * 300 + b"]" * 300 + b"}", "recursion limit"),
    ("empty", b"", "line 1 column"),
    ("cut short, large", events_body(*many_events(400, "m-user"))[:-10], "line 1 column"),
]


@pytest.mark.parametrize("path", ["/events", "/score"])
@pytest.mark.parametrize(("case", "raw", "where"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_json_is_400_saying_where(
    server: LiveServer, path: str, case: str, raw: bytes, where: str
) -> None:
    with server.client() as http:
        detail = refused(post(http, path, raw), 400, "malformed_json")
        assert [d["field"] for d in detail] == ["body"] and where in detail[0]["message"], case
        assert not known(http, "m-user")


class Note(BaseModel):
    text: str


def notes_app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.post("/notes")
    async def add(note: Note) -> Note:
        return note

    return app


async def post_note(app: FastAPI, raw: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notes") as client:
        return await client.post("/notes", content=raw, headers=JSON)


def test_bodies_fastapi_parses_itself_answer_malformed_json_at_a_line_and_column() -> None:
    # No route of the service has FastAPI read its body today; one that does answers alike.
    app = notes_app()
    detail = refused(asyncio.run(post_note(app, b'{\n  "text": }')), 400, "malformed_json")
    assert re.search(r"line 2 column 11$", detail[0]["message"]), detail
    refused(asyncio.run(post_note(app, b'{"text": "\xff"}')), 400, "bad_request")


# --- every error in one shape ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow"),
    [
        ("GET", "/nope", 404, "not_found", None),
        ("GET", "/score", 405, "method_not_allowed", "POST"),
        ("PUT", "/events", 405, "method_not_allowed", "POST"),
        ("POST", "/users/u-1/features", 405, "method_not_allowed", "GET"),
    ],
)
def test_unknown_paths_and_methods_answer_in_the_error_shape(
    server: LiveServer, method: str, path: str, status: int, code: str, allow: str | None
) -> None:
    with server.client() as http:
        reply = http.request(method, path)
    refused(reply, status, code)
    assert reply.headers.get("allow") == allow
