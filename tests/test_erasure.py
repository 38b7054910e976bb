"""DELETE /users/{id}: nothing of the user stays in Redis but a tombstone that refuses late and retried
events for the allowed lateness; admin scope only; each erasure is one audit line naming a pseudonym."""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from app.api.auth import new_key
from app.features.keys import TOMBSTONE_SUFFIX, user_tag
from app.features.pseudonym import Pseudonyms
from app.redis_server import free_port
from tests.helpers import T_S, T, before, event
from tests.live import TEST_KEY_ENTRY, LiveServer, live_server

LATENESS_S, SKEW_S = 30 * 86_400, 300
ALICE_ROWS = [
    event("alice", "session_start", before(days=20), "a-1"),
    event("alice", "purchase", before(days=10), "a-2", amount=42.5),
    event("alice", "review", before(days=2), "a-3", rating=1),
    event("alice", "page_view", before(), "a-4"),
]
BOB_ROWS = [event("bob", "purchase", before(days=3), "b-1", amount=9.0), event("bob", "page_view", T, "b-2")]
ADMIN_KEY, ADMIN_ENTRY = new_key("privacy-desk", ["admin"])
SCORE_KEY, SCORE_ENTRY = new_key("crm", ["score"])
EVENTS_KEY, EVENTS_ENTRY = new_key("shop", ["events"])


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Any:
    keys = [TEST_KEY_ENTRY, ADMIN_ENTRY, SCORE_ENTRY, EVENTS_ENTRY]
    with live_server(
        redis_url,
        allowed_lateness_s=LATENESS_S,
        max_future_skew_s=SKEW_S,
        api_keys=keys,
        audit_log=tmp_path / "audit" / "audit.jsonl",
    ) as live:
        yield live


def pseudonym(server: LiveServer, user_id: str) -> str:
    return Pseudonyms.load(server.settings.id_secret, server.settings.id_secret_file).of(user_id)


def whole_keyspace(redis_url: str) -> dict[str, bytes]:
    with redis.Redis.from_url(redis_url) as client:
        return {k.decode(): client.dump(k) or b"" for k in client.scan_iter(count=1000)}


def post(server: LiveServer, rows: list[dict[str, Any]]) -> dict[str, Any]:
    with server.client() as http:
        reply = http.post("/events", json={"events": rows})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_erasure_leaves_nothing_of_the_user_but_a_tombstone(server: LiveServer, redis_url: str) -> None:
    assert post(server, ALICE_ROWS + BOB_ROWS)["accepted"] == 6
    bob_before = {k: v for k, v in whole_keyspace(redis_url).items() if pseudonym(server, "bob") in k}
    with server.client() as http:
        unknown = http.get("/users/nobody/features").json()["features"]
        assert http.get("/users/alice/features").json()["known_user"] is True
        erased = http.delete("/users/alice")
        features = http.get("/users/alice/features").json()
        bob = http.get("/users/bob/features").json()

    assert erased.status_code == 200
    assert erased.json() == {"user_id": "alice", "erased": True, "keys_removed": 1}
    keyspace = whole_keyspace(redis_url)
    assert not [k for k in keyspace if "alice" in k]
    tag = pseudonym(server, "alice")
    tombstone_key = user_tag("test", tag) + TOMBSTONE_SUFFIX
    assert [k for k in keyspace if tag in k] == [tombstone_key]
    with redis.Redis.from_url(redis_url) as client:
        tombstone, ttl = client.get(tombstone_key), client.ttl(tombstone_key)
    # Only the time up to which events are refused (erasure time plus the future skew), no event data.
    assert tombstone == str(T_S + SKEW_S).encode()
    assert LATENESS_S < ttl <= LATENESS_S + SKEW_S + 1
    assert features["known_user"] is False and features["features"] == unknown
    # Bob is untouched, byte for byte.
    assert {k: v for k, v in keyspace.items() if pseudonym(server, "bob") in k} == bob_before
    assert bob["known_user"] is True and bob["features"]["lifetime_purchases"] == 1


def test_late_and_retried_events_are_rejected_as_erased_and_later_ones_kept(
    server: LiveServer, redis_url: str
) -> None:
    post(server, ALICE_ROWS)
    with server.client() as http:
        http.delete("/users/alice")
    late = event("alice", "page_view", before(days=1), "a-late")
    ahead = event("alice", "page_view", T + timedelta(seconds=SKEW_S), "a-ahead")  # sent before, clock ahead
    reply = post(server, [BOB_ROWS[0], ALICE_ROWS[1], late, BOB_ROWS[1], ahead])
    assert reply["accepted"] == 2 and reply["duplicates"] == 0
    assert reply["rejected"] == [
        {"index": 1, "event_id": "a-2", "reason": "erased"},
        {"index": 2, "event_id": "a-late", "reason": "erased"},
        {"index": 4, "event_id": "a-ahead", "reason": "erased"},
    ]
    tag = pseudonym(server, "alice")
    assert [k for k in whole_keyspace(redis_url) if tag in k] == [user_tag("test", tag) + TOMBSTONE_SUFFIX]

    # An hour on, alice is active again: what happens after the erasure is stored, what happened
    # before it still is not, even in one request.
    later = T + timedelta(hours=1)
    server.clock.set(later)
    new = event("alice", "page_view", later, "a-new")
    reply = post(server, [new, event("alice", "session_start", before(seconds=7_200), "a-old")])
    assert reply["accepted"] == 1 and [r["reason"] for r in reply["rejected"]] == ["erased"]
    with server.client() as http:
        features = http.get("/users/alice/features").json()
    assert features["known_user"] is True
    assert features["features"]["page_view_count_1d"] == 1 and features["features"]["lifetime_purchases"] == 0


