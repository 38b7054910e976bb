"""Graceful drain: on SIGTERM the service turns unready, serves on for the drain period, then exits,
and no request it admitted fails (the service runs as its own process: signals need its main thread)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from app.redis_server import free_port
from tests.live import AUTH, serve_process, wait_ready

DRAIN_S = 1.5


def serve(redis_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    return serve_process(redis_url, port, log, CHURN_REDIS_PREFIX="drain", CHURN_DRAIN_S=str(DRAIN_S))


def test_sigterm_drains_without_failing_an_admitted_request(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = serve(redis_url, port, log)
    outcomes: Counter[str] = Counter()
    closing_answers = 0
    stopped_at: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        """Sends until this replica asks it to go (as a load balancer would once /readyz fails)."""
        nonlocal closing_answers
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as http:
            while True:
                try:
                    answer = http.post("/score", json={"user_ids": ["u-1"]})
                except httpx.ConnectError:  # the listener is closed: not admitted, so not a failure
                    return
                except httpx.TransportError as error:  # an admitted request broken off
                    with lock:
                        outcomes[f"failed: {type(error).__name__}"] += 1
                    return
                with lock:
                    outcomes[str(answer.status_code)] += 1
                    if answer.headers.get("connection") == "close":
                        closing_answers += 1
                        return

    try:
        wait_ready(url, proc, log)
        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stopped_at.append(time.monotonic())
        time.sleep(0.3)
        readiness = httpx.get(f"{url}/readyz", timeout=5)
        assert readiness.status_code == 503 and readiness.json()["checks"]["not_draining"] is False
        # uvicorn re-raises the signal once it has shut down cleanly, as a process stopped by it would.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        exited_after = time.monotonic() - stopped_at[0]
        for thread in threads:
            thread.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert set(outcomes) == {"200"}, outcomes  # nothing admitted failed, nothing but 200
    assert closing_answers == 4  # every client was served while draining and told to go elsewhere
    assert DRAIN_S <= exited_after < DRAIN_S + 10
