"""The app factory: `uvicorn app.main:create_app --factory`."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.actions.service import start_warnings
from app.actions.sweep import start_sweep
from app.api import admin, docs, documented, errors, events, health, score, users
from app.api.answer_headers import AnswerHeaders
from app.api.auth import Keyring
from app.api.drain import Drain
from app.api.fast import FastRoutes
from app.api.gate import KeyGate
from app.api.middleware import BodyLimit, LatencyMetrics
from app.api.ratelimit import RateLimiter
from app.audit import AuditLog
from app.clock import Clock, SystemClock
from app.config import Settings
from app.features.online import store_for
from app.features.pseudonym import Pseudonyms
from app.model import operations
from app.model.operations import LoadSettings, ModelOperations, publish_model_info
from app.model.scorer import ChurnModel
from app.model.scoring import ScoringService
from app.process_tuning import settle_after_startup
from app.redis_client import connect_probe, connect_store

log = logging.getLogger("churn")


def load_model(settings: Settings) -> ChurnModel:
    """The verified bundle on its device, warmed up; BundleError refuses to start."""
    model = operations.load_model(LoadSettings.of(settings), settings.model_version)
    publish_model_info(None, model)
    return model


class ChurnAPI(FastAPI):
    """FastAPI behind a raw ASGI front: the hot routes, then latency metrics and the body limit, run
    before FastAPI's own middleware and routing, which per request cost more than batched scoring does."""

    front: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.front(scope, receive, send)


def load_keyring(settings: Settings) -> Keyring | None:
    """The API keys, or None when auth is off; refuses to start with auth on and no key configured."""
    if settings.auth == "off":
        return None
    keyring = Keyring.load(settings.api_keys, settings.api_keys_file)
    if not len(keyring):
        raise RuntimeError(
            "no API keys configured: set CHURN_API_KEYS or CHURN_API_KEYS_FILE (`python -m app dev-key` "
            "makes a local one), or CHURN_AUTH=off on a closed network"
        )
    return keyring


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    clock = clock or SystemClock()
    keyring = load_keyring(settings)
    pseudonyms = Pseudonyms.load(settings.id_secret, settings.id_secret_file)  # refuses to start without

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = load_model(settings)
        redis, probe = connect_store(settings), connect_probe(settings)
        try:
            await probe.ping()
        except (RedisError, OSError) as error:
            log.warning(
                "Redis at %s is not reachable yet (%s); /readyz reports unready", settings.redis_url, error
            )
        store = store_for(settings, redis, pseudonyms)
        scoring = ScoringService(
            store,
            model,
            clock,
            max_rows=settings.batch_max_rows,
            max_delay_s=settings.batch_max_delay_ms / 1000,
            queue_max_rows=settings.queue_max_rows,
            queue_max_wait_s=settings.queue_max_wait_ms / 1000,
            overload_pause_s=settings.overload_pause_ms / 1000,
            deadline_s=settings.score_deadline_s,
            explain_top_k=settings.explain_top_k,
        )
        await scoring.start()
        warnings = start_warnings(settings, redis, pseudonyms, scoring)
        app.state.warnings = warnings and warnings.emitter  # other scoring paths hand answers to it too
        sweep = start_sweep(settings, redis, store, scoring)
        app.state.settings, app.state.clock, app.state.probe = settings, clock, probe
        app.state.store, app.state.scoring = store, scoring
        app.state.audit = audit = AuditLog(settings.audit_log)
        app.state.model_ops = model_ops = ModelOperations(
            LoadSettings.of(settings), scoring, audit, clock, clock.now()
        )
        await model_ops.start(settings.shadow_version)
        app.state.rate_limiter = RateLimiter(redis, settings.redis_prefix)
        app.state.drain.install()
        settle_after_startup()
        log.info("serving model %s on %s", model.version, model.engine.device)
        try:
            yield
        finally:
            await model_ops.close()
            if sweep is not None:
                await sweep.stop()
            await scoring.stop()
            await store.aclose()
            if warnings is not None:
                await warnings.stop()  # after scoring: the last batches' warnings are written first
            await redis.aclose()
            await probe.aclose()
            audit.close()

    app = ChurnAPI(
        title="Churn scoring service", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.keyring = keyring
    app.state.public_endpoints = settings.public_endpoints
    app.state.drain = Drain(settings.drain_s)
    errors.install(app)
    for module in (events, score, users, health, admin):
        app.include_router(module.router)
    documented.install(app)
    docs.install(app)
    routed: ASGIApp = functools.partial(FastAPI.__call__, app)
    if keyring is not None:
        routed = KeyGate(routed, keyring, docs_public="docs" in settings.public_endpoints)
    guarded = LatencyMetrics(BodyLimit(routed, max_bytes=settings.max_body_bytes))
    front = FastRoutes(guarded, app.state, settings.max_body_bytes) if settings.fast_routes else guarded
    app.front = AnswerHeaders(front, app.state.drain)
    return app
