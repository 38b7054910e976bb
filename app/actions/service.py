"""The warning emitter as the service runs it: built from the settings, fed by the scoring pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass

from app.actions.policy import ControlGroup, Policy
from app.actions.warnings import WarningEmitter, WarningSettings
from app.config import Settings
from app.features.pseudonym import Pseudonyms
from app.model.scoring import ScoringService
from app.redis_client import StoreClient, connect_store


def load_policy(settings: Settings) -> Policy:
    """The configured policy; a bad policy file refuses to start, naming the file and the problem."""
    if settings.warnings_policy_file is None:
        return settings.warnings_policy
    path = settings.warnings_policy_file
    try:
        return Policy.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise RuntimeError(f"CHURN_WARNINGS_POLICY_FILE {path}: {error}") from error


def warning_settings(settings: Settings) -> WarningSettings:
    return WarningSettings(
        prefix=settings.redis_prefix,
        stream=settings.warnings_stream,
        cooldown_s=settings.warnings_cooldown_s,
        stream_max_len=settings.warnings_stream_max_len,
        stream_max_age_s=settings.warnings_stream_max_age_days * 86_400,
        tiers=frozenset(settings.warnings_tiers),
        queue_max=settings.warnings_queue_max,
    )


@dataclass
class RunningWarnings:
    emitter: WarningEmitter
    own_redis: StoreClient | None  # a client of its own when the stream lives in another Redis

    async def stop(self) -> None:
        await self.emitter.stop()
        if self.own_redis is not None:
            await self.own_redis.aclose()


def start_warnings(
    settings: Settings, store_redis: StoreClient, pseudonyms: Pseudonyms, scoring: ScoringService
) -> RunningWarnings | None:
    """The emitter watching every scored batch, its flusher running; None when warnings are off."""
    if not settings.warnings_enabled:
        return None
    running = start_warnings_for_batch(settings, store_redis, pseudonyms)
    scoring.observe(running.emitter.observe)
    return running


def start_warnings_for_batch(
    settings: Settings, store_redis: StoreClient, pseudonyms: Pseudonyms
) -> RunningWarnings:
    """The emitter, its flusher running, for a path that hands it answers itself (score-batch)."""
    own = None
    if settings.warnings_redis_url is not None:
        own = connect_store(settings.model_copy(update={"redis_url": settings.warnings_redis_url}))
    control = ControlGroup(settings.warnings_control_share, settings.warnings_control_seed)
    emitter = WarningEmitter(
        own or store_redis, pseudonyms, load_policy(settings), control, warning_settings(settings)
    )
    emitter.start()
    return RunningWarnings(emitter, own)
