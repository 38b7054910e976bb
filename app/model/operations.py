"""Replacing and watching the served model while it serves: reload, shadow, drift.

A bundle is loaded, verified and warmed up in a thread, so the event loop keeps answering meanwhile;
then, on the loop and without an await in between, everything that names the model switches at once:
the scoring service (new requests), /model (which reads the scoring service), `churn_model_info` and the
drift reference. Requests admitted before the switch finish with the model they were admitted with. A
bundle that fails any check is refused with the check's message and the served model stays. Loads run
one at a time (a lock), whoever asks: the admin API or SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app import metrics
from app.audit import AuditLog
from app.clock import Clock
from app.config import Settings
from app.model.bundle import BundleError, current_version, load_bundle
from app.model.drift import reference_of
from app.model.drift_monitor import DriftMonitor
from app.model.scorer import ChurnModel
from app.model.scoring import ScoredBatch, ScoringService
from app.model.shadow import ShadowModel

log = logging.getLogger("churn")
# A version is one folder name in the store: no separators, no leading dot (so never "." or "..").
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class UnknownVersion(ValueError):
    """No bundle of that name in the model store (the request named something that is not there)."""


@dataclass(frozen=True)
class LoadSettings:
    store: Path
    device: str
    warm_rows: int  # the largest batch: warm-up touches it once, so the first real one is not slow
    window_rows: int
    rows_per_batch: int

    @classmethod
    def of(cls, settings: Settings) -> LoadSettings:
        return cls(
            settings.model_store,
            settings.device,
            settings.batch_max_rows,
            settings.monitor_window_rows,
            settings.monitor_rows_per_batch,
        )


def load_model(settings: LoadSettings, version: str | None) -> ChurnModel:
    """A verified, warmed-up model (blocking: call it in a thread). BundleError or UnknownVersion."""
    version = version or current_version(settings.store)
    if not re.fullmatch(VERSION_PATTERN, version):
        raise BundleError(f"{settings.store}: {version!r} is not a bundle name")
    if not (settings.store / version).is_dir():
        raise UnknownVersion(f"no bundle {version!r} in the model store {settings.store}")
    bundle = load_bundle(settings.store, version)
    reference_of(bundle)  # a malformed training distribution refuses the bundle here, not mid-serving
    model = ChurnModel(bundle, settings.device)
    model.engine.warm_up(settings.warm_rows)
    return model


def publish_model_info(previous: ChurnModel | None, model: ChurnModel) -> None:
    if previous is not None and previous.version != model.version:
        metrics.MODEL_INFO.labels(previous.version, _horizon(previous)).set(0)
    metrics.MODEL_INFO.labels(model.version, _horizon(model)).set(1)


def _horizon(model: ChurnModel) -> str:
    return str(model.bundle.manifest.get("horizon_days"))


class ModelOperations:
    def __init__(
        self,
        settings: LoadSettings,
        scoring: ScoringService,
        audit: AuditLog,
        clock: Clock,
        loaded_at: datetime,
    ) -> None:
        self.settings = settings
        self.scoring = scoring
        self.audit = audit
        self.clock = clock
        self.loaded_at, self.loaded_by = loaded_at, "start"
        self.shadow: ShadowModel | None = None
        self.shadow_error: str | None = None
        self.drift = DriftMonitor(settings.window_rows, settings.rows_per_batch)
        self.drift.follow(scoring.model)
        self._lock = asyncio.Lock()
        self._signal_tasks: set[asyncio.Task[Any]] = set()
        scoring.observe(self._observe)

    def _observe(self, batch: ScoredBatch) -> None:
        self.drift.observe(batch)
        shadow = self.shadow
        if shadow is not None and batch.model is self.scoring.model:
            shadow.observe(batch)

    async def _load(self, version: str | None, action: str, key_id: str | None, trigger: str) -> ChurnModel:
        """Load off the loop; refusals are audited and counted, then raised."""
        started = time.perf_counter()
        target = version or "CURRENT"
        try:
            version = target = version or current_version(self.settings.store)
            model = await asyncio.to_thread(load_model, self.settings, version)
        except (BundleError, UnknownVersion) as error:
            metrics.MODEL_LOADS.labels(action, "refused").inc()
            self.audit.record(
                self.clock.now(), key_id, action, target, "refused", reason=str(error), trigger=trigger
            )
            log.warning("%s of %s refused (%s): %s", action, target, trigger, error)
            raise
        metrics.MODEL_LOADS.labels(action, "loaded").inc()
        seconds = time.perf_counter() - started
        log.info("%s: loaded %s in %.2f s (%s)", action, model.version, seconds, trigger)
        return model

    async def reload(self, version: str | None, key_id: str | None, trigger: str) -> dict[str, Any]:
        """Serve `version` (None: the store's CURRENT) from now on, or raise and keep the served one."""
        async with self._lock:
            started = time.perf_counter()
            model = await self._load(version, "reload_model", key_id, trigger)
            previous = self.scoring.model
            # The switch: no await from here on, so no request sees half of it.
            self.scoring.swap_model(model)
            publish_model_info(previous, model)
            self.drift.follow(model)
            if self.shadow is not None:
                self.shadow.window.clear()  # agreement was with the model just replaced
            self.loaded_at, self.loaded_by = self.clock.now(), trigger
            seconds = round(time.perf_counter() - started, 3)
            self.audit.record(
                self.loaded_at,
                key_id,
                "reload_model",
                model.version,
                "loaded",
                previous=previous.version,
                trigger=trigger,
                load_seconds=seconds,
            )
            return {
                "version": model.version,
                "previous_version": previous.version,
                "loaded_at": self.loaded_at,
                "load_seconds": seconds,
                "drift": self.drift.note,
            }

    async def set_shadow(self, version: str | None, key_id: str | None, trigger: str) -> dict[str, Any]:
        """Score `version` (None: the store's CURRENT) beside the served model, replacing any shadow."""
        async with self._lock:
            model = await self._load(version, "set_shadow", key_id, trigger)
            replaced, self.shadow = self.shadow, None
            if replaced is not None:  # stopped first: it may be the same version, whose gauge it zeroes
                await replaced.stop()
            self.shadow = ShadowModel(
                model, self.settings.window_rows, self.settings.rows_per_batch, self.clock.now()
            )
            self.shadow.start()
            self.shadow_error = None
            self.audit.record(
                self.clock.now(),
                key_id,
                "set_shadow",
                model.version,
                "loaded",
                replaced=replaced.model.version if replaced else None,
                trigger=trigger,
            )
            return self.shadow.describe()

    async def drop_shadow(self, key_id: str | None) -> str | None:
        """Stop the shadow, if any; the version dropped."""
        async with self._lock:
            shadow, self.shadow = self.shadow, None
            if shadow is None:
                return None
            await shadow.stop()
            version = shadow.model.version
            self.audit.record(self.clock.now(), key_id, "drop_shadow", version, "dropped")
            return version

    def describe(self) -> dict[str, Any]:
        """What /model adds to the bundle's description."""
        return {
            "loaded_at": self.loaded_at,
            "loaded_by": self.loaded_by,
            "shadow": self.shadow.describe() if self.shadow else None,
            "shadow_error": self.shadow_error,
            "drift": self.drift.describe(),
        }

    async def start(self, shadow_version: str | None) -> None:
        """SIGHUP handling, and the shadow the settings name: one that cannot load is noted in /model and
        logged, and the service serves without it (a shadow must never keep the model from serving)."""
        self.install_sighup()
        if shadow_version is None:
            return
        try:
            await self.set_shadow(shadow_version, None, "start")
        except (BundleError, UnknownVersion) as error:
            self.shadow_error = str(error)

    def install_sighup(self) -> None:
        """SIGHUP reloads the store's CURRENT (signals reach the main thread only: elsewhere, as in an
        embedded test server, nothing is installed)."""
        if threading.current_thread() is not threading.main_thread():
            return
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        task = asyncio.create_task(self._reload_quietly())
        self._signal_tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._signal_tasks.discard)

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(BundleError, UnknownVersion):  # audited and logged; the served model stays
            await self.reload(None, None, "SIGHUP")

    async def close(self) -> None:
        if threading.current_thread() is threading.main_thread():
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self.shadow is not None:
            await self.shadow.stop()
