"""An HTTP/1.1 load generator for open-loop (fixed-rate) and closed-loop runs, printing JSON.

Open loop: request i is due at t0 + i/rate whatever happened before, and its latency counts from that
intended time, so a stalled server is charged for every request it delayed (no coordinated omission).
A request due while all connections are busy waits for the next free one, still on its own clock.
Latencies go into HDR histograms; percentiles are never averaged.

The client is deliberately thin: keep-alive connections over raw asyncio protocols, request bytes
encoded before the run, and only the status line and Content-Length parsed. The marker @N@ in a body is
replaced by a number unique to each request (unique event ids).

Run: python -m bench.loadgen --port 8000 --path /score --bodies bodies.jsonl --connections 32 \
        --duration 10 [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path

import uvloop
from hdrh.histogram import HdrHistogram

MARKER = b"@N@"
AUTH_ENV = "CHURN_BENCH_AUTHORIZATION"  # set by bench.procs for the generators it starts
PERCENTILES = (50, 90, 99, 99.9)


def request_source(port: int, path: str, bodies: list[bytes]) -> Callable[[], bytes]:
    """A function returning the next request's bytes, cycling through the bodies."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    if AUTH_ENV in os.environ:
        head += f"Authorization: {os.environ[AUTH_ENV]}\r\n"
    if not any(MARKER in b for b in bodies):
        encoded = [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
        return itertools.cycle(encoded).__next__
    split = [b.split(MARKER) for b in bodies]
    counter = itertools.count()
    pieces: Iterator[list[bytes]] = itertools.cycle(split)

    def unique() -> bytes:
        body = str(next(counter)).encode().join(next(pieces))
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body

    return unique


def content_length(head: bytes) -> int:
    """Content-Length from a lower-cased header block (0 when absent)."""
    start = head.find(b"content-length:")
    if start < 0:
        return 0
    end = head.find(b"\r\n", start)
    return int(head[start + 15 : end if end >= 0 else len(head)])


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.intended = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, intended: float) -> None:
        assert self.transport is not None
        self.busy, self.intended = True, intended
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = content_length(bytes(self.buffer[:end]).lower())
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        self.busy = False
        self.run.done(self, status, time.perf_counter())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.busy = False
            self.run.done(self, 0, time.perf_counter(), lost=True)  # status 0: lost mid-request
        self.run.lost(self)


class Run:
    """Shared state of one run: the request source, free connections, backlog and histograms."""

    def __init__(
        self, port: int, next_request: Callable[[], bytes], closed_loop: bool, record_after: float
    ) -> None:
        self.port = port
        self.next_request = next_request
        self.closed_loop = closed_loop
        self.record_after = record_after  # warm-up: completions before this are not recorded
        self.stopping = False
        self.finished = False
        self.idle: deque[Connection] = deque()
        self.backlog: deque[float] = deque()
        self.max_backlog = 0
        self.status: Counter[int] = Counter()
        self.all = HdrHistogram(1, 120_000_000, 3)  # microseconds
        self.ok = HdrHistogram(1, 120_000_000, 3)
        self.lag = HdrHistogram(1, 120_000_000, 3)  # open loop: how late the scheduler dispatched
        self.in_flight = 0
        self.last_done = 0.0
        self.conns: list[Connection] = []
        self.reconnects = 0
        self.tasks: set[asyncio.Future[None]] = set()  # referenced until the run ends

    def dispatch(self, intended: float) -> None:
        if intended >= self.record_after:  # the generator's own lateness, before any wait for a connection
            self.lag.record_value(max(1, int((time.perf_counter() - intended) * 1e6)))
        if not self.idle:
            self.backlog.append(intended)
            self.max_backlog = max(self.max_backlog, len(self.backlog))
            return
        self.send(self.idle.popleft(), intended)

    def send(self, conn: Connection, intended: float) -> None:
        self.in_flight += 1
        conn.send(self.next_request(), time.perf_counter() if self.closed_loop else intended)

    def done(self, conn: Connection, status: int, now: float, lost: bool = False) -> None:
        if self.finished:
            return  # closing the connections at the end; what was unanswered is counted apart
        self.in_flight -= 1
        # Closed loop: answers after the bell belong to no window; open loop: every sent request counts.
        if conn.intended >= self.record_after and not (self.stopping and self.closed_loop):
            micros = max(1, int((now - conn.intended) * 1e6))
            self.status[status] += 1
            self.all.record_value(micros)
            if 200 <= status < 300:
                self.ok.record_value(micros)
            self.last_done = now
        if not lost:
            self.ready(conn)

    def ready(self, conn: Connection) -> None:
        if self.stopping:
            return
        if self.closed_loop:
            self.send(conn, time.perf_counter())
        elif self.backlog:
            self.send(conn, self.backlog.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: Connection) -> None:
        """A closed connection is replaced, so the run keeps its connection count."""
        if conn in self.idle:
            self.idle.remove(conn)
        if not self.stopping:
            self.reconnects += 1
            self.tasks.add(asyncio.ensure_future(self.replace()))

    async def replace(self) -> None:
        while not self.stopping:
            try:
                _, conn = await asyncio.get_running_loop().create_connection(
                    lambda: Connection(self), "127.0.0.1", self.port
                )
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self.conns.append(conn)
            self.ready(conn)
            return


