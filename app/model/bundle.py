"""Model bundles in model_store/: data, never code (safetensors + JSON + a manifest of hashes).

Layout: model_store/<version>/{manifest.json, model.safetensors, network.json, preprocessing.json,
calibration.json, tiers.json, segments.json, optional distribution.json, cold_start.json and reasons.json,
report files}; model_store/CURRENT names the version served.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from app.features import spec
from app.model.network import ChurnNet, NetworkConfig
from app.model.postprocess import ColdStart, PlattCalibration, RiskTiers, Segments
from app.model.preprocess import Preprocessor
from app.model.typical import TypicalValues, TypicalValuesError

FORMAT_VERSION = 1
CURRENT_POINTER = "CURRENT"
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
JSON_PARTS = ("network.json", "preprocessing.json", "calibration.json", "tiers.json", "segments.json")
REQUIRED_FILES = (WEIGHTS, *JSON_PARTS)
# Optional: the training distribution of each feature and of the score, for drift (app/model/drift.py).
# Bundles made before it existed lack it; drift monitoring is then off and says so.
DISTRIBUTION = "distribution.json"
COLD_START = "cold_start.json"  # optional: bundles without it score users with no history by the network
# Optional: each feature's typical value among retained training users, which reasons quote; bundles
# without it give reasons whose typical_value is null.
REASONS = "reasons.json"


class BundleError(Exception):
    """A bundle that must not be served; the message names the check that failed."""


@dataclass(frozen=True)
class ModelBundle:
    version: str
    path: Path
    manifest: dict[str, Any]
    network_config: NetworkConfig
    weights: dict[str, torch.Tensor]
    preprocessor: Preprocessor
    calibration: PlattCalibration
    tiers: RiskTiers
    segments: Segments
    distribution: dict[str, Any] | None = None  # distribution.json as stored, when the bundle has one
    cold_start: ColdStart | None = None
    typical: TypicalValues | None = None  # reasons.json, when the bundle has one

    def build_network(self) -> ChurnNet:
        network = ChurnNet(self.network_config)
        network.load_state_dict(self.weights, strict=True)
        return network.eval()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_bundle(
    store: Path,
    version: str,
    network: ChurnNet,
    network_config: NetworkConfig,
    preprocessor: Preprocessor,
    calibration: PlattCalibration,
    tiers: RiskTiers,
    segments: Segments,
    manifest_fields: dict[str, Any],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a bundle; every file's sha256 goes into the manifest."""
    path = store / version
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    files: dict[str, bytes] = {
        WEIGHTS: save_safetensors(weights),
        "network.json": json_bytes(network_config.to_json()),
        "preprocessing.json": json_bytes(preprocessor.to_json()),
        "calibration.json": json_bytes(calibration.to_json()),
        "tiers.json": json_bytes(tiers.to_json()),
        "segments.json": json_bytes(segments.to_json()),
        **(extra_files or {}),
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "feature_names": list(spec.FEATURE_NAMES),
        "feature_spec_hash": spec.spec_hash(),
        **manifest_fields,
    }
    write_files(path, files, manifest)
    return path


def write_files(path: Path, files: dict[str, bytes], manifest: dict[str, Any]) -> None:
    """A bundle's files into `path`, then its manifest: `manifest` with every file's sha256."""
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    hashes = {name: sha256(data) for name, data in sorted(files.items())}
    (path / MANIFEST).write_bytes(json_bytes({**manifest, "files": hashes}))


def set_current(store: Path, version: str) -> None:
    (store / CURRENT_POINTER).write_text(version + "\n")


def current_version(store: Path) -> str:
    pointer = store / CURRENT_POINTER
    if not pointer.is_file():
        raise BundleError(f"{pointer}: no current-version pointer; run `make train` or name a version")
    return pointer.read_text().strip()


