"""Soak: half the service's measured capacity of mixed traffic for many minutes, watching errors,
latency and the service's resident memory.

    python -m bench.soak [--minutes 10]   (or: make soak)

Starts redis-server and the service (pinned as in the serving benchmark), prefills simulated users,
measures the closed-loop single-user /score rate with wrk, then offers half of it as an open loop: most of
it single-user /score, a twentieth 10-event /events batches with new ids. The service's RSS is sampled
every few seconds; the first minute (allocator and caches filling) is not held against it. Exits non-zero
on any non-2xx or transport error, or when RSS grows by 10% or more from the first minute to the end.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cases, drivers, prefill, systems
from bench.procs import Procs, install_sigterm_handler
from bench.systems import Running

USERS = 1_000
# Events go to their own users, spread wide: sent to the scored users, they would grow those users'
# histories (and the cost of scoring them) all through the run, and a soak must hold its load steady.
EVENT_USERS = 20_000
EVENTS_SHARE = 0.05  # of the offered requests; the rest is single-user /score
SAMPLE_S = 5.0
STEADY_AFTER_S = 60.0
MAX_GROWTH_PCT = 10.0
CAPACITY = cases.Plan(users=USERS, warmup=2, closed=5, open=0, overload=0, busy_window=0)


def events_bodies(folder: Path, batch: int = 10) -> Path:
    """Bodies of `batch` page views each, every event to another user; @N@ makes the ids unique."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies = [
        {
            "events": [
                {"event_id": f"soak-@N@-{k}", "user_id": f"soak-{(line * batch + k) % EVENT_USERS}",
                 "type": "page_view", "ts": now}
                for k in range(batch)
            ]
        }
        for line in range(EVENT_USERS // batch)
    ]  # fmt: skip
    return prefill.write_lines(folder / "soak-events.jsonl", bodies)


def rss_bytes(pid: int) -> int:
    """The service's resident memory (VmRSS), its workers included when it forks any."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) * 1024
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += rss_bytes(int(child))
    return total


def sample_rss(pid: int, stop: threading.Event, samples: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, rss_bytes(pid)))
        stop.wait(SAMPLE_S)
    samples.append((time.monotonic() - started, rss_bytes(pid)))


def soak(run: Running, bodies: dict[str, Path], rate: float, seconds: float) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(run.proc.popen.pid, stop, samples))
    sampler.start()
    try:
        score = drivers.start_loadgen(
            run.port, "/score", bodies["score1"], seconds, rate=rate * (1 - EVENTS_SHARE)
        )
        events = drivers.start_loadgen(
            run.port, "/events", bodies["soak_events"], seconds, rate=rate * EVENTS_SHARE, connections=8
        )
        results = {"score": drivers.collect(score), "events": drivers.collect(events)}
    finally:
        stop.set()
        sampler.join()
    return {**results, "rss": samples}


def errors(result: dict[str, Any]) -> int:
    """Non-2xx answers, connections lost mid-request (status 0) and requests never answered."""
    bad = sum(n for status, n in result["status"].items() if not 200 <= int(status) < 300)
    return bad + int(result["unfinished"])


def report(peak: float, rate: float, minutes: float, out: dict[str, Any]) -> bool:
    score, events = out["score"], out["events"]
    sent = {
        name: sum(r["status"].values()) + r["unfinished"]
        for name, r in (("score", score), ("events", events))
    }
    failed = errors(score) + errors(events)
    steady = [rss for t, rss in out["rss"] if t >= STEADY_AFTER_S]
    start_rss, end_rss = (steady[0], steady[-1]) if steady else (out["rss"][0][1], out["rss"][-1][1])
    growth = (end_rss - start_rss) / start_rss * 100
    mib = 1 << 20
    print(f"capacity: single-user /score, closed loop (wrk, 32 connections, 5 s): {peak:,.0f} req/s")
    print(
        f"soak: {minutes:g} min open loop at {rate:,.0f} req/s (half of it): /score single user "
        f"{rate * (1 - EVENTS_SHARE):,.0f}/s, /events x10 {rate * EVENTS_SHARE:,.0f}/s"
    )
    print(
        f"requests sent: {sum(sent.values()):,} (/score {sent['score']:,}, /events {sent['events']:,}); "
        f"errors (non-2xx, transport, unanswered): {failed}"
    )
    for name, r in (("/score", score), ("/events", events)):
        lat = r["latency_ms"]
        print(
            f"{name}: {r['rate']:,.0f}/s answered, p50/p99/max {lat['p50']:.2f} / {lat['p99']:.2f} / "
            f"{lat['max']:.2f} ms, generator lag p99 {r['generator_lag_ms']['p99']:.2f} ms"
        )
    print(
        f"service RSS: {start_rss / mib:.1f} MiB at {STEADY_AFTER_S:.0f} s, {end_rss / mib:.1f} MiB at the "
        f"end, growth {growth:+.1f}% ({len(out['rss'])} samples every {SAMPLE_S:g} s, "
        f"max {max(r for _, r in out['rss']) / mib:.1f} MiB)"
    )
    passed = failed == 0 and growth < MAX_GROWTH_PCT
    print(
        f"verdict: {'PASS' if passed else 'FAIL'} (errors {failed}, must be 0; RSS growth {growth:+.1f}%, "
        f"must be under {MAX_GROWTH_PCT:g}%)"
    )
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    install_sigterm_handler()
    with tempfile.TemporaryDirectory(prefix="churn-soak-") as tmp:
        procs = Procs(Path(tmp))
        try:
            _, redis_port = systems.start_redis(procs)
            with systems.ours(procs, f"redis://127.0.0.1:{redis_port}/0", True, 1) as run:
                history = prefill.history(USERS, datetime.now(UTC))
                posted = prefill.post_events(run.port, history)
                print(f"prefill: {posted['accepted']:,} events of {USERS:,} users accepted", flush=True)
                users = sorted({e["user_id"] for e in history})
                features = prefill.fetch_features(run.port, users)
                bodies = prefill.write_bodies(Path(tmp), features)
                bodies["soak_events"] = events_bodies(Path(tmp))
                peak = cases.closed(run, "/score", bodies["score1"], CAPACITY)["rate"]
                rate = peak / 2
                print(f"[{time.strftime('%H:%M:%S')}] soaking for {args.minutes:g} min", flush=True)
                out = soak(run, bodies, rate, args.minutes * 60)
        except BaseException:
            procs.print_logs()
            raise
        finally:
            procs.stop_all()
    if not report(peak, rate, args.minutes, out):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
