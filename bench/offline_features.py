"""Offline features over a simulated log of >= 1M events: read + validate + compute, timed.

Reference in the same run: reading the same CSV with pandas' pyarrow engine and nothing else.
Run: python -m bench.offline_features [--users 6000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from app.features import offline
from app.training.simulate import SimulationConfig, simulate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=6_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.csv"
        offline.write_event_log(simulate(SimulationConfig(n_users=args.users)).events, path)

        started = time.perf_counter()
        pd.read_csv(path, engine="pyarrow")
        reference = time.perf_counter() - started

        started = time.perf_counter()
        events = offline.read_event_log(path)
        loaded = time.perf_counter() - started
        as_of = int(events["ts_s"].max())
        started = time.perf_counter()
        users, matrix = offline.features(events, as_of)
        computed = time.perf_counter() - started

    total = loaded + computed
    print(f"events (after dedupe): {len(events):,}; users: {len(users):,}; features: {matrix.shape[1]}")
    print(f"plain CSV read (reference): {reference:6.2f} s")
    print(f"read + validate:            {loaded:6.2f} s")
    print(f"features as of the end:     {computed:6.2f} s")
    print(
        f"total: {total:.2f} s = {total / reference:.1f}x the plain read; {len(events) / total:,.0f} events/s"
    )
    print(f"budget 30 s for 1M events: {'met' if total * 1e6 / len(events) < 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
