"""The project's Prometheus configuration against the running service, end to end.

    python -m bench.prometheus_e2e   (or: make prometheus-check; about 30 s; needs `prometheus` on PATH)

Starts redis-server and the service (two workers: Prometheus multi-process mode) on loopback, then a real
Prometheus with deploy/prometheus/prometheus.yml and alerts.yml, rewritten only where a deployment
differs from this machine: the scrape target is the service's loopback port instead of the name `churn`,
the key file is a temporary one holding a key with the `metrics` scope alone, and the intervals are 1 s so
that rates exist within seconds. While a client sends events and scores, it queries Prometheus's HTTP API
until the /score p99 latency and the events rate return data, prints them, and exits non-zero if they do
not within the time limit, or if the target is not healthy or the alert rules did not load.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from app.api.auth import new_key
from app.redis_server import free_port
from bench import systems
from bench.procs import CLIENT_CORE, Procs, install_sigterm_handler, request, wait_ready

PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
WORKERS = 2
WAIT_FOR_DATA_S = 90.0
P99_SCORE = (
    "histogram_quantile(0.99, sum by (le) "
    '(rate(churn_http_request_duration_seconds_bucket{route="/score"}[30s])))'
)
EVENTS_RATE = "sum by (outcome) (rate(churn_events_total[30s]))"


def local_config(target: str, key_file: Path) -> dict[str, Any]:
    """The project's configuration, pointed at one loopback target with a key file, scraped every second."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    [job] = config["scrape_configs"]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [target]}]
    job["authorization"]["credentials_file"] = str(key_file)
    return config


def prometheus_api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus answered {body}")
    return body["data"]


def query(port: int, promql: str) -> list[tuple[dict[str, str], float]]:
    """The instant vector's (labels, value) pairs with a finite value."""
    data = prometheus_api(port, "query", query=promql)
    pairs = [(item["metric"], float(item["value"][1])) for item in data["result"]]
    return [(labels, value) for labels, value in pairs if math.isfinite(value)]


class Traffic(threading.Thread):
    """Events for a few users and scores for them, in a loop, until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stopping = threading.Event()
        # Answers by status, with the error code of any that is not 200 ("503 redis_unavailable").
        self.statuses: dict[str, dict[str, int]] = {"/events": {}, "/score": {}}

    def run(self) -> None:
        batch = 0
        while not self.stopping.is_set():
            at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
            events = [
                {"event_id": f"e2e-{batch}-{i}", "user_id": f"u{i % 20}", "type": "page_view", "ts": at}
                for i in range(50)
            ]
            self._count("/events", *request("POST", self.port, "/events", {"events": events}))
            users = [f"u{(batch + i) % 20}" for i in range(8)]
            self._count("/score", *request("POST", self.port, "/score", {"user_ids": users}))
            batch += 1
            time.sleep(0.02)

    def _count(self, path: str, status: int, body: Any) -> None:
        error = body.get("error", "") if isinstance(body, dict) and status != 200 else ""
        key = f"{status} {error}".strip()
        self.statuses[path][key] = self.statuses[path].get(key, 0) + 1


def wait_for_data(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    deadline = time.monotonic() + WAIT_FOR_DATA_S
    results: dict[str, list[tuple[dict[str, str], float]]] = {}
    while time.monotonic() < deadline:
        results = {promql: query(port, promql) for promql in (P99_SCORE, EVENTS_RATE)}
        if all(results.values()):
            return results
        time.sleep(1)
    raise SystemExit(f"FAIL: no data within {WAIT_FOR_DATA_S:.0f} s: {results}")


def check_target_and_rules(port: int) -> None:
    [target] = prometheus_api(port, "targets")["activeTargets"]
    print(f"target {target['scrapeUrl']}: health {target['health']} {target['lastError']}".rstrip())
    if target["health"] != "up":
        raise SystemExit("FAIL: the service's target is not up")
    rules = [rule for group in prometheus_api(port, "rules")["groups"] for rule in group["rules"]]
    alerts = sorted(rule["name"] for rule in rules if rule["type"] == "alerting")
    unhealthy = [rule["name"] for rule in rules if rule["health"] != "ok"]
    print(f"{len(alerts)} alert rules loaded: {', '.join(alerts)}")
    firing = [rule["name"] for rule in rules if rule.get("state") == "firing"]
    print(f"firing now: {', '.join(firing) or 'none'}")
    if not alerts or unhealthy:
        raise SystemExit(f"FAIL: alert rules missing or failing to evaluate: {unhealthy}")


def main() -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        sys.exit("prometheus is not on PATH: apt-get install prometheus (Debian/Ubuntu), then retry")
    install_sigterm_handler()
    with tempfile.TemporaryDirectory(prefix="churn-prometheus-") as tmp, ExitStack() as cleanup:
        folder = Path(tmp)
        procs = Procs(folder)
        cleanup.callback(procs.stop_all)
        try:
            _, redis_port = systems.start_redis(procs)
            # Prometheus gets a key with the metrics scope alone, as in a deployment.
            key, entry = new_key("prometheus", ["metrics"])
            key_file = folder / "metrics_key"
            key_file.write_text(key + "\n")
            keys = [*json.loads(os.environ["CHURN_BENCH_API_KEYS"]), entry.model_dump()]
            settings = {"CHURN_API_KEYS": json.dumps(keys)}
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            service = cleanup.enter_context(systems.ours(procs, redis_url, True, WORKERS, settings=settings))
            config = local_config(f"127.0.0.1:{service.port}", key_file)
            (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
            shutil.copy(PROMETHEUS_DIR / "alerts.yml", folder)
            prometheus_port = free_port()
            command = [
                binary, f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn",
            ]  # fmt: skip
            prometheus = procs.start("prometheus", command, CLIENT_CORE)
            wait_ready(prometheus, prometheus_port, "/-/ready")
            traffic = Traffic(service.port)
            traffic.start()
            started = time.monotonic()
            try:
                results = wait_for_data(prometheus_port)
            finally:
                traffic.stopping.set()
                traffic.join(10)
            print(f"Prometheus {prometheus_port} scraping the service on {service.port} ({WORKERS} workers)")
            print(f"requests sent, by status: {traffic.statuses}")
            print(f"data after {time.monotonic() - started:.1f} s of traffic")
            check_target_and_rules(prometheus_port)
            if not all("200" in by_status for by_status in traffic.statuses.values()):
                raise SystemExit("FAIL: the traffic got no 200 answer")
        except BaseException:
            procs.print_logs()
            raise
    for promql, pairs in results.items():
        print(f"\n{promql}")
        for labels, value in pairs:
            print(f"  {labels or '{}'} = {value:.6g}")
    print("\nPASS: Prometheus scraped the service and answered both queries")


if __name__ == "__main__":
    main()
