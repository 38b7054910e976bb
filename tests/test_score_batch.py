"""Scoring a file of user ids (`score-batch`): the same answers as POST /score for the same users at the
same time, in Parquet or CSV, with ids that are not ids named by line."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pa_parquet
import pytest

from app.bulk.commands import run_score_batch
from app.bulk.score_batch import REASON_SEPARATOR, OutputFile, ScoreSummary, reason_names
from app.features import spec
from app.main import load_model
from app.model.results import NO_HISTORY_NAME, TopReasons
from tests.helpers import T, before, event
from tests.live import live_server, settings_for

EVENTS = [
    event("alice", "purchase", before(days=40), "1", amount=30.0, items=1),
    event("alice", "page_view", before(days=2), "2"),
    event("bob", "session_start", before(days=1), "3"),
    event("bob", "purchase", before(days=1), "4", amount=5.5),
    event("carol", "review", before(days=80), "5", rating=1),
    event("carol", "support_contact", before(days=70), "6"),
]
USERS = ["alice", "bob", "carol", "stranger"]


def score_file(
    redis_url: str, users: Path, out: Path, column: str = "user_id", batch: int = 2
) -> ScoreSummary:
    settings = settings_for(redis_url)
    model = load_model(settings)
    output = OutputFile(out)

    async def run() -> ScoreSummary:
        return await run_score_batch(settings, model, users, output, column, batch, T)

    try:
        return asyncio.run(run())
    finally:
        output.close()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_answers_equal_those_of_score(redis_url: str, tmp_path: Path, suffix: str) -> None:
    with live_server(redis_url, now=T) as server, server.client() as http:
        assert http.post("/events", json={"events": EVENTS}).json()["accepted"] == len(EVENTS)
        served = http.post("/score", json={"user_ids": USERS}).json()
    users = tmp_path / "users.txt"
    users.write_text("\n".join(USERS) + "\n")
    out = tmp_path / f"scores{suffix}"
    # Batches of 2 against one of 4: float32 sums in another order differ in the last bits only.
    summary = score_file(redis_url, users, out)
    table = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == [
        "user_id",
        "churn_probability",
        "risk_tier",
        "segment",
        "known_user",
        "top_reasons",
        "model_version",
    ]
    assert (summary.users, summary.known, summary.refused) == (4, 3, 0)
    assert list(table["user_id"]) == USERS
    for row, answer in zip(table.to_dict("records"), served["results"], strict=True):
        assert row["churn_probability"] == pytest.approx(answer["churn_probability"], rel=1e-6)
        assert (row["risk_tier"], row["segment"], row["known_user"]) == (
            answer["risk_tier"],
            answer["segment"],
            answer["known_user"],
        )
        reasons = REASON_SEPARATOR.join(reason["feature"] for reason in answer["reasons"])
        assert row["top_reasons"] == reasons
        assert row["model_version"] == served["model_version"]
    assert any(table["top_reasons"])  # some user has reasons, so the comparison says something


def test_a_csv_column_of_ids_and_ids_that_are_not_ids(redis_url: str, tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("shop,customer\nx,alice\ny,\nz,bad\tid\nw,bob\n")
    out = tmp_path / "scores.parquet"
    summary = score_file(redis_url, users, out, column="customer")
    assert pa_parquet.read_table(out).column("user_id").to_pylist() == ["alice", "bob"]
    assert (summary.users, summary.refused) == (2, 1)
    assert summary.examples == ["line 4: not 1-128 printable ASCII characters"]


def test_the_command_writes_the_file_and_refuses_a_wrong_extension(redis_url: str, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("alice\n\nbob\n")
    env = {
        **os.environ,
        "CHURN_REDIS_URL": redis_url,
        "CHURN_ID_SECRET": "tests-only-id-secret-of-at-least-32-bytes",
        "CHURN_DEVICE": "cpu",
    }
    out = tmp_path / "scores.csv"
    command = [sys.executable, "-m", "app", "score-batch", "--users", str(users), "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 users scored" in done.stdout and "unknown 2" in done.stdout
    assert list(pd.read_csv(out)["user_id"]) == ["alice", "bob"]
    wrong = subprocess.run(
        [*command[:-1], str(tmp_path / "scores.json")], env=env, capture_output=True, text=True
    )
    assert wrong.returncode == 1 and "must end in .parquet or .csv" in wrong.stderr


def test_reason_names_join_the_positive_reasons_strongest_first() -> None:
    features = np.array([[3, 1, 7], [3, 1, 7], [3, 1, 7], [0, 2, 4]])
    shares = np.array([[0.9, 0.5, 0.1], [0.9, -0.1, -0.2], [-0.1, -0.2, -0.3], [0.4, 0.3, 0.2]])
    top = TopReasons(features, np.zeros((4, 3)), shares, no_history=np.array([False, False, False, True]))
    names = spec.FEATURE_NAMES
    expected = [REASON_SEPARATOR.join([names[3], names[1], names[7]]), names[3], "", NO_HISTORY_NAME]
    assert reason_names(top).to_pylist() == expected
    assert reason_names(dataclasses.replace(top, no_history=None)).to_pylist()[3].startswith(names[0])