def test_erasure_also_removes_a_string_of_an_earlier_record_layout(
    server: LiveServer, redis_url: str
) -> None:
    # Strings of an earlier layout are never read, but they are the user's data until they expire.
    post(server, ALICE_ROWS)
    tag = pseudonym(server, "alice")
    with redis.Redis.from_url(redis_url) as client:
        client.set(f"test:{{{tag}}}:ev:v1", b"\x00" * 14, ex=3_600)  # that layout's name and hash tag
    with server.client() as http:
        assert http.delete("/users/alice").json()["keys_removed"] == 2
    assert [k for k in whole_keyspace(redis_url) if tag in k] == [user_tag("test", tag) + TOMBSTONE_SUFFIX]


def test_erasing_again_or_erasing_a_stranger_answers_the_same_shape(server: LiveServer) -> None:
    post(server, ALICE_ROWS)
    with server.client() as http:
        first, second = http.delete("/users/alice"), http.delete("/users/alice")
        stranger = http.delete("/users/never-seen")
    assert first.json() == {"user_id": "alice", "erased": True, "keys_removed": 1}
    assert second.status_code == 200 and second.json() == {
        "user_id": "alice",
        "erased": True,
        "keys_removed": 0,
    }
    assert stranger.json() == {"user_id": "never-seen", "erased": True, "keys_removed": 0}
    # A stranger's tombstone also holds: a retried event cannot make them known.
    assert [r["reason"] for r in post(server, [event("never-seen", "page_view", T, "n-1")])["rejected"]] == [
        "erased"
    ]


def test_erasure_needs_the_admin_scope_and_reading_still_needs_score(server: LiveServer) -> None:
    post(server, ALICE_ROWS)
    with server.client(headers={}) as http:
        assert http.delete("/users/alice").status_code == 401
        for key in (SCORE_KEY, EVENTS_KEY):
            refused = http.delete("/users/alice", headers=bearer(key))
            assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert http.get("/users/alice/features", headers=bearer(ADMIN_KEY)).status_code == 403
        assert http.get("/users/alice/features", headers=bearer(SCORE_KEY)).json()["known_user"] is True
        assert http.delete("/users/alice", headers=bearer(ADMIN_KEY)).json()["keys_removed"] == 1


def test_each_erasure_writes_one_audit_line_naming_the_pseudonym(server: LiveServer) -> None:
    post(server, ALICE_ROWS)
    with server.client(headers={}) as http:
        http.delete("/users/alice", headers=bearer(ADMIN_KEY))
        http.delete("/users/alice", headers=bearer(ADMIN_KEY))
    path = server.settings.audit_log
    assert path is not None
    text = path.read_text()
    assert "alice" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["keys_removed"] for line in lines] == [1, 0]
    line = lines[0]
    assert set(line) == {"time", "key_id", "action", "target", "outcome", "keys_removed"}
    assert line["time"].endswith("Z") and datetime.fromisoformat(line["time"]) == T  # RFC 3339, UTC
    assert (line["key_id"], line["action"], line["outcome"]) == ("privacy-desk", "erase_user", "erased")
    assert line["target"] == pseudonym(server, "alice")


def test_an_erasure_redis_refused_is_audited_as_failed(tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    audit = tmp_path / "audit.jsonl"
    with live_server(dead_redis, audit_log=audit) as server, server.client() as http:
        assert http.delete("/users/alice").status_code == 503
    (line,) = [json.loads(text) for text in audit.read_text().splitlines()]
    assert (line["outcome"], line["key_id"], line["target"]) == (
        "failed",
        "tests",
        pseudonym(server, "alice"),
    )
    assert "error" in line and "alice" not in json.dumps(line)


def test_without_a_file_audit_lines_go_to_the_churn_audit_logger(
    redis_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger("churn.audit")
    logger.addHandler(caplog.handler)  # as logging configured for it would: then it is the one output
    monkeypatch.setattr(logger, "propagate", False)
    caplog.set_level(logging.INFO, logger="churn.audit")
    try:
        with live_server(redis_url) as server, server.client() as http:
            http.delete("/users/alice")
    finally:
        logger.removeHandler(caplog.handler)
    (record,) = [r for r in caplog.records if r.name == "churn.audit"]
    line = json.loads(record.getMessage())
    assert line["action"] == "erase_user" and line["target"] == pseudonym(server, "alice")


def test_unconfigured_the_churn_audit_logger_writes_lines_to_stderr() -> None:
    script = (
        "from datetime import UTC, datetime\n"
        "from app.audit import AuditLog\n"
        "AuditLog(None).record(datetime(2026, 3, 1, tzinfo=UTC), 'k', 'erase_user', 'p' * 32, 'erased')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stderr) == {
        "time": "2026-03-01T00:00:00.000Z",
        "key_id": "k",
        "action": "erase_user",
        "target": "p" * 32,
        "outcome": "erased",
    }
