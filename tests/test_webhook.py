"""Warnings delivered to a webhook by `warnings consume --webhook`: signed POSTs to a real HTTP receiver,
retried with backoff while it answers 503, acknowledged only once delivered; a receiver that is down
leaves the messages pending, and the next run delivers them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.actions.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, DeliveryFailed, Webhook, signature, verify
from app.redis_server import free_port
from tests.test_warning_consumer import ROOT, warn

SECRET = b"webhook-secret-for-tests"


class Receiver:
    """Answers 503 to the first `failures` requests, then 204; keeps what it accepted."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.accepted: list[dict[str, object]] = []
        self.bad_signatures = 0


@contextmanager
def receiver(failures: int = 0) -> Iterator[tuple[str, Receiver]]:
    state = Receiver(failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.attempts += 1
            if not verify(
                SECRET, self.headers[TIMESTAMP_HEADER], body, self.headers[SIGNATURE_HEADER], time.time()
            ):
                state.bad_signatures += 1
                self.send_response(401)
            elif state.attempts <= state.failures:
                self.send_response(503)
            else:
                state.accepted.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", state
    finally:
        server.shutdown()
        server.server_close()


def consume(redis_url: str, secret_file: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHURN_REDIS_URL": redis_url, "CHURN_REDIS_PREFIX": "test"}
    command = [
        sys.executable, "-m", "app", "warnings", "consume", "--group", "crm", "--consumer", "c1",
        "--until-idle", "--block-ms", "200", "--webhook", url, "--webhook-secret-file", str(secret_file),
        *args,
    ]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, timeout=120, capture_output=True, text=True)


def test_retried_until_delivered_then_acknowledged(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    warn(redis_url, ["a", "b"])
    with receiver(failures=2) as (url, state):
        first = consume(redis_url, tmp_path / "secret", url)
        assert first.returncode == 0, first.stderr
        assert [m["user_id"] for m in state.accepted] == ["a", "b"]
        assert state.attempts == 4 and state.bad_signatures == 0  # two 503s, retried, then one each
        again = consume(redis_url, tmp_path / "secret", url)  # acknowledged: nothing is sent again
        assert again.returncode == 0 and len(state.accepted) == 2


def test_a_receiver_that_is_down_leaves_the_messages_pending(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(SECRET)
    warn(redis_url, ["a"])
    down = f"http://127.0.0.1:{free_port()}/hook"
    failed = consume(redis_url, tmp_path / "secret", down, "--webhook-attempts", "2")
    assert failed.returncode == 1 and "stays pending" in failed.stderr
    with receiver() as (url, state):
        # The pending message is taken over once idle (here at once) and delivered.
        delivered = consume(redis_url, tmp_path / "secret", url, "--claim-idle-s", "0")
        assert delivered.returncode == 0, delivered.stderr
        assert [m["user_id"] for m in state.accepted] == ["a"]


def test_a_refused_message_is_not_retried_and_signatures_bind_body_and_time() -> None:
    with receiver(failures=0) as (url, state):
        wrong = Webhook(url, b"not-the-receivers-secret", sleep=lambda s: None)
        with pytest.raises(DeliveryFailed, match="HTTP 401"):
            wrong.deliver({"warning_id": "w1"})
        assert state.attempts == 1  # a 4xx other than 408/425/429 is final
    signed = signature(SECRET, "1000", b"{}")
    assert verify(SECRET, "1000", b"{}", signed, now=1000)
    assert not verify(SECRET, "1000", b"{ }", signed, now=1000)  # another body
    assert not verify(SECRET, "1000", b"{}", signed, now=2000)  # too old: a replay
    with pytest.raises(ValueError, match="http"):
        Webhook("file:///etc/passwd", SECRET)
