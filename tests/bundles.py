"""Model stores for tests, made as data from the committed bundle (never by training): copies, variants
re-saved through save_bundle (so every hash is right), and deliberately broken copies."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from app.features import offline, spec
from app.model.bundle import MANIFEST, WEIGHTS, ModelBundle, load_bundle, save_bundle, set_current
from app.model.drift import distribution_files
from app.model.postprocess import PlattCalibration
from app.model.scorer import ChurnModel
from app.model.shadow import predict
from app.training.simulate import SimulationConfig, simulate

COMMITTED = Path(__file__).resolve().parents[1] / "model_store"
# Fields save_bundle writes itself; a variant takes every other manifest field from its source.
_OWN_FIELDS = ("format_version", "version", "feature_names", "feature_spec_hash", "files")


def committed() -> ModelBundle:
    return load_bundle(COMMITTED)


def copy_committed(store: Path, name: str | None = None) -> str:
    source = committed()
    name = name or source.version
    shutil.copytree(source.path, store / name)
    if name != source.version:  # the manifest names its version; the folder is what the store uses
        manifest = json.loads((store / name / MANIFEST).read_text())
        (store / name / MANIFEST).write_text(json.dumps(manifest | {"version": name}))
    return name


def variant(
    store: Path, name: str, intercept_shift: float = 0.0, extra_files: dict[str, bytes] | None = None
) -> str:
    """The committed network under another name, its calibration intercept moved by `intercept_shift`
    (probabilities move, their order does not), with `extra_files` added."""
    source = committed()
    calibration = PlattCalibration(source.calibration.slope, source.calibration.intercept + intercept_shift)
    fields = {k: v for k, v in source.manifest.items() if k not in _OWN_FIELDS}
    save_bundle(
        store,
        name,
        source.build_network(),
        source.network_config,
        source.preprocessor,
        calibration,
        source.tiers,
        source.segments,
        fields,
        extra_files,
    )
    return name


def flip_weight_bytes(store: Path, name: str) -> None:
    weights = store / name / WEIGHTS
    data = bytearray(weights.read_bytes())
    for i in range(len(data) - 64, len(data) - 32):
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))


def drop_a_feature_name(store: Path, name: str) -> None:
    manifest = json.loads((store / name / MANIFEST).read_text())
    manifest["feature_names"] = manifest["feature_names"][:-1]
    (store / name / MANIFEST).write_text(json.dumps(manifest))


def model_store(root: Path, shift_name: str = "shifted", shift: float = 1.0) -> tuple[Path, str, str]:
    """A store serving a copy of the committed bundle (CURRENT), with a variant whose probabilities
    are higher; returns (store, served version, variant version)."""
    store = root / "model_store"
    store.mkdir(parents=True)
    served = copy_committed(store)
    other = variant(store, shift_name, intercept_shift=shift)
    set_current(store, served)
    return store, served, other


# A simulated population and the moment its features are taken: what training and replays share.
SIM_DAYS = 150
SIM_START = datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = SIM_START + timedelta(days=SIM_DAYS)


def simulated_events(seed: int, users: int) -> pd.DataFrame:
    """A simulated event log in the public schema (what /events and event files take), up to AS_OF (the
    simulator sends a refund days after its purchase, past its last day)."""
    events = simulate(SimulationConfig(n_users=users, days=SIM_DAYS, seed=seed)).events
    return events[pd.to_datetime(events["ts"]) <= AS_OF].reset_index(drop=True)


def feature_rows(events: pd.DataFrame, as_of: datetime = AS_OF) -> np.ndarray:  # type: ignore[type-arg]
    """Every active user's features as of `as_of`, through the feature function training uses."""
    _, raw = offline.features(offline.validate_events(events), spec.unix_seconds(as_of))
    return raw


def with_distribution(store: Path, name: str, seed: int = 1, users: int = 1_500) -> str:
    """The committed bundle with the training distribution of a simulated population added."""
    raw = feature_rows(simulated_events(seed, users))
    probability, _ = predict(ChurnModel(committed(), "cpu"), raw)
    return variant(store, name, extra_files=distribution_files(raw, probability))


def ingest(http: httpx.Client, events: pd.DataFrame) -> list[str]:
    """Send a log through /events, 1,000 at a time; the ids of its users."""
    rows = [
        {key: value for key, value in row.items() if not pd.isna(value)}
        for row in events.astype(object).to_dict("records")
    ]
    for start in range(0, len(rows), 1_000):
        answer = http.post("/events", json={"events": rows[start : start + 1_000]})
        assert answer.status_code == 200 and not answer.json()["rejected"], answer.text[:500]
    return sorted(events["user_id"].unique())
