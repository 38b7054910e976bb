"""`python -m app drift`: an event log replayed against a bundle's training distribution.

The log's users get their features as of a moment (default: its last event) through the same feature
function as training, the bundle scores them, and each feature's and the score's PSI against the
training distribution is printed and drawn. Offline on purpose: it needs no running service, so it
answers "has the population moved since this bundle was trained?" for any log and any bundle, before a
deployment as well as after an alert (the live window is GET /model/drift).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from app.features import offline, spec
from app.model.bundle import DISTRIBUTION, load_bundle
from app.model.drift import SHIFT_ABOVE, STABLE_BELOW, Matrix, Reference, reference_of, verdict
from app.model.scorer import ChurnModel
from app.model.shadow import predict

SHARE_PLOTS = 6  # the most drifted series drawn bin by bin
COLOURS = {"stable": "tab:green", "moderate": "tab:orange", "shift": "tab:red"}


class NoReference(ValueError):
    """The bundle has no training distribution to compare with."""


@dataclass(frozen=True)
class DriftReport:
    version: str
    as_of: datetime
    users: int
    reference: Reference
    served_shares: Matrix
    psi: dict[str, float]

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "as_of": self.as_of.isoformat(),
            "users": self.users,
            "training_rows": self.reference.rows,
            "psi": self.psi,
        }


def replay(bundle_dir: Path, events_path: Path, as_of: datetime | None) -> DriftReport:
    bundle = load_bundle(bundle_dir.parent, bundle_dir.name)
    reference = reference_of(bundle)
    if reference is None:
        raise NoReference(
            f"{bundle_dir} has no {DISTRIBUTION}: it was made before bundles stored their training "
            "distribution; train a bundle (make train) to compare against"
        )
    events = offline.read_event_log(events_path)
    at = spec.unix_seconds(as_of) if as_of else int(events["ts_s"].max())
    _, raw = offline.features(events, at)
    if not len(raw):
        raise ValueError(f"{events_path}: no user has an event at or before {as_of}")
    probability, _ = predict(ChurnModel(bundle, "cpu"), raw)
    served = reference.counts_of(reference.bin_rows(raw, probability)) / len(raw)
    psi = dict(zip(reference.names, reference.psi(served).tolist(), strict=True))
    return DriftReport(bundle.version, datetime.fromtimestamp(at, UTC), len(raw), reference, served, psi)


def text(report: DriftReport) -> str:
    ranked = sorted(report.psi.items(), key=lambda item: -item[1])
    verdicts = [verdict(value) for _, value in ranked]
    lines = [
        f"drift of {report.users} users as of {report.as_of:%Y-%m-%d %H:%M:%S}Z against the training "
        f"distribution of {report.version} ({report.reference.rows} rows)",
        f"PSI below {STABLE_BELOW}: stable; up to {SHIFT_ABOVE}: moderate; above: shift",
        f"{verdicts.count('shift')} shifted, {verdicts.count('moderate')} moderate, "
        f"{verdicts.count('stable')} stable",
        "",
        f"{'series':<32} {'PSI':>8}  verdict",
    ]
    lines += [f"{name:<32} {value:>8.3f}  {v}" for (name, value), v in zip(ranked, verdicts, strict=True)]
    return "\n".join(lines)


def write(report: DriftReport, out: Path) -> list[Path]:
    """drift.json, psi.png (every series) and shares.png (the most drifted, bin by bin)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return [out / "drift.json", _psi_plot(report, out / "psi.png"), _shares_plot(report, out / "shares.png")]


def _psi_plot(report: DriftReport, path: Path) -> Path:
    ranked = sorted(report.psi.items(), key=lambda item: item[1])
    figure, axes = plt.subplots(figsize=(8, 0.22 * len(ranked) + 1.5))
    try:
        colours = [COLOURS[verdict(value)] for _, value in ranked]
        axes.barh([name for name, _ in ranked], [v for _, v in ranked], color=colours)
        for edge in (STABLE_BELOW, SHIFT_ABOVE):
            axes.axvline(edge, color="grey", linestyle="--", linewidth=0.8)
        axes.set_xlabel("population stability index")
        axes.set_title(f"{report.version}: drift as of {report.as_of:%Y-%m-%d}", fontsize=10)
        axes.tick_params(axis="y", labelsize=7)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
    return path


def _shares_plot(report: DriftReport, path: Path) -> Path:
    top = sorted(report.psi, key=lambda name: -report.psi[name])[:SHARE_PLOTS]
    figure, grid = plt.subplots(2, 3, figsize=(12, 6))
    try:
        for axes, name in zip(grid.ravel(), top, strict=False):
            row = report.reference.names.index(name)
            bins = int(np.isfinite(report.reference.edges[row]).sum()) + 1
            x = np.arange(bins)
            axes.bar(x - 0.2, report.reference.shares[row, :bins], width=0.4, label="training")
            axes.bar(x + 0.2, report.served_shares[row, :bins], width=0.4, label="replay")
            axes.set_xticks(x)
            axes.set_title(f"{name} (PSI {report.psi[name]:.2f})", fontsize=9)
            axes.set_xlabel("training quantile bin", fontsize=8)
            axes.set_ylabel("share of users", fontsize=8)
        grid.ravel()[0].legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
    return path
