"""The scoring pipeline against a real Redis: batched answers equal single ones; a job keeps its model."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aredis
from prometheus_client import REGISTRY

from app.clock import FixedClock
from app.features.online import OnlineFeatureStore
from app.model.bundle import load_bundle
from app.model.postprocess import PlattCalibration
from app.model.results import ScoreResult
from app.model.scorer import ChurnModel
from app.model.scoring import ScoredBatch, ScoringService
from app.schemas import Event
from tests.helpers import T, before, event
from tests.test_online_store import PSEUDONYMS

STORE = Path(__file__).resolve().parents[1] / "model_store"
USERS = [f"s{i}" for i in range(12)]


@pytest.fixture(scope="module")
def model() -> ChurnModel:
    return ChurnModel(load_bundle(STORE), "cpu")


def other_model(model: ChurnModel) -> ChurnModel:
    """The same network with another calibration and version: its probabilities differ."""
    calibration = PlattCalibration(model.bundle.calibration.slope, model.bundle.calibration.intercept + 1.5)
    return ChurnModel(dataclasses.replace(model.bundle, version="other", calibration=calibration), "cpu")


@asynccontextmanager
async def service(
    redis_url: str, model: ChurnModel, max_delay_s: float = 0.002
) -> AsyncIterator[ScoringService]:
    redis = aredis.Redis.from_url(redis_url)
    store = OnlineFeatureStore(redis, "test", 10**9, 0, 400, pseudonyms=PSEUDONYMS)
    events = [
        event(u, "purchase", before(days=3 * i + 1), f"{u}-p", amount=7.0 + i) for i, u in enumerate(USERS)
    ]
    await store.apply([Event.model_validate(e) for e in events], T)
    scoring = ScoringService(
        store,
        model,
        FixedClock(T),
        max_rows=2048,
        max_delay_s=max_delay_s,
        queue_max_rows=8192,
        deadline_s=5.0,
        explain_top_k=3,
    )
    await scoring.start()
    try:
        yield scoring
    finally:
        await scoring.stop()
        await redis.aclose()


def batch_count() -> float:
    return REGISTRY.get_sample_value("churn_batch_rows_count") or 0.0


def probabilities(result: ScoreResult) -> dict[str, float]:
    return {r["user_id"]: r["churn_probability"] for r in result.results}


def test_batched_requests_get_the_answers_of_scoring_alone(redis_url: str, model: ChurnModel) -> None:
    async def main() -> tuple[list[ScoreResult], list[ScoreResult]]:
        async with service(redis_url, model) as scoring:
            alone = [await scoring.score([u], explain=True) for u in USERS]
            together = await asyncio.gather(
                *(scoring.score([u, "nobody"], explain=i % 2 == 0) for i, u in enumerate(USERS))
            )
        return alone, list(together)

    alone, together = asyncio.run(main())
    for i, (single, pair) in enumerate(zip(alone, together, strict=True)):
        assert [r["user_id"] for r in pair.results] == [USERS[i], "nobody"]
        mine = pair.results[0]
        assert mine["churn_probability"] == pytest.approx(
            single.results[0]["churn_probability"], abs=1e-6
        )  # float32 rows
        assert (mine["risk_tier"], mine["segment"], mine["known_user"]) == (
            single.results[0]["risk_tier"],
            single.results[0]["segment"],
            True,
        )
        assert pair.results[1]["known_user"] is False
        # Reasons only for the jobs that asked, even when the batch computed them for others.
        assert (mine["reasons"] is not None) == (i % 2 == 0)
        if mine["reasons"] is not None:
            expected = single.results[0]["reasons"] or []
            assert [r["feature"] for r in mine["reasons"]] == [r["feature"] for r in expected]
            assert [r["contribution"] for r in mine["reasons"]] == pytest.approx(
                [r["contribution"] for r in expected], abs=1e-6
            )


def test_a_job_keeps_the_model_it_was_admitted_with_across_a_swap(redis_url: str, model: ChurnModel) -> None:
    swapped_in = other_model(model)

    async def main() -> tuple[ScoreResult, ScoreResult, ScoreResult, ScoreResult]:
        async with service(redis_url, model, max_delay_s=0.05) as scoring:
            batches_before = batch_count()
            # Both admitted in the same event-loop turn, so they share a batch, with a swap between.
            admitted_before = scoring.submit(USERS[:4], explain=False)
            scoring.swap_model(swapped_in)
            admitted_after = scoring.submit(USERS[:4], explain=False)
            before_swap, after_swap = await admitted_before.future, await admitted_after.future
            batches = batch_count() - batches_before
        async with service(redis_url, model) as reference:
            old = await reference.score(USERS[:4], explain=False)
        async with service(redis_url, swapped_in) as reference:
            new = await reference.score(USERS[:4], explain=False)
        assert batches == 1  # both jobs shared one batch, with two models in it
        return before_swap, after_swap, old, new

    before_swap, after_swap, old, new = asyncio.run(main())
    assert before_swap.model_version == model.version and after_swap.model_version == "other"
    assert probabilities(before_swap) == pytest.approx(probabilities(old), abs=1e-12)
    assert probabilities(after_swap) == pytest.approx(probabilities(new), abs=1e-12)
    assert probabilities(before_swap) != pytest.approx(probabilities(after_swap), abs=1e-3)


def test_observers_see_every_scored_row_and_cannot_fail_a_batch(redis_url: str, model: ChurnModel) -> None:
    seen: list[ScoredBatch] = []

    def broken(batch: ScoredBatch) -> None:
        raise RuntimeError("an observer's bug")

    async def main() -> list[ScoreResult]:
        async with service(redis_url, model) as scoring:
            scoring.observe(broken)
            scoring.observe(seen.append)
            return list(await asyncio.gather(*(scoring.score([u], explain=False) for u in USERS)))

    answers = asyncio.run(main())
    assert all(len(answer.results) == 1 for answer in answers)  # the broken observer cost nothing
    observed = {u: p for b in seen for u, p in zip(b.user_ids, b.scored.probability.tolist(), strict=True)}
    assert observed == {u: p for a in answers for u, p in probabilities(a).items()}
    assert all(b.raw.shape == (len(b.user_ids), model.engine.n_features) for b in seen)
    assert {b.model.version for b in seen} == {model.version}
