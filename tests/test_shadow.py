"""A shadow model against a real server: it scores the served batches' rows, its agreement with the
served model is in /model and the metrics, and the answers are the same with or without it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.bundles import AS_OF, ingest, model_store, simulated_events
from tests.live import live_server

Answers = dict[str, tuple[float, str]]


def score_all(http: httpx.Client, users: list[str]) -> Answers:
    answers: Answers = {}
    for start in range(0, len(users), 100):
        body = {"user_ids": users[start : start + 100], "explain": False}
        for row in http.post("/score", json=body).json()["results"]:
            answers[row["user_id"]] = (row["churn_probability"], row["risk_tier"])
    return answers


def shadow_after(http: httpx.Client, rows: int) -> dict[str, Any]:
    """/model's shadow once its window holds `rows` rows (the shadow scores in a task of its own)."""
    deadline = time.monotonic() + 30
    while True:
        shadow: dict[str, Any] = http.get("/model").json()["shadow"]
        if shadow["rows"] >= rows and not shadow["rows_pending"]:
            return shadow
        assert time.monotonic() < deadline, shadow
        time.sleep(0.05)


def gauges(http: httpx.Client) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("version", "")): sample.value
        for family in text_string_to_metric_families(http.get("/metrics").text)
        if family.name.startswith("churn_shadow")
        for sample in family.samples
    }


def test_a_twin_agrees_fully_a_shifted_candidate_less_and_answers_never_change(
    redis_url: str, tmp_path: Path
) -> None:
    store, served, shifted = model_store(tmp_path)
    with live_server(redis_url, AS_OF, model_store=store) as server, server.client() as http:
        users = ingest(http, simulated_events(seed=5, users=300))
        alone = score_all(http, users)
        assert http.post("/admin/model/shadow", json={"version": served}).json()["version"] == served
        assert score_all(http, users) == alone
        twin = shadow_after(http, len(users))
        assert twin["spearman"] == pytest.approx(1.0, abs=1e-6)
        assert twin["tier_agreement"] == 1.0
        assert twin["mean_abs_difference"] < 1e-6

        candidate = http.post("/admin/model/shadow", json={"version": shifted}).json()
        assert candidate["version"] == shifted and candidate["rows"] == 0  # a new shadow, a new window
        assert score_all(http, users) == alone
        moved = shadow_after(http, len(users))
        # A higher intercept moves every probability up and keeps their order.
        assert moved["spearman"] == pytest.approx(1.0, abs=1e-6)
        assert moved["tier_agreement"] < 0.9
        assert moved["mean_abs_difference"] > 0.05
        exported = gauges(http)
        assert exported[("churn_shadow_model_info", shifted)] == 1
        assert exported[("churn_shadow_model_info", served)] == 0
        assert exported[("churn_shadow_tier_agreement_ratio", "")] == pytest.approx(moved["tier_agreement"])
        assert exported[("churn_shadow_probability_mean_abs_difference", "")] == pytest.approx(
            moved["mean_abs_difference"]
        )

        assert http.delete("/admin/model/shadow").json() == {"dropped": shifted}
        assert http.delete("/admin/model/shadow").json() == {"dropped": None}
        assert http.get("/model").json()["shadow"] is None
        assert score_all(http, users) == alone
        assert gauges(http)[("churn_shadow_model_info", shifted)] == 0


def test_a_shadow_named_in_the_settings_runs_from_the_start_and_a_bad_one_is_noted(
    redis_url: str, tmp_path: Path
) -> None:
    store, served, shifted = model_store(tmp_path)
    with live_server(redis_url, model_store=store, shadow_version=shifted) as server, server.client() as http:
        described = http.get("/model").json()
        assert described["version"] == served and described["shadow"]["version"] == shifted
    with (
        live_server(redis_url, model_store=store, shadow_version="nowhere") as server,
        server.client() as http,
    ):
        described = http.get("/model").json()
        assert described["shadow"] is None and "no bundle 'nowhere'" in described["shadow_error"]
        assert http.post("/score", json={"user_ids": ["u-1"]}).json()["model_version"] == served


def test_mean_ranks_are_scipys_average_ranks() -> None:
    from scipy.stats import rankdata

    from app.model.shadow import mean_ranks

    rng = np.random.default_rng(3)
    for values in (rng.random(500), rng.integers(0, 7, 500).astype(float), np.array([2.0]), np.zeros(4)):
        np.testing.assert_allclose(mean_ranks(values), rankdata(values))
