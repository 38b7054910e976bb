"""Side-by-side serving benchmark: our service against Mosec, a tutorial-style FastAPI service and the
ceilings (raw ASGI on uvicorn, redis-benchmark), all started here on 127.0.0.1, servers pinned to core 0,
load generators and redis-server to core 1. Prints one table with ratios against the references
measured in the same run and writes every figure to bench/results/serve.json.

Run: python -m bench.serve [--quick] [--out bench/results/serve.json]   (or: make bench-serve)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cases, drivers, head_to_head, prefill, report, systems
from bench.procs import CLIENT_CORE, Procs, install_sigterm_handler
from bench.systems import Running


def prepare(run: Running, redis_url: str, plan: cases.Plan, folder: Path) -> tuple[dict[str, Path], dict]:
    """Histories through our POST /events; the same raw features to the naive store and Mosec's bodies."""
    started = time.perf_counter()
    events = prefill.history(plan.users, datetime.now(UTC))
    posted = prefill.post_events(run.port, events)
    users = sorted({e["user_id"] for e in events})
    features = prefill.fetch_features(run.port, users)
    prefill.store_hashes(redis_url, systems.NAIVE_PREFIX, features)
    bodies = prefill.write_bodies(folder, features)
    summary = {
        "users": len(users),
        "events_posted": len(events),
        **posted,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"prefill: {len(events):,} events of {len(users):,} users ({summary['seconds']} s)", flush=True)
    return bodies, summary


def step(name: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)


def measure_ours(
    procs: Procs, redis_url: str, redis_pid: int, plan: cases.Plan, folder: Path, workers: int
) -> dict:
    out: dict[str, Any] = {"ready": []}
    with systems.ours(procs, redis_url, True, workers) as run:
        out["ready"].append(run.ready_s)
        bodies, out["prefill"] = prepare(run, redis_url, plan, folder)
        step("case 1: ours, fast routes on")
        out["single_on"] = cases.closed(run, "/score", bodies["score1"], plan)
        step("case 2: ours, open loop")
        out["open"] = cases.open_loop(run, "/score", bodies["score1"], plan, out["single_on"]["rate"])
    with systems.ours(procs, redis_url, False, workers) as run:
        out["ready"].append(run.ready_s)
        step("case 1: ours, fast routes off")
        out["single_off"] = cases.closed(run, "/score", bodies["score1"], plan)
    with systems.ours(procs, redis_url, True, workers) as run:
        out["ready"].append(run.ready_s)
        step("case 3: ours, 256 users per request")
        out["score256"] = cases.closed(run, "/score", bodies["score256"], plan)
        out["score256_explain"] = cases.closed(run, "/score", bodies["score256x"], plan)
        # Overload before /events: the events add to the users' histories, and the peak it is compared
        # with was measured on the histories as they are now.
        step("case 5: ours, overload")
        out["overload"] = cases.overload(run, bodies, plan, out["score256"]["rate"])
        step("case 4: ours, POST /events")
        out["events"] = cases.events(run, bodies["users"], plan, redis_pid)
        step("case 6: ours, busy user")
        out["busy"] = cases.busy_user(run, redis_url, bodies, plan)
    out["bodies"] = bodies
    return out


def measure_peers(procs: Procs, redis_url: str, bodies: dict[str, Path], plan: cases.Plan) -> dict:
    out: dict[str, Any] = {}
    with systems.mosec(procs) as run:
        step("case 1-2: Mosec")
        out["mosec_ready"] = run.ready_s
        out["mosec"] = cases.closed(run, "/inference", bodies["mosec1"], plan)
        out["mosec_open"] = cases.open_loop(run, "/inference", bodies["mosec1"], plan, out["mosec"]["rate"])
    with systems.naive(procs, redis_url) as run:
        step("case 1, 3: naive FastAPI")
        out["naive_ready"] = run.ready_s
        out["naive"] = cases.closed(run, "/score", bodies["score1"], plan)
        out["naive256"] = cases.closed(run, "/score", bodies["score256"], plan)
    with systems.raw_asgi(procs) as run:
        step("ceilings: raw ASGI, the load generator")
        out["raw_ready"] = run.ready_s
        out["raw"] = cases.closed(run, "/score", bodies["score1"], plan)
        out["generator"] = cases.generator_ceiling(run, bodies["score1"], plan)
    return out


def run(plan: cases.Plan, workers: int, out_file: Path) -> None:
    drivers.require_wrk()
    os.sched_setaffinity(0, {int(CLIENT_CORE)})  # this process and its load generators: the client core
    started = time.time()
    load = [round(x, 2) for x in os.getloadavg()]
    steal = report.cpu_steal()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        procs = Procs(folder)
        try:
            redis_proc, redis_port = systems.start_redis(procs)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            ours = measure_ours(procs, redis_url, redis_proc.popen.pid, plan, folder, workers)
            bodies = ours.pop("bodies")
            peers = measure_peers(procs, redis_url, bodies, plan)
            step("case 1 again: every system up, alternating rounds")
            heads = head_to_head.single_user_rounds(procs, redis_url, bodies, plan, workers)
            # The table's case 1 is the median round; each phase's own figure stays in the JSON.
            ours["single_on_phase"], ours["single_off_phase"] = ours["single_on"], ours["single_off"]
            ours["single_on"], ours["single_off"] = heads["ours"], heads["ours_fast_off"]
            for name in ("mosec", "naive", "raw"):
                peers[f"{name}_phase"], peers[name] = peers[name], heads[name]
            step("ceilings: redis-benchmark")
            ceiling = drivers.redis_benchmark(redis_port, 100_000 if plan is cases.QUICK else 300_000)
            results = report.collect(
                plan,
                ours,
                peers,
                ceiling,
                redis_url=redis_url,
                seconds=time.time() - started,
                loadavg=load,
                steal_before=steal,
            )
        except Exception:
            procs.print_logs()
            raise
        finally:
            procs.stop_all()
    report.print_table(results)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {out_file} ({results['seconds']:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~2-minute smoke run with short durations")
    parser.add_argument("--workers", type=int, default=1, help="CHURN_WORKERS for our service")
    parser.add_argument("--out", type=Path, help="default: bench/results/serve.json, or serve-quick.json")
    args = parser.parse_args()
    # A smoke run must not overwrite the committed figures of a full run.
    name = "serve-quick.json" if args.quick else "serve.json"
    out = args.out or Path(__file__).parent / "results" / name
    install_sigterm_handler()
    os.environ.setdefault("TQDM_DISABLE", "1")  # the simulator's progress bar
    try:
        run(cases.QUICK if args.quick else cases.FULL, args.workers, out)
    except KeyboardInterrupt:
        raise SystemExit("interrupted: every process started here was stopped") from None


if __name__ == "__main__":
    main()
