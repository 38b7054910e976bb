"""Every Prometheus metric of the service, declared once, with unit-suffixed names."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
QUEUE_ROWS = Gauge("churn_queue_rows", "Rows waiting for the model.")
JOBS_SKIPPED = Counter(
    "churn_jobs_skipped_total", "Scoring jobs dropped before inference, by reason.", ["reason"]
)
INFERENCE_SECONDS = Histogram(
    "churn_inference_seconds", "Forward (and explanation) time of one batch.", buckets=LATENCY_BUCKETS
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
SCORES = Counter("churn_scores_total", "Scores served, by risk tier.", ["tier"])
SCORE_PROBABILITY = Histogram(
    "churn_score_probability",
    "Served churn probabilities, for drift monitoring.",
    ["model_version"],
    buckets=PROBABILITY_BUCKETS,
)
MODEL_INFO = Gauge("churn_model_info", "The model being served (value 1).", ["version", "horizon_days"])
