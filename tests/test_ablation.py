"""`python -m app ablation`: one snapshot against several, and each feature group left out."""

from app.cli import main
from app.features import spec
from app.training import ablation, baselines, presets


def test_every_feature_is_in_one_group_and_a_left_out_group_carries_nothing() -> None:
    columns = [c for g in ablation.GROUPS for c in ablation.group_columns(g)]
    assert sorted(columns) == list(range(len(spec.FEATURE_NAMES)))
    job = presets.simulated(seed=3, n_users=300, snapshots=presets.Snapshots(2))
    refunds = ablation.group_columns("refunds")
    blank = ablation.without(job.splits, refunds)
    assert (blank.train.X[:, refunds] == 0).all() and (blank.test.X[:, refunds] == 0).all()
    assert job.splits.train.X[:, refunds].any()  # the original is left as it was
    variants = ablation.variants(job.splits, job.horizon_days)
    names = list(variants)
    assert names[:2] == ["all features, 2 snapshots", "all features, latest snapshot only"]
    assert len(names) == 3 + len(ablation.GROUPS)
    # the candidate: one column more, BG/NBD's probability of no purchase, a probability in every split
    candidate = variants[names[-1]]
    assert names[-1].startswith("with BG/NBD") and candidate.dropped is None
    assert candidate.splits.test.X.shape[1] == len(spec.FEATURES) + 1 == len(candidate.features)
    p = candidate.splits.test.X[:, -1]
    assert ((p >= 0) & (p <= 1)).all() and p.std() > 0.01


def test_the_command_prints_a_row_per_variant(capsys: object) -> None:
    main(["ablation", "--preset", "sim", "--users", "300", "--snapshots", "2", "--max-epochs", "3"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    rows = [line for line in out.splitlines() if line.startswith("| ") and "variant" not in line]
    assert len(rows) == 3 + len(ablation.GROUPS)
    assert "with BG/NBD P(no purchase in 30 days), 2 snapshots: BG/NBD fitted: r " in out  # its parameters
    assert rows[0].startswith("| all features, 2 snapshots | 0.") and "without support contacts" in out
    # every other variant gives its paired interval against all features; the first has none
    assert rows[0].split(" | ")[2] == "-"
    assert all(" to " in row.split(" | ")[2] for row in rows[1:])
    # the last column: the C logistic regression chose on the validation users, one of the grid's
    chosen = {float(row.rstrip(" |").rsplit(" | ", 1)[1]) for row in rows}
    assert chosen <= set(baselines.LOGISTIC_C_GRID)
