"""The app factory: `uvicorn app.main:create_app --factory`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aredis
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app import metrics
from app.api import errors, events, health, score, users
from app.api.deps import Services
from app.api.middleware import BodyLimit, LatencyMetrics
from app.clock import Clock, SystemClock
from app.config import Settings
from app.features.online import OnlineFeatureStore
from app.model.batcher import MicroBatcher
from app.model.bundle import load_bundle
from app.model.scorer import ChurnModel

log = logging.getLogger("churn")


def connect_redis(settings: Settings) -> aredis.Redis:
    # No retries: a request must fail fast (503) rather than hang while Redis is down or paused.
    return aredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
        max_connections=settings.redis_max_connections,
    )


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bundle = load_bundle(settings.model_store, settings.model_version)  # BundleError refuses to start
        model = ChurnModel(bundle, settings.device)
        model.engine.warm_up(settings.batch_max_rows)
        metrics.MODEL_INFO.labels(model.version, str(bundle.manifest.get("horizon_days"))).set(1)
        redis = connect_redis(settings)
        try:
            await redis.ping()
        except (RedisError, OSError) as error:
            log.warning(
                "Redis at %s is not reachable yet (%s); /readyz reports unready", settings.redis_url, error
            )
        batcher = MicroBatcher(
            lambda rows, explain: app.state.services.model.engine.forward(rows, explain),
            settings.batch_max_rows,
            settings.batch_max_delay_ms / 1000,
            settings.queue_max_rows,
        )
        await batcher.start()
        store = OnlineFeatureStore(
            redis,
            settings.redis_prefix,
            settings.allowed_lateness_s,
            settings.max_future_skew_s,
            settings.retention_days,
        )
        app.state.services = Services(settings, clock, redis, store, model, batcher)
        log.info("serving model %s on %s", model.version, model.engine.device)
        try:
            yield
        finally:
            await batcher.stop()
            await redis.aclose()

    app = FastAPI(title="Churn scoring service", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    for module in (events, score, users, health):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(LatencyMetrics)
    return app