async def open_connections(run: Run, count: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(count):
        _, conn = await loop.create_connection(lambda: Connection(run), "127.0.0.1", run.port)
        run.conns.append(conn)


async def schedule(run: Run, t0: float, rate: float, total: int) -> None:
    """Dispatch request i at t0 + i/rate; a late wake-up dispatches everything already due."""
    i = 0
    while i < total:
        due = min(total, int((time.perf_counter() - t0) * rate) + 1)
        while i < due:
            run.dispatch(t0 + i / rate)
            i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))


async def drive(args: argparse.Namespace) -> dict[str, object]:
    bodies = [line.encode() for line in Path(args.bodies).read_text().splitlines() if line.strip()]
    t0 = time.perf_counter() + 0.2
    source = request_source(args.port, args.path, bodies)
    run = Run(args.port, source, args.rate is None, t0 + args.warmup)
    await open_connections(run, args.connections)
    await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    span = args.warmup + args.duration
    for conn in list(run.conns):
        run.ready(conn)
    if args.rate is None:
        await asyncio.sleep(span)
    else:
        await schedule(run, t0, args.rate, int(span * args.rate))
    run.stopping = args.rate is None  # closed loop stops at the bell; open loop drains what it sent
    drain_until = time.perf_counter() + args.drain
    while (run.in_flight or run.backlog) and time.perf_counter() < drain_until:
        await asyncio.sleep(0.005)
    unfinished = run.in_flight + len(run.backlog)
    run.stopping = run.finished = True
    for conn in run.conns:
        if conn.transport:
            conn.transport.close()
    return summary(run, args, t0, unfinished)


def percentiles(hist: HdrHistogram) -> dict[str, float]:
    if hist.get_total_count() == 0:
        return {}
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000
    return out


def summary(run: Run, args: argparse.Namespace, t0: float, unfinished: int) -> dict[str, object]:
    # Closed loop measures over the fixed window; open loop until its last recorded answer.
    elapsed = args.duration if args.rate is None else max(args.duration, run.last_done - t0 - args.warmup)
    completed = run.all.get_total_count()
    ok = run.ok.get_total_count()
    return {
        "mode": "closed" if args.rate is None else "open",
        "connections": args.connections,
        "offered_rate": args.rate,
        "duration_s": round(elapsed, 3),
        "completed": completed,
        "rate": completed / elapsed,
        "ok_rate": ok / elapsed,
        "status": {str(k): v for k, v in sorted(run.status.items())},
        "unfinished": unfinished,
        "latency_ms": percentiles(run.all),
        "latency_ok_ms": percentiles(run.ok),
        "generator_lag_ms": percentiles(run.lag),
        "max_backlog": run.max_backlog,
        "reconnects": run.reconnects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/score")
    parser.add_argument("--bodies", required=True, help="file of request bodies, one per line")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, help="requests/s (open loop); omit for closed loop")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="unrecorded seconds before them")
    parser.add_argument("--drain", type=float, default=10.0, help="open loop: wait this long for answers")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(drive(args))))


if __name__ == "__main__":
    main()
