"""`report interventions`: did the actions make warned users buy again?

Units are warned users: each user's first warning whose horizon the event log covers in full (a later
warning of the same user is not a second, independent unit). A unit is treated when its warning
carried an action, control when the user was held back (`group: control`); warnings that carried no
action for another reason (over budget, no rule) are neither, and are counted apart. A control user
counts under the action the policy meant for them (`intended_action`), so each action is compared
with the users who would have had it. The outcome: at least one purchase in the horizon after the
scoring time. Per action and segment (and per action over all segments): both groups' buy-again
rates and the difference with its 95% interval (Newcombe's hybrid score interval).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from app.actions.uplift import newcombe
from app.features import spec

ALL_SEGMENTS: Final = "(all)"
COLUMNS: Final = ("user_id", "scored_at", "segment", "group", "action", "intended_action", "action_reason")


class ReportError(ValueError):
    """Input the report cannot use; the message says which and why."""


def read_warnings(source: str) -> pd.DataFrame:
    """Warnings from a JSON-lines file (as `warnings consume` writes them) or a Redis stream."""
    if source.startswith(("redis://", "rediss://", "unix://")):
        rows = _stream_rows(source)
    else:
        path = Path(source)
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise ReportError(f"cannot read {path}: {error.strerror}") from error
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                rows += [json.loads(line)] if line.strip() else []
            except json.JSONDecodeError as error:
                raise ReportError(f"{path} line {number}: not JSON ({error.msg})") from error
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    missing = [c for c in COLUMNS if c in frame and frame[c].isna().any()]
    if missing:
        raise ReportError(f"warnings without {', '.join(missing)}: not warning messages")
    scored_at = pd.to_datetime(frame["scored_at"], utc=True)
    frame["scored_s"] = (scored_at - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return frame


def _stream_rows(url: str) -> list[dict[str, Any]]:
    import redis

    from app.actions.warnings import stream_key
    from app.config import Settings

    url, _, key = url.partition("#")
    if not key:
        settings = Settings()
        key = stream_key(settings.redis_prefix, settings.warnings_stream)
    rows: list[dict[str, Any]] = []
    with redis.Redis.from_url(url, decode_responses=True, socket_timeout=30) as client:
        start = "-"
        while entries := client.xrange(key, start, "+", count=10_000):
            rows += [fields for _, fields in entries]
            start = "(" + entries[-1][0]
    return rows


def units(
    warnings: pd.DataFrame, events: pd.DataFrame, horizon_days: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per warned user (arm, action, segment, bought again) and the counts of what was left out."""
    horizon_s = horizon_days * spec.DAY_SECONDS
    log_end = int(events["ts_s"].max()) if len(events) else 0
    first = warnings.sort_values("scored_s", kind="stable").drop_duplicates("user_id")
    covered = first[first["scored_s"] + horizon_s <= log_end]
    treated = (covered["group"] == "treatment") & (covered["action"] != "none")
    control = (covered["group"] == "control") & (covered["intended_action"] != "none")
    kept = covered[treated | control].copy()
    kept["arm"] = np.where(kept["group"] == "control", "control", "treated")
    kept["action"] = np.where(kept["arm"] == "control", kept["intended_action"], kept["action"])

    purchases = events.loc[events["kind"] == spec.PURCHASE, ["user_id", "ts_s"]]
    joined = kept[["user_id", "scored_s"]].merge(purchases, on="user_id")
    after = joined[(joined["ts_s"] > joined["scored_s"]) & (joined["ts_s"] <= joined["scored_s"] + horizon_s)]
    kept["bought"] = kept["user_id"].isin(after["user_id"])
    left_out = {
        "warnings": len(warnings),
        "repeat warnings of a user": len(warnings) - len(first),
        "horizon not yet in the log": len(first) - len(covered),
        "no action and not control (budget, no rule)": int((~(treated | control)).sum()),
    }
    return kept[["user_id", "arm", "action", "segment", "bought"]], left_out


def effects(table: pd.DataFrame) -> pd.DataFrame:
    """Per action and segment, and per action over all segments: rates, difference and interval."""
    rows = []
    whole = table.assign(segment=ALL_SEGMENTS)
    for (action, segment), group in pd.concat([whole, table]).groupby(["action", "segment"], sort=True):
        t, c = group[group["arm"] == "treated"], group[group["arm"] == "control"]
        n_t, k_t, n_c, k_c = len(t), int(t["bought"].sum()), len(c), int(c["bought"].sum())
        difference, low, high = newcombe(k_t, n_t, k_c, n_c)
        rows.append(
            {
                "action": action,
                "segment": segment,
                "treated": n_t,
                "treated_bought": k_t,
                "treated_rate": k_t / n_t if n_t else np.nan,
                "control": n_c,
                "control_bought": k_c,
                "control_rate": k_c / n_c if n_c else np.nan,
                "difference": difference,
                "ci95_low": low,
                "ci95_high": high,
            }
        )
    frame = pd.DataFrame(rows)
    # Over all segments first within each action, then the segments.
    frame["order"] = frame["segment"] != ALL_SEGMENTS
    return frame.sort_values(["action", "order", "segment"]).drop(columns="order").reset_index(drop=True)


def write_report(warnings: pd.DataFrame, events: pd.DataFrame, horizon_days: int, out: Path) -> str:
    """interventions.csv, interventions.png and interventions.txt in `out`; returns the text."""
    table, left_out = units(warnings, events, horizon_days)
    if table.empty:
        raise ReportError(f"no warned user to compare: {left_out}")
    result = effects(table)
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "interventions.csv", index=False)
    _plot(result, horizon_days, out / "interventions.png")
    shown = result.copy()
    for column in ("treated_rate", "control_rate"):
        shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
    for column in ("difference", "ci95_low", "ci95_high"):
        shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else f"{v:+.3f}")
    text = "\n".join(
        [
            f"Bought again within {horizon_days} days of the warning: treated vs control "
            "(difference = treated - control, 95% Newcombe interval)",
            shown.to_string(index=False),
            "",
            "Left out: " + "; ".join(f"{name}: {count}" for name, count in left_out.items()),
        ]
    )
    (out / "interventions.txt").write_text(text + "\n")
    return text


def _plot(result: pd.DataFrame, horizon_days: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = result.dropna(subset=["difference"]).iloc[::-1]
    labels = [f"{a} / {s}" for a, s in zip(shown["action"], shown["segment"], strict=True)]
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.4 * max(len(shown), 1)))
    y = np.arange(len(shown))
    errors = [shown["difference"] - shown["ci95_low"], shown["ci95_high"] - shown["difference"]]
    axis.errorbar(shown["difference"], y, xerr=errors, fmt="o", capsize=3)
    axis.axvline(0, color="grey", linewidth=1)
    axis.set_yticks(y, labels)
    axis.set_xlabel(f"bought again within {horizon_days} days: treated - control (95% interval)")
    axis.set_title("Effect of the actions on warned users")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
