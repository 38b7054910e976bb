"""Every Prometheus metric of the service, declared once, with unit-suffixed names."""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

# 0.5 ms .. 1 s, with an edge at 10 ms (the latency objective for /score).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))

REQUEST_SECONDS = Histogram(
    "churn_http_request_duration_seconds",
    "HTTP request latency by route template, method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
BATCH_ROWS = Histogram("churn_batch_rows", "Rows per forward pass of the model.", buckets=ROW_BUCKETS)
QUEUE_WAIT_SECONDS = Histogram(
    "churn_queue_wait_seconds", "Time a scoring job waited for its batch.", buckets=LATENCY_BUCKETS
)
QUEUE_ROWS = Gauge(
    "churn_queue_rows",
    "Users admitted and waiting for a batch, as each batch is taken.",
    multiprocess_mode="livesum",
)
JOBS_SKIPPED = Counter(
    "churn_jobs_skipped_total", "Scoring jobs dropped before inference, by reason.", ["reason"]
)
FEATURE_SECONDS = Histogram(
    "churn_feature_seconds", "Decoding records and computing features for one batch.", buckets=LATENCY_BUCKETS
)
INFERENCE_SECONDS = Histogram(
    "churn_inference_seconds",
    "Scaling, forward (and explanation) and post-processing of one batch.",
    buckets=LATENCY_BUCKETS,
)
REDIS_SECONDS = Histogram(
    "churn_redis_roundtrip_seconds",
    "Redis round-trip time by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
EVENTS = Counter(
    "churn_events_total", "Events received, by outcome and rejection reason.", ["outcome", "reason"]
)
# By model version too, so the share of high-risk answers can be compared across a model swap.
SCORES = Counter(
    "churn_scores_total", "Scores served, by risk tier and model version.", ["tier", "model_version"]
)
SCORE_PROBABILITY = Histogram(
    "churn_score_probability",
    "Served churn probabilities, for drift monitoring.",
    ["model_version"],
    buckets=PROBABILITY_BUCKETS,
)
MODEL_INFO = Gauge(
    "churn_model_info",
    "The model being served (value 1).",
    ["version", "horizon_days"],
    multiprocess_mode="max",
)

# Model operations (app/model/operations.py). With several workers each has its own windows: a gauge's
# multi-process mode reports the worst worker (max PSI and difference, min agreement).
MODEL_LOADS = Counter(
    "churn_model_loads_total", "Bundle loads by action (reload, shadow) and outcome.", ["action", "outcome"]
)
SHADOW_INFO = Gauge(
    "churn_shadow_model_info",
    "The shadow model scored beside the served one (1; 0 once dropped).",
    ["version"],
    multiprocess_mode="max",
)
SHADOW_SPEARMAN = Gauge(
    "churn_shadow_spearman",
    "Spearman rank correlation of shadow and served probabilities (window).",
    multiprocess_mode="min",
)
SHADOW_TIER_AGREEMENT = Gauge(
    "churn_shadow_tier_agreement_ratio",
    "Share of rows the shadow puts in the served tier (window).",
    multiprocess_mode="min",
)
SHADOW_MAD = Gauge(
    "churn_shadow_probability_mean_abs_difference",
    "Mean absolute difference of shadow and served probabilities (window).",
    multiprocess_mode="max",
)
SHADOW_WINDOW_ROWS = Gauge(
    "churn_shadow_window_rows", "Rows in the shadow's agreement window.", multiprocess_mode="min"
)
FEATURE_PSI = Gauge(
    "churn_feature_psi",
    "Population stability index of a feature: served window against training.",
    ["feature"],
    multiprocess_mode="max",
)
SCORE_PSI = Gauge(
    "churn_score_psi",
    "Population stability index of the served score against training.",
    multiprocess_mode="max",
)
DRIFT_WINDOW_ROWS = Gauge(
    "churn_drift_window_rows", "Served rows in the drift window.", multiprocess_mode="min"
)


# Requests answered 429 or 503, by the error code of the answer (app/api/errors.py): overload, a
# client's rate limit, Redis failing, ... Every code is created at start, so rate() works from zero.
REFUSAL_CODES = (
    "overloaded",
    "rate_limited",
    "redis_unavailable",
    "not_durable",
    "partial_write",
    "deadline_exceeded",
    "shutting_down",
)
REFUSALS = Counter(
    "churn_refusals_total", "Requests refused (429) or failed (503), by error code.", ["error"]
)
for _code in REFUSAL_CODES:
    REFUSALS.labels(_code)
# The last readiness verdict (each /readyz and each /metrics scrape re-checks): with several workers,
# the most recent one of any worker.
READY = Gauge(
    "churn_ready", "1 when the service is ready (model, Redis, not draining).", multiprocess_mode="mostrecent"
)
READY_CHECKS = Gauge(
    "churn_ready_check",
    "Each readiness check: 1 passed, 0 failed.",
    ["check"],
    multiprocess_mode="mostrecent",
)
WARNINGS = Counter(
    "churn_warnings_total",
    "High-risk users offered to the CRM warnings, by outcome: sent; cooling_down (warned within the "
    "cool-down); queue_full, redis_error (dropped: warned when next scored high-risk).",
    ["outcome"],
)
WARNING_ACTIONS = Counter(
    "churn_warning_actions_total", "Warnings sent, by the action they carry and group.", ["action", "group"]
)
WARNING_QUEUE = Gauge("churn_warning_queue_users", "Warnings queued for Redis.", multiprocess_mode="livesum")
SWEEPS = Counter(
    "churn_sweeps_total",
    "Sweeps over the user directory by outcome: completed; failed (Redis failed midway: the next turn "
    "starts over).",
    ["outcome"],
)
SWEEP_USERS = Counter("churn_sweep_users_total", "Users scored by sweeps over the user directory.")
SWEEP_LAST_SECONDS = Gauge(
    "churn_sweep_last_duration_seconds",
    "How long the last completed sweep took.",
    multiprocess_mode="mostrecent",
)


def observe_many(histogram: Histogram, values: npt.NDArray[np.float64]) -> None:
    """Observe a whole batch at once: one bucket count per bucket instead of a call per value.

    prometheus_client has no bulk observe; this adds to the same bucket and sum values that
    `observe` would, which is what the exposition (and multi-process mode) reads."""
    upper = np.asarray(histogram._upper_bounds)
    counts = np.bincount(np.searchsorted(upper, values, side="left"), minlength=len(upper))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(values.sum()))


_ACCEPTED = EVENTS.labels("accepted", "")
_DUPLICATE = EVENTS.labels("duplicate", "")


def count_events(accepted: int, duplicates: int, rejection_reasons: list[str]) -> None:
    _ACCEPTED.inc(accepted)
    _DUPLICATE.inc(duplicates)
    for reason in rejection_reasons:
        EVENTS.labels("rejected", reason).inc()


@functools.cache
def request_seconds(route: str, method: str, status: int) -> Any:
    """The latency histogram's child for one label set, looked up once (labels() costs per call)."""
    return REQUEST_SECONDS.labels(route, method, str(status))


def multiprocess_registry() -> CollectorRegistry | None:
    """With several workers (PROMETHEUS_MULTIPROC_DIR set), a registry that sums every worker's files."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
