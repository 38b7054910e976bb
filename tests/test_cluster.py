"""The feature store and the service on a real Redis Cluster (three primaries, each with a replica):
batch reads stay a handful of commands, writes are idempotent and atomic per user, erasure leaves only
the tombstone, lost scripts are loaded again, and a failed primary costs seconds, never a 500.

The parity test (tests/test_parity.py) runs on the cluster too."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from app.bulk.commands import run_backfill
from app.bulk.readers import open_event_file
from app.features import offline, spec
from app.features.keys import hash_tag, user_tag
from app.features.online import OnlineFeatureStore
from app.features.pseudonym import Pseudonyms
from app.redis_server import LocalCluster
from app.schemas import Event
from app.training.simulate import SimulationConfig, simulate
from tests.conftest import Backend
from tests.helpers import T, before, event
from tests.live import LiveServer, live_server, settings_for
from tests.test_online_store import PSEUDONYMS

R = TypeVar("R")
DAY = 86_400


def run_on(backend: Backend, work: Callable[[OnlineFeatureStore], Awaitable[R]]) -> R:
    async def main() -> R:
        client = RedisCluster.from_url(backend.url) if backend.cluster else AsyncRedis.from_url(backend.url)
        store = OnlineFeatureStore(client, "t", 400 * DAY, 0, 400, pseudonyms=PSEUDONYMS)
        try:
            return await work(store)
        finally:
            await store.aclose()
            await client.aclose()

    return asyncio.run(main())


def history(users: int, per_user: int = 6) -> list[Event]:
    kinds = ["session_start", "page_view", "add_to_cart", "purchase", "review", "support_contact"]
    rows = []
    for u in range(users):
        for k in range(per_user):
            kind = kinds[(u + k) % len(kinds)]
            fields: dict[str, Any] = {"amount": 10.0 + u % 7} if kind == "purchase" else {}
            fields |= {"rating": 1 + (u + k) % 5} if kind == "review" else {}
            rows.append(event(f"user-{u}", kind, before(days=(u * 7 + k * 13) % 80), f"e-{u}-{k}", **fields))
    return [Event.model_validate(r) for r in rows]


def primaries(cluster: LocalCluster) -> list[redis.Redis]:
    return [redis.Redis(port=node.port) for node in cluster.nodes[: cluster.primaries]]


def commands(cluster: LocalCluster, name: str) -> int:
    """Calls of `name` on every primary so far (Redis's commandstats)."""
    total = 0
    for client in primaries(cluster):
        with client:
            total += int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))
    return total


def reset_stats(cluster: LocalCluster) -> None:
    for client in primaries(cluster):
        with client:
            client.config_resetstat()


def test_a_batch_read_on_the_cluster_equals_one_redis_in_a_command_per_hash_tag(
    redis_url: str, cluster_url: str, redis_cluster: LocalCluster
) -> None:
    events, users = history(300), [f"user-{u}" for u in range(300)] + ["never-seen"]
    single, cluster = Backend(redis_url, cluster=False), Backend(cluster_url, cluster=True)
    for backend in (single, cluster):
        result = run_on(backend, lambda store: store.apply(events, T))
        assert (result.accepted, result.duplicates, result.rejected) == (len(events), 0, [])
    reset_stats(redis_cluster)
    on_cluster = run_on(cluster, lambda store: store.read(users, T))
    on_one = run_on(single, lambda store: store.read(users, T))
    np.testing.assert_array_equal(on_cluster[0], on_one[0])
    assert on_cluster[1].tolist() == on_one[1].tolist() == [True] * 300 + [False]
    tags = {hash_tag(OnlineFeatureStore(None, "t", 0, 0, 1, pseudonyms=PSEUDONYMS).key(u)) for u in users}  # type: ignore[arg-type]
    assert commands(redis_cluster, "mget") == len(tags)


def test_a_replay_on_the_cluster_is_all_duplicates_and_changes_no_byte(cluster_url: str) -> None:
    cluster = Backend(cluster_url, cluster=True)
    events = history(50)
    run_on(cluster, lambda store: store.apply(events, T))
    with cluster.client() as client:
        before_replay = {k: client.get(k) for k in client.scan_iter(match="t:*")}
    replay = run_on(cluster, lambda store: store.apply(events, T))
    assert (replay.accepted, replay.duplicates, replay.rejected) == (0, len(events), [])
    with cluster.client() as client:
        assert {k: client.get(k) for k in client.scan_iter(match="t:*")} == before_replay


