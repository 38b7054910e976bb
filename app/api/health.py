"""Liveness, readiness, the model's description and metrics: none of them pass through the batcher."""

import contextlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.exceptions import RedisClusterException, RedisError

from app import metrics
from app.api.deps import RedisProbeDep, ScoringDep, require
from app.model.scoring import ScoringService
from app.redis_client import StoreClient

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


async def readiness(request: Request, scoring: ScoringService, probe: StoreClient) -> dict[str, bool]:
    """Ready when the model is loaded, Redis answers and no shutdown is draining; load never makes it
    unready. Each verdict is also exported, so Prometheus sees readiness without a load balancer's probes."""
    checks = {
        "model": scoring.model is not None,
        "redis": False,
        "not_draining": not request.app.state.drain.draining,
    }
    with contextlib.suppress(RedisError, RedisClusterException, OSError):
        checks["redis"] = bool(await probe.ping())
    for name, passed in checks.items():
        metrics.READY_CHECKS.labels(name).set(passed)
    metrics.READY.set(all(checks.values()))
    return checks


@router.get("/readyz")
async def readyz(request: Request, scoring: ScoringDep, probe: RedisProbeDep) -> JSONResponse:
    checks = await readiness(request, scoring, probe)
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/model", dependencies=[require("score", "admin", public_as="model")])
async def model(request: Request, scoring: ScoringDep) -> dict[str, Any]:
    """The served bundle, when and how it was loaded, the shadow's agreement and drift."""
    manifest = scoring.model.bundle.manifest
    keys = (
        "version",
        "dataset",
        "horizon_days",
        "split",
        "sizes",
        "metrics",
        "feature_names",
        "feature_spec_hash",
    )
    tiers = scoring.model.bundle.tiers
    served = {"risk_tiers": tiers.to_json(), "device": str(scoring.model.engine.device)}
    operations: dict[str, Any] = request.app.state.model_ops.describe()
    return {key: manifest.get(key) for key in keys} | served | operations


# Prometheus' text format, so documented as text rather than as FastAPI's default JSON.
@router.get(
    "/metrics",
    dependencies=[require("metrics", "admin", public_as="metrics")],
    response_class=PlainTextResponse,
)
async def prometheus_metrics(request: Request, scoring: ScoringDep, probe: RedisProbeDep) -> Response:
    await readiness(request, scoring, probe)  # a fresh verdict in every scrape
    registry = metrics.multiprocess_registry() or REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
