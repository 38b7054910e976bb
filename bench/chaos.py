"""Chaos: faults under a load of event batches, then a count of what the store holds.

    python -m bench.chaos   (or: make chaos; about 30 s)

Starts a redis-server with an append-only file synced on every write (`appendfsync always`: an
acknowledged write is on disk) and the service. Four clients send 50-event batches of page views with
unique ids over a few hundred users, each batch resent with the same body after any failure until it gets
200, as a client of the API may. Meanwhile, in turn: Redis is killed (SIGKILL) and restarted from its file
on the same port; Redis is paused beyond the service's Redis timeout, then resumed; the service is
restarted (SIGTERM, then a new process on the same port). After the load Redis is killed once more, so
the read-back sees only what reached the file. Every acknowledged event must be found exactly once: the
sum over users of page_view_count_1d must equal the acknowledged count, and no user may hold more than was
sent to them. Exits non-zero otherwise.
"""

from __future__ import annotations

import http.client
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.redis_server import RedisProcess
from bench import systems
from bench.procs import Procs, install_sigterm_handler, request
from bench.systems import Running

CLIENTS = 4
BATCH = 50
USERS = 300
STEADY_S = 4.0  # load before, between and after the faults
PAUSE_S = 2.0  # well beyond the service's Redis timeout (0.25 s)
RETRY_SLEEP_S = 0.05
GIVE_UP_S = 60.0  # a batch failing this long means the service did not come back: fail, do not hang
# A short drain keeps the restart short; the drain itself is tested in tests/test_drain.py.
SERVICE_SETTINGS = {"CHURN_DRAIN_S": "1"}


