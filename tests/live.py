"""The app in a real uvicorn server on a free port, in a background thread of the test process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from app.api.auth import new_key
from app.clock import FixedClock
from app.config import Settings
from app.main import create_app
from app.redis_server import free_port
from tests.helpers import T

# One key with every scope, for the tests that are not about access control.
TEST_KEY, TEST_KEY_ENTRY = new_key("tests", ["events", "score", "admin", "metrics"])
AUTH = {"authorization": f"Bearer {TEST_KEY}"}


class LiveServer:
    def __init__(self, settings: Settings, clock: FixedClock) -> None:
        self.clock = clock
        self.settings = settings
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings, clock), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client that sends the all-scopes test key (pass headers={} for one without)."""
        kwargs.setdefault("headers", AUTH)
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    defaults: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_prefix": "test",
        "allowed_lateness_s": 3_650 * 86_400,  # tests replay whole histories
        "max_future_skew_s": 0,
        "api_keys": [TEST_KEY_ENTRY],
        "id_secret": "tests-only-id-secret-of-at-least-32-bytes",
    }
    return Settings(**(defaults | overrides))


@contextmanager
def live_server(redis_url: str, now: datetime = T, **overrides: Any) -> Iterator[LiveServer]:
    server = LiveServer(settings_for(redis_url, **overrides), FixedClock(now))
    server.start()
    try:
        yield server
    finally:
        server.stop()


ROOT = Path(__file__).resolve().parents[1]


def serve_process(redis_url: str, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """`python -m app serve` in a process of its own (for tests that send it signals or run several),
    with the tests' key and id secret; `env` adds or overrides CHURN_* variables. Its stderr goes to `log`."""
    settings = settings_for(redis_url)
    environment = {
        **os.environ,
        "CHURN_PORT": str(port),
        "CHURN_REDIS_URL": redis_url,
        "CHURN_API_KEYS": json.dumps([TEST_KEY_ENTRY.model_dump()]),
        "CHURN_ID_SECRET": settings.id_secret.get_secret_value() if settings.id_secret else "",
        **env,
    }
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=environment, stderr=out)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    """Until `url`/readyz answers 200; fails with the log's end if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the service exited during start-up:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the service did not become ready:\n{log.read_text()[-3000:]}")