def test_on_the_cluster_an_event_id_sent_again_is_a_duplicate_or_a_conflict(cluster_url: str) -> None:
    cluster = Backend(cluster_url, cluster=True)
    purchases = [event(f"user-{u}", "purchase", before(days=2), "p-1", amount=100.0) for u in range(40)]
    first = run_on(cluster, lambda store: store.apply([Event.model_validate(r) for r in purchases], T))
    assert (first.accepted, first.duplicates, first.rejected) == (40, 0, [])
    resent = [r | {"ts": before(days=1).isoformat().replace("+00:00", "Z")} if i % 2 else r
              for i, r in enumerate(purchases)]  # fmt: skip
    again = run_on(cluster, lambda store: store.apply([Event.model_validate(r) for r in resent], T))
    assert (again.accepted, again.duplicates) == (0, 20)
    assert {r.reason for r in again.rejected} == {"conflict"} and len(again.rejected) == 20
    features, known = run_on(cluster, lambda store: store.read([f"user-{u}" for u in range(40)], T))
    lifetime = features[:, spec.FEATURE_INDEX["lifetime_spend"]]
    assert known.all() and lifetime.tolist() == [100.0] * 40  # counted once, whatever was resent


def test_a_backfill_on_the_cluster_stores_what_it_stores_on_one_redis(
    redis_url: str, cluster_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    log = simulate(SimulationConfig(n_users=60, days=120, seed=9)).events
    offline.write_event_log(log, path)
    now = pd.to_datetime(log["ts"], utc=True).max().to_pydatetime() + timedelta(minutes=1)
    contents = []
    for backend in (Backend(redis_url, cluster=False), Backend(cluster_url, cluster=True)):
        settings = settings_for(backend.url, **backend.settings)
        summary = asyncio.run(run_backfill(settings, open_event_file(path), 500, now))
        assert summary.accepted > 0 and summary.rejected_rows == 0
        with backend.client() as client:
            keys = sorted(client.scan_iter(match="test:*"))
            contents.append({key: client.get(key) for key in keys})
    assert contents[0] == contents[1] and len(contents[0]) == log["user_id"].nunique()


def test_scripts_lost_by_every_primary_are_loaded_again(
    cluster_url: str, redis_cluster: LocalCluster
) -> None:
    cluster = Backend(cluster_url, cluster=True)
    run_on(cluster, lambda store: store.apply(history(20), T))
    for client in primaries(redis_cluster):
        with client:
            client.script_flush()
    more = [Event.model_validate(event(f"user-{u}", "page_view", T, f"late-{u}")) for u in range(20)]
    result = run_on(cluster, lambda store: store.apply(more, T))
    assert (result.accepted, result.duplicates) == (20, 0)


def test_the_service_scores_and_erases_on_the_cluster(cluster_url: str) -> None:
    cluster = Backend(cluster_url, cluster=True)
    rows = [e.model_dump(mode="json", exclude_none=True) for e in history(150)]
    with live_server(cluster.url, **cluster.settings) as server, server.client() as http:
        assert http.post("/events", json={"events": rows}).json()["accepted"] == len(rows)
        users = [f"user-{u}" for u in range(150)]
        scored = http.post("/score", json={"user_ids": users})
        assert scored.status_code == 200, scored.text
        assert [r["known_user"] for r in scored.json()["results"]] == [True] * 150
        assert http.delete("/users/user-7").json()["keys_removed"] == 1
        late = http.post("/events", json={"events": [event("user-7", "page_view", T, "after-erasure")]})
        assert late.json()["rejected"] == [{"index": 0, "event_id": "after-erasure", "reason": "erased"}]
    pseudonym = Pseudonyms.load(server.settings.id_secret, server.settings.id_secret_file).of("user-7")
    with cluster.client() as client:  # SCAN over every primary
        left = [k.decode() for k in client.scan_iter(match="*") if pseudonym in k.decode()]
    assert len(left) == 1 and left[0].endswith(":erased"), left


@pytest.fixture(scope="module")
def doomed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A cluster of its own: the test below kills one of its primaries."""
    cluster = LocalCluster(Path(tmp_path_factory.mktemp("doomed")), node_timeout_ms=1_000)
    cluster.start()
    yield cluster
    cluster.stop()


def test_a_node_failing_mid_write_answers_what_was_applied_and_a_retry_counts_once(
    doomed_cluster: LocalCluster,
) -> None:
    backend = Backend(doomed_cluster.url, cluster=True)
    rows = [e.model_dump(mode="json", exclude_none=True) for e in history(150, per_user=2)]
    paused = doomed_cluster.nodes[2]  # a primary; resumed well within the node timeout (no failover)
    with live_server(backend.url, **backend.settings) as server, server.client() as http:
        assert http.post("/events", json={"events": rows[:2]}).status_code == 200  # connections made
        paused.pause()
        try:
            during = http.post("/events", json={"events": rows})
        finally:
            paused.resume()
        retried = http.post("/events", json={"events": rows})
    assert during.status_code == 503, during.text
    body = during.json()
    assert body["error"] == "partial_write" and "retrying the whole request is safe" in body["message"]
    applied = int(body["message"].split(" of ")[0])
    assert 0 < applied < len(rows)
    answer = retried.json()
    assert retried.status_code == 200 and answer["rejected"] == []
    # Everything written once: what the failed attempt applied comes back as duplicates.
    assert answer["duplicates"] >= applied + 2 and answer["accepted"] + answer["duplicates"] == len(rows)


def test_reads_and_writes_follow_a_bucket_moving_to_another_primary(doomed_cluster: LocalCluster) -> None:
    backend = Backend(doomed_cluster.url, cluster=True)
    users = [f"mover-{u}" for u in range(120)]  # not the other tests' users: this cluster lives on
    rows = [
        e.model_dump(mode="json", exclude_none=True) | {"user_id": e.user_id.replace("user-", "mover-")}
        for e in history(120, per_user=2)
    ]
    with live_server(backend.url, **backend.settings) as server, server.client() as http:
        assert http.post("/events", json={"events": rows}).json()["accepted"] == len(rows)
        pseudonyms = Pseudonyms.load(server.settings.id_secret, server.settings.id_secret_file)
        slot = key_slot(user_tag("test", pseudonyms.of(users[0])).encode())
        nodes = {n.port: redis.Redis(port=n.port, decode_responses=True) for n in doomed_cluster.nodes}
        ids = {port: c.execute_command("CLUSTER MYID") for port, c in nodes.items()}
        owner = next(p for p, c in nodes.items() if c.execute_command("CLUSTER COUNTKEYSINSLOT", slot)
                     and c.info("replication")["role"] == "master")  # fmt: skip
        target = next(p for p, c in nodes.items() if p != owner and c.info("replication")["role"] == "master")
        moving = nodes[owner].execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        assert len(moving) >= 2
        nodes[target].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[owner])
        nodes[owner].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
        half = moving[: len(moving) // 2]
        nodes[owner].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *half)
        # Mid-migration: the moved keys answer ASK from their old primary.
        during = http.post("/score", json={"user_ids": users})
        nodes[owner].execute_command(
            "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *moving[len(half) :]
        )
        for client in nodes.values():
            if client.info("replication")["role"] == "master":
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])
        # Done: the old primary answers MOVED; the client's map of slots is stale until it follows it.
        after = http.post("/score", json={"user_ids": users})
        more = [event(u, "page_view", T, f"after-move-{u}") for u in users]
        written = http.post("/events", json={"events": more})
        again = http.post("/score", json={"user_ids": users})
        for client in nodes.values():
            client.close()
    for answer in (during, after, again):
        assert answer.status_code == 200, answer.text
        assert all(r["known_user"] for r in answer.json()["results"])
    assert written.status_code == 200 and written.json()["accepted"] == len(users)


def test_a_killed_primary_with_a_replica_costs_seconds_and_never_a_500(doomed_cluster: LocalCluster) -> None:
    backend = Backend(doomed_cluster.url, cluster=True)
    rows = [e.model_dump(mode="json", exclude_none=True) for e in history(300, per_user=2)]
    users = [f"user-{u}" for u in range(300)]
    outcomes: list[tuple[float, int]] = []
    stop = threading.Event()

    def load(server: LiveServer) -> None:
        with server.client() as http:
            n = 0
            while not stop.is_set():
                n += 1
                batch = users[(n * 16) % 300 : (n * 16) % 300 + 16]
                try:
                    status = http.post("/score", json={"user_ids": batch}).status_code
                except httpx.HTTPError:
                    status = 0
                outcomes.append((time.monotonic(), status))
                time.sleep(0.01)

    with live_server(backend.url, **backend.settings) as server, server.client() as http:
        assert http.post("/events", json={"events": rows}).status_code == 200
        worker = threading.Thread(target=load, args=(server,))
        worker.start()
        time.sleep(1.0)
        killed_at = time.monotonic()
        victim = doomed_cluster.nodes[1]  # a primary, not the node the URL names
        assert victim.process is not None
        victim.process.kill()
        deadline = killed_at + 30
        while time.monotonic() < deadline:
            time.sleep(0.2)
            recent = [s for t, s in outcomes if t > time.monotonic() - 1.0]
            if time.monotonic() - killed_at > 2 and recent and all(s == 200 for s in recent):
                break
        time.sleep(1.0)
        stop.set()
        worker.join(10)
        # After the failover every user answers again, its data intact on the promoted replica.
        after = http.post("/score", json={"user_ids": users})
    statuses = Counter(s for _, s in outcomes)
    failed = [t for t, s in outcomes if s != 200]
    outage = (max(failed) - killed_at) if failed else 0.0
    print(f"\nprimary killed: {dict(statuses)} answers, failing for {outage:.1f} s after the kill")
    assert set(statuses) <= {200, 503}, statuses  # never a 500, never a hang
    assert after.status_code == 200 and all(r["known_user"] for r in after.json()["results"])
    assert outage < 10.0, outage
    assert [t for t, s in outcomes if s == 200 and t > killed_at + outage], "no answers after the failover"
