"""How each system of the serving benchmark is started: Redis on the client core, every server under
test on the server core, each with the same uvicorn flags where it runs on uvicorn.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from app.redis_server import free_port, ping, redis_server_binary
from bench.procs import CLIENT_CORE, PYTHON, SERVER_CORE, Proc, Procs, wait_ready

OUR_PREFIX = "bench"
BENCH_ID_SECRET = "bench-only-id-secret-of-at-least-32-bytes"  # the store's keys are pseudonyms under it
NAIVE_PREFIX = "naive"
# Prefill posts 120 days of history; the service's default (7 days) would reject most of it as too late.
PREFILL_LATENESS_S = 200 * 86_400


@dataclass(frozen=True)
class Running:
    name: str
    proc: Proc
    port: int
    ready_s: float


def start_redis(procs: Procs) -> tuple[Proc, int]:
    port = free_port()
    command = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
        "no", "--dir", str(procs.log_dir),
    ]  # fmt: skip
    proc = procs.start("redis-server", command, CLIENT_CORE)
    wait_redis(proc, port)
    return proc, port


def wait_redis(proc: Proc, port: int) -> None:
    deadline = time.monotonic() + 10
    while not ping(f"redis://127.0.0.1:{port}/0", 0.2):
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start:\n{proc.tail()}")
        time.sleep(0.05)


@contextmanager
def serving(
    procs: Procs, name: str, command: list[str], env: dict[str, str], port: int, ready: str
) -> Iterator[Running]:
    proc = procs.start(name, command, SERVER_CORE, env)
    try:
        yield Running(name, proc, port, wait_ready(proc, port, ready))
    finally:
        procs.stop(proc)


def ours(
    procs: Procs,
    redis_url: str,
    fast_routes: bool,
    workers: int,
    device: str = "cpu",
    settings: dict[str, str] | None = None,
    port: int | None = None,  # a restart takes the port of the instance it replaces
) -> AbstractContextManager[Running]:
    port = port or free_port()
    env = {
        "CHURN_HOST": "127.0.0.1",
        "CHURN_PORT": str(port),
        "CHURN_REDIS_URL": redis_url,
        "CHURN_REDIS_PREFIX": OUR_PREFIX,
        "CHURN_DEVICE": device,
        "CHURN_WORKERS": str(workers),
        "CHURN_FAST_ROUTES": "true" if fast_routes else "false",
        "CHURN_ALLOWED_LATENESS_S": str(PREFILL_LATENESS_S),
        "CHURN_API_KEYS": os.environ["CHURN_BENCH_API_KEYS"],
        "CHURN_ID_SECRET": BENCH_ID_SECRET,
        **(settings or {}),
    }
    name = f"ours-fast-{'on' if fast_routes else 'off'}"
    return serving(procs, name, [PYTHON, "-m", "app", "serve"], env, port, "/readyz")


def mosec(procs: Procs) -> AbstractContextManager[Running]:
    port = free_port()
    command = [PYTHON, "-m", "bench.peers.mosec_server", "--address", "127.0.0.1", "--port", str(port)]
    return serving(procs, "mosec", command, {"MOSEC_LOG_LEVEL": "warning"}, port, "/")


def naive(procs: Procs, redis_url: str) -> AbstractContextManager[Running]:
    port = free_port()
    command = [PYTHON, "-m", "bench.peers.naive_app", str(port), redis_url, NAIVE_PREFIX]
    return serving(procs, "naive-fastapi", command, {}, port, "/healthz")


def raw_asgi(procs: Procs) -> AbstractContextManager[Running]:
    port = free_port()
    return serving(procs, "raw-asgi", [PYTHON, "-m", "bench.peers.raw_asgi", str(port)], {}, port, "/")
