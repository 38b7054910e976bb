"""The metrics that the dashboard and the alert rules read are the ones the running service exports,
and the operational ones (readiness, refusals) say what happened."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.redis_server import RedisProcess
from tests.helpers import before, event
from tests.live import LiveServer, live_server

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
# Series that Prometheus makes itself, not the service; and labels it adds to every scraped series.
PROMETHEUS_OWN = {"up"}
TARGET_LABELS = {"instance", "job"}
SELECTOR = re.compile(r"\b((?:churn_[a-z0-9_]+)|up)\b(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "churn.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_queries() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def selectors(queries: list[str]) -> dict[str, set[str]]:
    """Every series name in the queries, with the label names their matchers use."""
    found: dict[str, set[str]] = {}
    for query in queries:
        for name, matchers in SELECTOR.findall(query):
            found.setdefault(name, set()).update(MATCHER.findall(matchers))
    return found


def scrape(server: LiveServer) -> dict[str, set[str]]:
    """Sample names (with _total, _bucket, _sum, _count as exported) and the label names of each."""
    with server.client() as http:
        text = http.get("/metrics").text
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_every_metric_in_the_dashboard_and_the_alerts_is_exported(redis_url: str) -> None:
    late = event("erin", "page_view", before(days=4_000), "e-late")
    events = [event("erin", "purchase", before(days=2), "e1", amount=12.5), late]
    with live_server(redis_url) as server, server.client() as http:
        for _ in range(2):  # accepted, then duplicates; the late one rejected both times
            assert http.post("/events", json={"events": events}).status_code == 200
        for users in (["erin"], ["erin", "nobody"]):
            assert http.post("/score", json={"user_ids": users}).status_code == 200
        assert http.get("/readyz").status_code == 200
        exported = scrape(server)

    used = selectors(dashboard_queries()) | selectors(alert_queries())
    dashboard_names = set(selectors(dashboard_queries()))
    # The extraction itself must see the families both files are about.
    assert {"churn_http_request_duration_seconds_bucket", "churn_scores_total", "churn_model_info"} <= (
        dashboard_names
    )
    assert {"churn_ready", "churn_ready_check", "churn_refusals_total"} <= set(selectors(alert_queries()))
    missing = sorted(set(used) - set(exported) - PROMETHEUS_OWN)
    assert not missing, f"not exported by the service: {missing}"
    for name, labels in used.items():
        if name in PROMETHEUS_OWN:
            continue
        unknown = labels - exported[name] - TARGET_LABELS
        assert not unknown, f"{name} has no label {sorted(unknown)}"


def test_scores_are_counted_by_tier_and_model_version(redis_url: str) -> None:
    with live_server(redis_url) as server, server.client() as http:
        version = http.get("/model").json()["version"]
        before_text = http.get("/metrics").text
        assert http.post("/score", json={"user_ids": ["p", "q", "r"]}).status_code == 200
        after_text = http.get("/metrics").text

    def scored(text: str) -> float:
        family = next(f for f in text_string_to_metric_families(text) if f.name == "churn_scores")
        return sum(
            s.value
            for s in family.samples
            if s.name == "churn_scores_total" and s.labels["model_version"] == version
        )

    assert scored(after_text) - scored(before_text) == 3


def gauge(text: str, name: str, **labels: str) -> float:
    family = next(f for f in text_string_to_metric_families(text) if f.name == name)
    return next(s.value for s in family.samples if labels.items() <= s.labels.items())


def refusals(text: str, error: str) -> float:
    family = next(f for f in text_string_to_metric_families(text) if f.name == "churn_refusals")
    return next(s.value for s in family.samples if s.name.endswith("_total") and s.labels["error"] == error)


def test_readiness_and_redis_refusals_are_exported_as_they_happen(tmp_path: Path) -> None:
    own = RedisProcess(tmp_path / "redis")
    own.start()
    try:
        with live_server(own.url, redis_timeout_s=0.25) as server, server.client() as http:
            up = http.get("/metrics").text
            assert gauge(up, "churn_ready") == 1 and gauge(up, "churn_ready_check", check="redis") == 1
            own.stop()
            assert http.post("/score", json={"user_ids": ["zed"]}).status_code == 503
            down = http.get("/metrics").text  # the scrape itself re-checks readiness
            assert gauge(down, "churn_ready") == 0
            assert gauge(down, "churn_ready_check", check="redis") == 0
            assert gauge(down, "churn_ready_check", check="model") == 1
            assert refusals(down, "redis_unavailable") >= refusals(up, "redis_unavailable") + 1
            own.start()
            assert gauge(http.get("/metrics").text, "churn_ready") == 1
    finally:
        own.stop()
