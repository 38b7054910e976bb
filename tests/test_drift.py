"""Drift: PSI of simulated replays through the real feature function against a training distribution,
the served window as an observer, the service's gauges and /model/drift, and `python -m app drift`."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.cli import main
from app.features import spec
from app.features.offline import write_event_log
from app.model.bundle import BundleError, set_current
from app.model.drift import DEFAULT_BINS, Reference, distribution, parse_reference, reference_of
from app.model.drift_monitor import DriftMonitor
from app.model.scorer import ChurnModel
from app.model.scoring import ScoredBatch
from app.model.shadow import predict
from tests.bundles import (
    AS_OF,
    committed,
    feature_rows,
    ingest,
    model_store,
    simulated_events,
    variant,
    with_distribution,
)
from tests.live import live_server

AMOUNTS = ("purchase_amount_30d", "purchase_amount_90d", "lifetime_spend")
COUNTS = ("session_start_count_30d", "page_view_count_30d", "tenure_days")
Table = dict[str, float]


@pytest.fixture(scope="module")
def training() -> tuple[ChurnModel, Reference]:
    """The committed model with the distribution of a simulated population (seed 1) as its training's."""
    model = ChurnModel(committed(), "cpu")
    raw = feature_rows(simulated_events(seed=1, users=1_500))
    probability, _ = predict(model, raw)
    stored = distribution(raw, probability)
    bundle = dataclasses.replace(model.bundle, distribution=stored)
    return ChurnModel(bundle, "cpu"), parse_reference(stored)


@pytest.fixture(scope="module")
def replay() -> pd.DataFrame:
    """Another population of the same simulator (seed 2): no drift but sampling noise."""
    return simulated_events(seed=2, users=1_500)


def psi_of(model: ChurnModel, reference: Reference, raw: np.ndarray) -> Table:  # type: ignore[type-arg]
    probability, _ = predict(model, raw)
    shares = reference.counts_of(reference.bin_rows(raw, probability)) / len(raw)
    return dict(zip(reference.names, reference.psi(shares).tolist(), strict=True))


def spend_three_times_as_much(events: pd.DataFrame) -> pd.DataFrame:
    return events.assign(amount=events["amount"] * 3)


def test_an_unshifted_replay_stays_under_0_1_and_shifted_ones_go_over_0_2(
    training: tuple[ChurnModel, Reference], replay: pd.DataFrame
) -> None:
    model, reference = training
    same = psi_of(model, reference, feature_rows(replay))
    assert max(same.values()) < 0.1, sorted(same.items(), key=lambda item: -item[1])[:3]

    pricier = psi_of(model, reference, feature_rows(spend_three_times_as_much(replay)))
    assert all(pricier[name] > 0.2 for name in AMOUNTS), {name: pricier[name] for name in AMOUNTS}
    assert all(pricier[name] < 0.1 for name in COUNTS)  # what the change does not touch stays put

    # The event feed stopped 45 days ago: every user looks absent, and the model says they leave.
    silent = psi_of(model, reference, feature_rows(replay, AS_OF + timedelta(days=45)))
    assert silent["days_since_last_event"] > 0.2 and silent["score"] > 0.2


# Batches of 300 rows are binned as they come; batches of 7 are kept and binned a few hundred rows at a
# time, or when the PSI is read.
@pytest.mark.parametrize("batch", [300, 7])
def test_the_window_holds_the_psi_of_the_last_rows_of_known_users(
    training: tuple[ChurnModel, Reference], replay: pd.DataFrame, batch: int
) -> None:
    model, reference = training
    raw = feature_rows(spend_three_times_as_much(replay))
    monitor = DriftMonitor(window_rows=1_000, rows_per_batch=400)
    monitor.follow(model)
    fed = []
    for start in range(0, len(raw), batch):
        rows = raw[start : start + batch]
        known = np.ones(len(rows), dtype=bool)
        known[::10] = False  # unknown users are scored on empty features: not the population
        scored = model.score(rows, known, explain=False, top_k=3)
        monitor.observe(ScoredBatch([f"u{i}" for i in range(len(rows))], rows, scored, model, AS_OF))
        fed.append(rows[known])
    other = ChurnModel(committed(), "cpu")  # a batch of a model swapped out is not counted
    scored = other.score(raw[:50], np.ones(50, dtype=bool), explain=False, top_k=3)
    monitor.observe(ScoredBatch(["x"] * 50, raw[:50], scored, other, AS_OF))

    last = np.concatenate(fed)[-1_000:]
    expected = psi_of(model, reference, last)
    served = monitor.psi()
    assert served is not None and served == pytest.approx(expected, abs=1e-9)
    described = monitor.describe(full=True)
    assert described["rows"] == 1_000 and set(AMOUNTS) <= set(described["features_over_shift"])
    series = described["series"]["lifetime_spend"]
    assert len(series["training_shares"]) == len(series["served_shares"]) == len(series["edges"]) + 1
    for name in AMOUNTS:
        gauge = REGISTRY.get_sample_value("churn_feature_psi", {"feature": name})
        assert gauge == pytest.approx(expected[name])
    assert REGISTRY.get_sample_value("churn_score_psi") == pytest.approx(expected["score"])