def load_bundle(store: Path, version: str | None = None) -> ModelBundle:
    """Load and verify a bundle: hashes, feature specification, finite weights, shapes."""
    version = version or current_version(store)
    path = store / version
    manifest = _read_json(path / MANIFEST, "manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _fail(path, "format version", f"{manifest.get('format_version')!r} != {FORMAT_VERSION}")
    listed: dict[str, str] = manifest.get("files", {})
    missing = [name for name in REQUIRED_FILES if name not in listed]
    if missing:
        raise _fail(path, "manifest completeness", f"files not listed: {missing}")
    contents: dict[str, bytes] = {}
    for name, expected in listed.items():
        file = path / name
        if not file.is_file():
            raise _fail(path, "file presence", f"{name} is missing")
        data = file.read_bytes()
        if sha256(data) != expected:
            raise _fail(path, "sha256", f"{name} does not match the manifest")
        contents[name] = data
    if manifest.get("feature_spec_hash") != spec.spec_hash():
        raise _fail(
            path, "feature specification hash", "the bundle was trained on another feature specification"
        )
    if tuple(manifest.get("feature_names", ())) != spec.FEATURE_NAMES:
        raise _fail(path, "feature names", "names or order differ from app/features/spec.py")

    parts = {name: json.loads(contents[name]) for name in JSON_PARTS}
    preprocessor = Preprocessor.from_json(parts["preprocessing.json"])
    if preprocessor.feature_names != spec.FEATURE_NAMES:
        raise _fail(path, "preprocessing features", "preprocessing.json lists other features")
    weights = load_safetensors(contents[WEIGHTS])
    for name, tensor in weights.items():
        if not torch.isfinite(tensor).all():
            raise _fail(path, "finite weights", f"{name} holds NaN or infinity")
    network_config = NetworkConfig.from_json(parts["network.json"])
    try:
        ChurnNet(network_config).load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise _fail(path, "weight shapes", str(error).splitlines()[0]) from error
    numbers = [*preprocessor.mean, *preprocessor.scale, *parts["calibration.json"].values()]
    if not all(math.isfinite(x) for x in numbers if isinstance(x, float)):
        raise _fail(path, "finite preprocessing", "a mean, scale or calibration value is not finite")
    cold_start = None
    if COLD_START in contents:
        cold_start = ColdStart.from_json(json.loads(contents[COLD_START]))
        if not 0.0 <= cold_start.probability <= 1.0:
            raise _fail(path, "cold-start prior", f"probability {cold_start.probability} is not in [0, 1]")
    typical = None
    if (reasons := _optional_json(path, contents, REASONS)) is not None:
        try:
            typical = TypicalValues.from_json(reasons, spec.FEATURE_NAMES)
        except TypicalValuesError as error:
            raise _fail(path, "typical values", str(error)) from error
    return ModelBundle(
        version=version,
        path=path,
        manifest=manifest,
        network_config=network_config,
        weights=weights,
        preprocessor=preprocessor,
        calibration=PlattCalibration.from_json(parts["calibration.json"]),
        tiers=RiskTiers.from_json(parts["tiers.json"]),
        segments=Segments.from_json(parts["segments.json"]),
        distribution=_optional_json(path, contents, DISTRIBUTION),
        cold_start=cold_start,
        typical=typical,
    )


def _fail(path: Path, check: str, detail: str) -> BundleError:
    return BundleError(f"model bundle {path}: check '{check}' failed: {detail}")


def _read_json(file: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(file.read_bytes())
    except (OSError, ValueError) as error:
        raise _fail(file.parent, what, f"cannot read {file.name}: {error}") from error
    if not isinstance(data, dict):
        raise _fail(file.parent, what, f"{file.name} is not a JSON object")
    return data


def _optional_json(path: Path, contents: dict[str, bytes], name: str) -> dict[str, Any] | None:
    if name not in contents:
        return None
    try:
        data = json.loads(contents[name])
    except ValueError as error:
        raise _fail(path, name, f"not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise _fail(path, name, "not a JSON object")
    return data


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
