"""The service on CUDA under the 256-user /score load, for `python -m bench.gpu_check`.

Redis, the service (CHURN_DEVICE=cuda) and the load generator are started here as in `make bench-serve`;
bench.loadgen drives the load (closed loop, 32 connections), since wrk may be missing on a GPU host.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import drivers, prefill, systems
from bench.procs import Procs, request


def service_under_load(seconds: float, users: int = 400, device: str = "cuda") -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="churn-gpu-"))
    procs = Procs(folder)
    try:
        _, redis_port = systems.start_redis(procs)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        with systems.ours(procs, redis_url, fast_routes=True, workers=1, device=device) as run:
            events = prefill.history(users, datetime.now(UTC))
            prefill.post_events(run.port, events)
            features = prefill.fetch_features(run.port, sorted({e["user_id"] for e in events}))
            body = prefill.write_bodies(folder, features)["score256"]
            drivers.loadgen(run.port, "/score", body, 5, connections=32)  # warm-up
            result = drivers.loadgen(run.port, "/score", body, seconds, connections=32)
            _, model = request("GET", run.port, "/model")
    finally:
        procs.stop_all()
    return {
        "device": device,
        "served_on": model["device"],
        "seconds": seconds,
        "users_per_s": result["ok_rate"] * 256,
        "latency_ms": result["latency_ok_ms"],
        "status": result["status"],
    }