def test_the_distribution_has_at_most_the_bins_asked_for_and_merges_tied_edges() -> None:
    rng = np.random.default_rng(0)
    raw = np.zeros((1_000, len(spec.FEATURE_NAMES)))
    raw[:, 0] = rng.normal(size=1_000)  # continuous: every bin
    raw[:900, 1] = 0  # mostly zero: the zero quantiles merge into one bin
    raw[900:, 1] = rng.integers(1, 5, size=100)
    stored = distribution(raw, rng.random(1_000))
    first, second = (stored["features"][spec.FEATURE_NAMES[i]] for i in (0, 1))
    assert len(first["edges"]) == DEFAULT_BINS - 1 and first["shares"] == pytest.approx([0.1] * 10)
    assert second["edges"][0] == 0 and second["shares"][0] == pytest.approx(0.9)


def metric_values(text: str, name: str) -> dict[str, float]:
    return {
        sample.labels.get("feature", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_the_service_exports_the_psi_of_what_it_serves(redis_url: str, tmp_path: Path) -> None:
    store, _, _ = model_store(tmp_path)
    version = with_distribution(store, "with-distribution")
    (store / "CURRENT").write_text(version + "\n")
    with (
        live_server(redis_url, AS_OF, model_store=store, monitor_window_rows=1_000) as server,
        server.client() as http,
    ):
        users = ingest(http, simulated_events(seed=3, users=600))

        def score_everyone() -> None:
            for start in range(0, len(users), 200):
                body = {"user_ids": users[start : start + 200], "explain": False}
                assert http.post("/score", json=body).status_code == 200

        score_everyone()
        steady = http.get("/model/drift").json()
        assert steady["enabled"] and steady["rows"] == len(users)
        assert max(s["psi"] for s in steady["series"].values()) < 0.1
        assert steady["features_over_shift"] == []
        assert http.get("/model").json()["drift"]["score_psi"] == steady["score_psi"]

        server.clock.set(AS_OF + timedelta(days=45))  # no event for 45 days: the feed stopped
        assert http.post("/admin/model", json={"version": version}).status_code == 200  # empty window
        score_everyone()
        silent = http.get("/model/drift").json()
        gauges = metric_values(http.get("/metrics").text, "churn_feature_psi")
        score_gauge = metric_values(http.get("/metrics").text, "churn_score_psi")[""]
    assert "days_since_last_event" in silent["features_over_shift"]
    assert gauges["days_since_last_event"] == pytest.approx(silent["series"]["days_since_last_event"]["psi"])
    assert gauges["days_since_last_event"] > 0.2 and score_gauge > 0.2


def test_a_bundle_without_a_distribution_serves_with_drift_off_and_a_broken_one_is_refused(
    redis_url: str, tmp_path: Path
) -> None:
    store, _, _ = model_store(tmp_path)
    served = variant(store, "without-distribution")  # saved without the optional files
    set_current(store, served)
    broken = variant(store, "broken-distribution", extra_files={"distribution.json": b'{"format": 1}\n'})
    with live_server(redis_url, model_store=store) as server, server.client() as http:
        drift = http.get("/model").json()["drift"]
        assert drift["enabled"] is False and "has no distribution.json" in drift["note"]
        assert drift["score_psi"] is None
        assert math.isnan(metric_values(http.get("/metrics").text, "churn_score_psi")[""])
        refused = http.post("/admin/model", json={"version": broken})
        assert refused.status_code == 409 and "check 'distribution.json' failed" in refused.json()["message"]
        assert http.get("/model").json()["version"] == served


def test_the_drift_command_reports_and_plots_a_replay(
    tmp_path: Path, replay: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _, _ = model_store(tmp_path)
    version = with_distribution(store, "with-distribution")
    steady_log, pricier_log = tmp_path / "steady.parquet", tmp_path / "pricier.csv"
    write_event_log(replay, steady_log)
    write_event_log(spend_three_times_as_much(replay), pricier_log)
    as_of = AS_OF.isoformat()

    main(["drift", "--bundle", str(store / version), "--events", str(steady_log), "--as-of", as_of,
          "--out", str(tmp_path / "steady"), "--fail-above", "0.2"])  # fmt: skip
    steady = capsys.readouterr().out
    assert "0 shifted" in steady and f"against the training distribution of {version}" in steady
    for plot in ("psi.png", "shares.png"):
        assert (tmp_path / "steady" / plot).read_bytes().startswith(b"\x89PNG")

    with pytest.raises(SystemExit, match=r"the largest PSI, .* is above 0\.2"):
        main(["drift", "--bundle", str(store / version), "--events", str(pricier_log), "--as-of", as_of,
              "--out", str(tmp_path / "pricier"), "--fail-above", "0.2"])  # fmt: skip
    lines = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()[5:] if line}
    assert all(lines[name] == "shift" for name in AMOUNTS)

    plain = variant(store, "without-distribution")  # saved without the optional files
    with pytest.raises(SystemExit, match=r"has no distribution\.json"):
        main(["drift", "--bundle", str(store / plain), "--events", str(steady_log)])


def test_a_distribution_of_other_features_is_malformed() -> None:
    stored = distribution(np.zeros((10, len(spec.FEATURE_NAMES))), np.zeros(10))
    del stored["features"][spec.FEATURE_NAMES[-1]]
    bundle = dataclasses.replace(committed(), distribution=stored)
    with pytest.raises(BundleError, match=r"its features differ from those of app/features/spec\.py"):
        reference_of(bundle)
