"""Graceful drain: on SIGTERM the service turns unready, serves on for the drain period, then exits,
and no request it admitted fails (the service runs as its own process: signals need its main thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from pydantic import SecretStr

from app.redis_server import free_port
from tests.live import AUTH, TEST_KEY_ENTRY, settings_for

ROOT = Path(__file__).resolve().parents[1]
DRAIN_S = 1.5


def serve(redis_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    settings = settings_for(redis_url)
    env = {
        **os.environ,
        "CHURN_PORT": str(port),
        "CHURN_REDIS_URL": redis_url,
        "CHURN_REDIS_PREFIX": "drain",
        "CHURN_API_KEYS": json.dumps([TEST_KEY_ENTRY.model_dump()]),
        "CHURN_DRAIN_S": str(DRAIN_S),
        **{
            f"CHURN_{name.upper()}": value.get_secret_value()
            for name, value in settings.model_dump().items()
            if isinstance(value, SecretStr)
        },
    }
    command = [sys.executable, "-m", "app", "serve"]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stderr=out)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the service exited during start-up:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the service did not become ready")


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
