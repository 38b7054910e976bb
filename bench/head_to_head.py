"""Case 1 again, with every system up at once and measured in alternating rounds.

The shared machine's speed drifts over a run; systems measured minutes apart can differ by a factor of
two for no reason of their own. Alternating short rounds (ours, ours with fast routes off, Mosec, naive,
raw ASGI; then again) and taking each system's median round puts every ratio on the same footing.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import cases, systems
from bench.procs import Procs

ROUNDS = 3


def single_user_rounds(
    procs: Procs, redis_url: str, bodies: dict[str, Path], plan: cases.Plan, workers: int
) -> dict[str, Any]:
    """Median round per system (by successful requests/s), with every round kept."""
    with ExitStack() as stack:
        runs = {
            "ours": (stack.enter_context(systems.ours(procs, redis_url, True, workers)), "/score", "score1"),
            "ours_fast_off": (
                stack.enter_context(systems.ours(procs, redis_url, False, workers)),
                "/score",
                "score1",
            ),
            "mosec": (stack.enter_context(systems.mosec(procs)), "/inference", "mosec1"),
            "naive": (stack.enter_context(systems.naive(procs, redis_url)), "/score", "score1"),
            "raw": (stack.enter_context(systems.raw_asgi(procs)), "/score", "score1"),
        }
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
        for _ in range(ROUNDS):
            for name, (run, path, body) in runs.items():
                rounds[name].append(cases.closed(run, path, bodies[body], plan))
    return {name: median_round(results) for name, results in rounds.items()}


def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(results, key=lambda r: r["rate"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rounds_rate"] = [round(r["rate"], 1) for r in results]
    chosen["rounds_p99_ms"] = [r["latency_ms"]["p99"] for r in results]
    chosen["median_p99_ms"] = statistics.median(r["latency_ms"]["p99"] for r in results)
    return chosen
