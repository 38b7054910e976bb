"""Test data for the serving benchmark: simulated users' histories posted to our service, the same raw
feature values copied to the peers (Redis hashes for the naive service, inline bodies for Mosec), and
the request bodies every load generator cycles through.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

from app.training.simulate import SimulationConfig, simulate
from bench.peers.model import FEATURE_NAMES
from bench.procs import request

HISTORY_DAYS = 120  # longer than the 90-day windows, so every window is populated
POST_BATCH = 500
RETRIES = 5


def history(users: int, now: datetime) -> list[dict[str, Any]]:
    """Simulated events shifted so the last one lies a minute before now."""
    log = simulate(SimulationConfig(n_users=users, days=HISTORY_DAYS, seed=11)).events
    ts = pd.to_datetime(log["ts"], utc=True)
    shifted = ts + (now - timedelta(minutes=1) - ts.max().to_pydatetime())
    log = log.assign(ts=shifted.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    rows = log.astype(object).where(log.notna(), None).to_dict("records")
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def post_events(port: int, events: list[dict[str, Any]], batch: int = POST_BATCH) -> dict[str, int]:
    """POST /events in batches, four in flight, retrying a 503 (safe: the ids make it idempotent)."""
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    counts = {"accepted": 0, "duplicates": 0, "retried_503": 0}

    def post(chunk: list[dict[str, Any]]) -> None:
        for attempt in range(RETRIES):
            status, body = request("POST", port, "/events", {"events": chunk}, timeout=120)
            if status == 200:
                counts["accepted"] += int(body["accepted"])
                counts["duplicates"] += int(body["duplicates"])
                return
            if status != 503 or attempt == RETRIES - 1:
                raise RuntimeError(f"POST /events answered {status}: {str(body)[:300]}")
            counts["retried_503"] += 1
            time.sleep(0.2 * (attempt + 1))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, batches))
    return counts


def fetch_features(port: int, users: list[str]) -> dict[str, list[float]]:
    """The raw feature vector our store computes for each user, in the model's feature order."""

    def one(user: str) -> list[float]:
        status, body = request("GET", port, f"/users/{user}/features")
        if status != 200:
            raise RuntimeError(f"GET /users/{user}/features answered {status}")
        return [float(body["features"][name]) for name in FEATURE_NAMES]

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(users, pool.map(one, users), strict=True))


def store_hashes(redis_url: str, prefix: str, features: dict[str, list[float]]) -> None:
    """The naive service's layout: one hash per user, feature name -> value."""
    client = redis.Redis.from_url(redis_url)
    with client.pipeline(transaction=False) as pipe:
        for user, values in features.items():
            pipe.hset(f"{prefix}:{user}", mapping=dict(zip(FEATURE_NAMES, values, strict=True)))
        pipe.execute()
    client.close()


def write_lines(path: Path, items: list[Any]) -> Path:
    path.write_text("".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items))
    return path


def write_bodies(folder: Path, features: dict[str, list[float]]) -> dict[str, Path]:
    """Request bodies for every case; users in a seeded random order."""
    rng = random.Random(5)
    users = list(features)
    rng.shuffle(users)
    many = [rng.sample(users, min(256, len(users))) for _ in range(64)]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    small = [
        {"event_id": f"by-@N@-{k}", "user_id": users[k], "type": "page_view", "ts": now} for k in range(10)
    ]
    (folder / "users.txt").write_text("\n".join(users) + "\n")
    bodies = {
        "score1": [{"user_ids": [u], "explain": False} for u in users],
        "mosec1": [{"user_id": u, "features": features[u]} for u in users],
        "score256": [{"user_ids": m, "explain": False} for m in many],
        "score256x": [{"user_ids": m, "explain": True} for m in many],
        "events10": [{"events": small}],
    }
    paths = {name: write_lines(folder / f"{name}.jsonl", items) for name, items in bodies.items()}
    return {"users": folder / "users.txt", **paths}


def busy_events(user: str, count: int, now: datetime, tag: str, span_days: float) -> list[dict[str, Any]]:
    """`count` page views of one user with unique ids, spread over the last `span_days`."""
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    offsets = rng.uniform(60, span_days * 86_400, size=count)
    return [
        {
            "event_id": f"{tag}-{i}",
            "user_id": user,
            "type": "page_view",
            "ts": (now - timedelta(seconds=float(s))).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for i, s in enumerate(offsets)
    ]
