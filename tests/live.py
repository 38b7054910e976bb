"""The app in a real uvicorn server on a free port, in a background thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
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
