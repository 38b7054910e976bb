"""GPU check, one short script (under 5 minutes) for a machine with CUDA:

1. CUDA and CPU probabilities of the committed model agree to 1e-5 on 10,000 rows (explained too);
2. forward throughput (rows/s) at batch sizes 1 to 8,192 on both devices;
3. the service on CUDA under the 256-user /score load for 30 s (redis-server, server and load generator
   started here, as in `make bench-serve`).

    python -m bench.gpu_check [--seconds 30] [--out bench/results/gpu.json]

Without CUDA it runs the CPU half and says so, so the script itself stays tested on any machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.model.bundle import load_bundle
from app.model.engine import InferenceEngine

STORE = Path("model_store")
BATCH_SIZES = (1, 8, 64, 256, 1024, 2048, 4096, 8192)


def agreement(rows: int = 10_000) -> dict[str, Any]:
    """Largest |p_cuda - p_cpu| over `rows` realistic rows (scaled training-like inputs), and of gradients."""
    bundle = load_bundle(STORE)
    x = np.random.default_rng(0).normal(size=(rows, bundle.network_config.n_features)).astype(np.float32)
    cpu, cuda = InferenceEngine(bundle, "cpu"), InferenceEngine(bundle, "cuda")
    logits_cpu, grad_cpu = cpu.forward(x, explain=True)
    logits_gpu, grad_gpu = cuda.forward(x, explain=True)
    calibration = bundle.calibration
    p_cpu = calibration.probability(logits_cpu.astype(np.float64))
    p_gpu = calibration.probability(logits_gpu.astype(np.float64))
    assert grad_cpu is not None and grad_gpu is not None
    worst = float(np.abs(p_cpu - p_gpu).max())
    return {
        "rows": rows,
        "max_abs_probability_difference": worst,
        "max_abs_gradient_difference": float(np.abs(grad_cpu - grad_gpu).max()),
        "pass": worst <= 1e-5,
    }


def throughput(device: str, seconds_per_size: float = 1.0) -> dict[int, float]:
    """Rows per second of the forward pass (inputs from host memory, logits back to host)."""
    engine = InferenceEngine(load_bundle(STORE), device)
    rng = np.random.default_rng(1)
    out: dict[int, float] = {}
    for size in BATCH_SIZES:
        x = rng.normal(size=(size, engine.n_features)).astype(np.float32)
        for _ in range(5):
            engine.forward(x, explain=False)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds_per_size:
            engine.forward(x, explain=False)  # .cpu() inside synchronises the device
            calls += 1
        out[size] = calls * size / (time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the service load")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu.json"))
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }
    torch.set_num_threads(1)
    result["cpu_rows_per_s"] = throughput("cpu")
    try:
        if cuda:
            result["agreement"] = agreement()
            result["cuda_rows_per_s"] = throughput("cuda")
            from bench.gpu_service import service_under_load

            result["service_on_cuda"] = service_under_load(args.seconds)
    finally:  # what was measured is kept even when a later stage fails
        print_table(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.out}")
    if not cuda:
        print("no CUDA device here: only the CPU half ran")


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['machine']}  torch {result['torch']}  cuda: {result['cuda_device'] or 'none'}")
    if "agreement" in result:
        a = result["agreement"]
        verdict = "PASS" if a["pass"] else "MISS"
        print(
            f"CUDA vs CPU on {a['rows']:,} rows: max |dp| {a['max_abs_probability_difference']:.2e} "
            f"(<= 1e-5: {verdict}), max |dgrad| {a['max_abs_gradient_difference']:.2e}"
        )
    print(f"{'batch':>6} {'cpu rows/s':>14} {'cuda rows/s':>14}")
    for size in BATCH_SIZES:
        gpu = result.get("cuda_rows_per_s", {}).get(size)
        print(f"{size:>6} {result['cpu_rows_per_s'][size]:>14,.0f} {(f'{gpu:,.0f}' if gpu else '-'):>14}")
    if "service_on_cuda" in result:
        print("service on CUDA, 256-user /score:", json.dumps(result["service_on_cuda"]))


if __name__ == "__main__":
    main()