class Load:
    """The clients, what they sent and what was acknowledged, and failures by the fault under way."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sent: Counter[str] = Counter()  # events per user, each event counted once however often resent
        self.acked: Counter[str] = Counter()
        self.batches = 0
        self.duplicates = 0  # events a failed attempt had applied, reported as such by the retry
        self.rejected: list[Any] = []
        self.abandoned = 0  # batches given up on (GIVE_UP_S): their events count as sent, not acknowledged
        self.phase = "steady"
        self.failures: Counter[tuple[str, int]] = Counter()  # failed attempts (retried), by phase and status
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def client(self, index: int) -> None:
        rng = random.Random(index)
        for seq in range(1_000_000_000):
            if self.stopping.is_set():
                return
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            users = [f"chaos-{rng.randrange(USERS)}" for _ in range(BATCH)]
            events = [
                {"event_id": f"c{index}-{seq}-{k}", "user_id": u, "type": "page_view", "ts": now}
                for k, u in enumerate(users)
            ]
            with self.lock:
                self.sent.update(users)
            body = self.post_until_ok(events)  # a batch once begun is seen through, even when stopping
            with self.lock:
                if body is None:
                    self.abandoned += 1
                    continue
                self.batches += 1
                self.duplicates += int(body["duplicates"])
                self.rejected += body["rejected"]
                refused = {r["index"] for r in body["rejected"]}
                self.acked.update(u for k, u in enumerate(users) if k not in refused)

    def post_until_ok(self, events: list[dict[str, str]]) -> Any:
        give_up = time.monotonic() + GIVE_UP_S
        while time.monotonic() < give_up:
            try:
                status, body = request("POST", self.port, "/events", {"events": events}, timeout=10)
            except (OSError, http.client.HTTPException):
                status, body = 0, None  # refused, reset or timed out: the same retry
            if status == 200:
                return body
            with self.lock:
                self.failures[self.phase, status] += 1
            time.sleep(RETRY_SLEEP_S)
        return None


def fault(load: Load, name: str, action: Callable[[], None]) -> float:
    """Run one fault under load; its failures count against it until the load has run steady again."""
    load.phase = name
    started = time.perf_counter()
    action()
    took = time.perf_counter() - started
    time.sleep(STEADY_S)
    load.phase = "steady"
    return took


def kill_and_restart(server: RedisProcess) -> None:
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    server.start()  # same port and folder: the server loads its append-only file


def pause(server: RedisProcess) -> None:
    server.pause()
    time.sleep(PAUSE_S)
    server.resume()


def found_counts(port: int) -> tuple[dict[str, int], int]:
    """Each user's page views as the service reads them back, and how many reads were answered 503 and
    retried (a connection the service pooled before the kill can fail once)."""
    found, retried = {}, 0
    for user in (f"chaos-{i}" for i in range(USERS)):
        give_up = time.monotonic() + GIVE_UP_S
        status, body = request("GET", port, f"/users/{user}/features")
        while status == 503 and time.monotonic() < give_up:
            retried += 1
            time.sleep(RETRY_SLEEP_S)
            status, body = request("GET", port, f"/users/{user}/features")
        if status != 200:
            raise RuntimeError(f"GET /users/{user}/features answered {status}: {body}")
        found[user] = int(body["features"]["page_view_count_1d"])
    return found, retried


def failed(load: Load, phase: str) -> str:
    """Failed attempts of one phase, all retried, by status (0: refused, reset or timed out)."""
    mine = {status: n for (p, status), n in sorted(load.failures.items()) if p == phase}
    detail = ", ".join(f"{'no answer' if status == 0 else status}: {n}" for status, n in mine.items())
    return f"{sum(mine.values())} failed attempts retried" + (f" ({detail})" if detail else "")


def verdict(load: Load, found: dict[str, int], read_retries: int, faults: dict[str, float]) -> bool:
    for name, took in faults.items():
        print(f"{name}: {took:.2f} s, {failed(load, name)}")
    print(f"outside the faults: {failed(load, 'steady')}")
    acked, total = sum(load.acked.values()), sum(found.values())
    lost = sum(max(0, n - found.get(u, 0)) for u, n in load.acked.items())
    doubled = sum(max(0, n - load.acked[u]) for u, n in found.items())
    over_sent = [u for u, n in found.items() if n > load.sent[u]]
    print(
        f"events: {sum(load.sent.values()):,} sent in {load.batches:,} batches, {acked:,} acknowledged, "
        f"{total:,} found after a last SIGKILL and restart of Redis (reads answered 503 and retried: "
        f"{read_retries}); {len(load.rejected)} rejected, "
        f"{load.duplicates:,} reported as duplicates by a retry, {load.abandoned} batches given up"
    )
    passed = acked == total and lost == 0 and doubled == 0 and not over_sent and not load.abandoned
    print(
        f"verdict: {'PASS' if passed else 'FAIL'}: found - acknowledged = {total - acked}, lost {lost}, "
        f"double counted {doubled}, users holding more than was sent {len(over_sent)}"
    )
    return passed


def main() -> None:
    install_sigterm_handler()
    with tempfile.TemporaryDirectory(prefix="churn-chaos-") as tmp, ExitStack() as cleanup:
        procs = Procs(Path(tmp))
        cleanup.callback(procs.stop_all)
        server = RedisProcess(Path(tmp) / "redis", persist=True, extra=["--appendfsync", "always"])
        server.start()
        cleanup.callback(server.stop)
        service = ExitStack()
        cleanup.callback(service.close)
        try:
            run: Running = service.enter_context(
                systems.ours(procs, server.url, True, 1, settings=SERVICE_SETTINGS)
            )

            def restart_service() -> None:
                service.close()
                service.enter_context(
                    systems.ours(procs, server.url, True, 1, settings=SERVICE_SETTINGS, port=run.port)
                )

            load = Load(run.port)
            load.start()
            time.sleep(STEADY_S)
            faults: dict[str, float] = {}
            try:
                for name, action in (
                    (
                        "(a) Redis killed (SIGKILL), restarted from its AOF on the same port",
                        lambda: kill_and_restart(server),
                    ),
                    (f"(b) Redis paused (SIGSTOP) {PAUSE_S:g} s, then resumed", lambda: pause(server)),
                    ("(c) service restarted (SIGTERM, wait, start on the same port)", restart_service),
                ):
                    faults[name] = fault(load, name, action)
            finally:
                load.stop()
            kill_and_restart(server)
            found, read_retries = found_counts(run.port)
        except BaseException:
            procs.print_logs()
            raise
    if not verdict(load, found, read_retries, faults):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
