"""Command line: `python -m app` (or `churn`) train | recalibrate | ablation | simulate | serve | redis-up |
redis-down | dev-key | new-key | dev-secret | rotate-ids | compose-secrets | drift | warnings consume |
report interventions | backfill | score-batch."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from app.actions.commands import add_commands as add_action_commands
from app.actions.commands import run_command as run_action_command


def _date(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _train(args: argparse.Namespace, argv: list[str]) -> None:
    from app.training.datasets import JobRefused

    try:
        _run_training(args, argv)
    except JobRefused as refused:  # the log cannot make this job: one line, status 1, no traceback
        sys.exit(str(refused))


def _run_training(args: argparse.Namespace, argv: list[str]) -> None:
    from app.model.bundle import set_current
    from app.training import pipeline, presets
    from app.training.train import TrainConfig

    snapshots = presets.Snapshots(args.snapshots, args.snapshot_every_days) if args.snapshots else None
    if args.preset == "sim":
        job = presets.simulated(args.seed, args.users, snapshots)
    elif args.preset == "cdnow":
        job = presets.cdnow_standard(args.seed, snapshots)
    else:
        missing = [
            f"--{n.replace('_', '-')}"
            for n in ("events", "train_cutoff", "test_cutoff")
            if not getattr(args, n)
        ]
        if missing:
            sys.exit(f"train: without --preset, {', '.join(missing)} are required")
        job = presets.from_log(
            args.events, args.train_cutoff, args.test_cutoff, args.horizon_days, args.seed, snapshots
        )
    config = TrainConfig(seed=args.seed, max_epochs=args.max_epochs)
    path = pipeline.run(job, args.out, config, command=shlex.join(["python", "-m", "app", *argv]))
    if args.set_current:
        set_current(args.out, path.name)
    print(f"bundle written to {path}")
    print((path / "report" / "model_card.md").read_text())


def _ablation(args: argparse.Namespace) -> None:
    import json

    from app.training import ablation, presets
    from app.training.datasets import JobRefused
    from app.training.train import TrainConfig

    snapshots = presets.Snapshots(args.snapshots, args.snapshot_every_days) if args.snapshots else None
    try:
        if args.preset == "sim":
            job = presets.simulated(args.seed, args.users, snapshots)
        else:
            job = presets.cdnow_standard(args.seed, snapshots)
    except JobRefused as refused:
        sys.exit(str(refused).replace("train:", "ablation:", 1))
    rows = ablation.run(job, TrainConfig(seed=args.seed, max_epochs=args.max_epochs))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(ablation.table(rows))


def _recalibrate(args: argparse.Namespace, argv: list[str]) -> None:
    from app.model.bundle import BundleError, set_current
    from app.training.recalibrate import RecalibrationRefused, describe, recalibrate

    command = shlex.join(["python", "-m", "app", *argv])
    try:
        path = recalibrate(args.bundle, args.outcomes, args.out, command)
    except (RecalibrationRefused, BundleError) as refused:
        sys.exit(str(refused))
    if args.set_current:
        set_current(args.out, path.name)
    print(describe(path))


def _simulate(args: argparse.Namespace) -> None:
    from app.features.offline import write_event_log
    from app.training.simulate import SimulationConfig, simulate

    config = SimulationConfig(n_users=args.users, days=args.days, seed=args.seed)
    if args.start is not None:
        config = dataclasses.replace(config, start=args.start)
    result = simulate(config)
    write_event_log(result.events, args.out)
    print(f"{len(result.events)} events of {args.users} users written to {args.out}")


def _serve() -> None:
    import uvicorn

    from app.config import Settings
    from app.logs import log_config

    settings = Settings()
    if settings.workers > 1:
        prepare_multiprocess_metrics(Path(".data/prometheus"))
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        proxy_headers=False,  # nothing here reads the client address; the middleware costs per request
        log_level="info",
        log_config=log_config(settings.log_format == "json"),
        access_log=False,
    )


def prepare_multiprocess_metrics(folder: Path) -> None:
    """Workers share metrics through files in one folder, which must start empty (stale files from an
    earlier run would be summed in). Set before any worker imports prometheus_client."""
    import os
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder.resolve())


def _redis_up() -> None:
    """Use the Redis at CHURN_REDIS_URL if set; otherwise make sure a local one runs on 6379."""
    import os
    from urllib.parse import urlparse

    from app.config import Settings
    from app.redis_server import ping, start_daemon

    url = Settings().redis_url
    if ping(url):
        print(f"Redis is up at {url}")
        return
    if "CHURN_REDIS_URL" in os.environ:
        sys.exit(f"CHURN_REDIS_URL={url} does not answer; start that Redis or unset the variable")
    port = urlparse(url).port or 6379
    start_daemon(Path(".data/redis"), port)
    print(f"started a local Redis on port {port} (data in .data/redis; stop it with: make redis-down)")


def _redis_down() -> None:
    import redis

    from app.config import Settings
    from app.redis_server import ping

    url = Settings().redis_url
    if not ping(url):
        print(f"no Redis answers at {url}")
        return
    with redis.Redis.from_url(url, socket_timeout=2) as client:
        client.shutdown(save=True)
    print(f"Redis at {url} stopped")


DEV_KEYS = Path(".data/api_keys.json")
DEV_KEY = Path(".data/dev-key")


def _dev_key() -> None:
    """A local development key with every scope, made once: the key in .data/dev-key (readable by its
    owner only), its hash in .data/api_keys.json for `make run`."""
    import json
    import os

    from app.api.auth import new_key

    if DEV_KEYS.exists() and DEV_KEY.exists():
        print(f"development API key in {DEV_KEY} (its hash in {DEV_KEYS})")
        return
    key, entry = new_key("dev", ["events", "score", "admin", "metrics"])
    DEV_KEYS.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(DEV_KEY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(key + "\n")
    DEV_KEYS.write_text(json.dumps([entry.model_dump()], indent=2) + "\n")
    print(f"created a development API key with every scope (kept in {DEV_KEY}; shown this once):\n{key}")


def _new_key(args: argparse.Namespace) -> None:
    """A production key: the key for its holder, the entry (its hash) for CHURN_API_KEYS(_FILE)."""
    import json

    from app.api.auth import new_key

    key, entry = new_key(args.id, args.scope, args.rate, args.burst)
    print(f"key (give it to its holder; it is not stored anywhere): {key}")
    print(f"entry (add it to CHURN_API_KEYS or the keys file): {json.dumps(entry.model_dump())}")


DEV_SECRET = Path(".data/id-secret")


def _dev_secret() -> None:
    """A local id secret, made once and never shown: in .data/id-secret, readable by its owner only."""
    import os
    import secrets

    if DEV_SECRET.exists():
        print(f"id secret in {DEV_SECRET}")
        return
    DEV_SECRET.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(DEV_SECRET, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_urlsafe(48) + "\n")
    print(f"created an id secret in {DEV_SECRET} (readable by its owner only; not shown)")


def _compose_secrets() -> None:
    from app import compose_secrets

    _dev_key()
    _dev_secret()
    compose_secrets.write(DEV_KEYS, DEV_SECRET)


def _rotate_ids(args: argparse.Namespace) -> None:
    """Rename the listed users' keys from their pseudonyms under the old secret to those under the
    configured one, with RENAMENX: a key the new pseudonym already has is left alone and counted. Run
    it while the service is stopped (README, "Pseudonymised ids"); on a single Redis, not a cluster."""
    import redis
    from redis.exceptions import ResponseError

    from app.config import Settings
    from app.features.keys import DATA_SUFFIXES, TOMBSTONE_SUFFIX, user_tag
    from app.features.pseudonym import Pseudonyms, load_secret

    settings = Settings()
    old_secret = load_secret(None, args.old_secret_file)
    new_secret = load_secret(settings.id_secret, settings.id_secret_file)
    if old_secret == new_secret:
        sys.exit("rotate-ids: the old secret is the configured one; nothing to rotate")
    old, new = Pseudonyms(old_secret), Pseudonyms(new_secret)
    text = sys.stdin.read() if str(args.ids) == "-" else args.ids.read_text()
    user_ids = [line for line in text.splitlines() if line]
    suffixes = (*DATA_SUFFIXES, TOMBSTONE_SUFFIX)
    renamed = kept = 0
    with redis.Redis.from_url(settings.redis_url, socket_timeout=30) as client:
        for start in range(0, len(user_ids), 1_000):  # a round trip per 1,000 users
            pipe = client.pipeline(transaction=False)
            for user_id in user_ids[start : start + 1_000]:
                old_tag, new_tag = (user_tag(settings.redis_prefix, p.of(user_id)) for p in (old, new))
                for suffix in suffixes:
                    pipe.renamenx(old_tag + suffix, new_tag + suffix)
            for reply in pipe.execute(raise_on_error=False):
                if isinstance(reply, ResponseError) and "no such key" in str(reply):
                    continue  # nothing stored under this name
                if isinstance(reply, Exception):
                    raise reply
                renamed, kept = renamed + bool(reply), kept + (not reply)
    print(f"{len(user_ids)} user ids: {renamed} keys renamed, {kept} left (the new name was taken)")


def _drift(args: argparse.Namespace) -> None:
    """An event log against a bundle's training distribution: a table, drift.json and two PNGs."""
    from app.drift_report import NoReference, replay, text, write
    from app.features.offline import EventLogError
    from app.model.bundle import BundleError

    try:
        report = replay(args.bundle, args.events, args.as_of)
    except (NoReference, BundleError, EventLogError, ValueError) as error:
        sys.exit(f"drift: {error}")
    print(text(report))
    print("\nwritten: " + ", ".join(str(path) for path in write(report, args.out)))
    worst = max(report.psi.values())
    if args.fail_above is not None and worst > args.fail_above:
        sys.exit(f"drift: the largest PSI, {worst:.3f}, is above {args.fail_above}")


def _backfill(args: argparse.Namespace) -> None:
    from app.bulk import commands

    sys.exit(commands.backfill(args.events, args.chunk_rows))


def _score_batch(args: argparse.Namespace) -> None:
    from app.bulk import commands

    sys.exit(commands.score_batch(args.users, args.out, args.column, args.batch, args.warn))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="churn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, evaluate and write a model bundle")
    train.add_argument("--preset", choices=["sim", "cdnow"], help="a ready-made job instead of --events")
    train.add_argument("--events", type=Path, help="event log (.csv, .jsonl, .parquet)")
    train.add_argument("--train-cutoff", type=_date, help="features as of this time for train/validation")
    train.add_argument("--test-cutoff", type=_date, help="features as of this time for the test split")
    train.add_argument("--horizon-days", type=int, default=30, help="churn = no purchase in this many days")
    train.add_argument("--out", type=Path, default=Path("model_store"), help="model store directory")
    train.add_argument("--seed", type=int, default=7)
    train.add_argument("--users", type=int, default=10_000, help="simulated users (preset sim)")
    train.add_argument("--max-epochs", type=int, default=200)
    train.add_argument(
        "--snapshots",
        type=int,
        help="training snapshots up to the train cutoff (default: 4 for the presets, 1 for --events)",
    )
    train.add_argument("--snapshot-every-days", type=int, default=14, help="days between training snapshots")
    train.add_argument(
        "--set-current", action="store_true", help="point model_store/CURRENT at the new bundle"
    )

    recal = commands.add_parser(
        "recalibrate", help="refit a bundle's calibration from observed outcomes; same weights, new version"
    )
    recal.add_argument("--bundle", type=Path, required=True, help="the bundle directory scores came from")
    recal.add_argument(
        "--outcomes",
        type=Path,
        required=True,
        help=".csv or .jsonl with churn_probability (as served) and churned (0/1) per scored user",
    )
    recal.add_argument("--out", type=Path, default=Path("model_store"), help="model store to write into")
    recal.add_argument("--set-current", action="store_true", help="point OUT/CURRENT at the new bundle")

    ablate = commands.add_parser(
        "ablation", help="test ROC AUC and Brier with one snapshot, and with each feature group left out"
    )
    ablate.add_argument("--preset", choices=["sim", "cdnow"], default="sim")
    ablate.add_argument("--users", type=int, default=10_000, help="simulated users (preset sim)")
    ablate.add_argument("--snapshots", type=int, help="training snapshots (default: the preset's)")
    ablate.add_argument("--snapshot-every-days", type=int, default=14)
    ablate.add_argument("--max-epochs", type=int, default=200)
    ablate.add_argument("--seed", type=int, default=7)
    ablate.add_argument("--out", type=Path, help="also write the rows as JSON here")

    sim = commands.add_parser("simulate", help="write a simulated event log")
    sim.add_argument("--users", type=int, default=5_000)
    sim.add_argument("--days", type=int, default=300)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--start", type=_date, help="the first day (default 2025-01-01)")
    sim.add_argument("--out", type=Path, default=Path("data/sim/events.csv"))

    commands.add_parser("serve", help="serve the API (settings from CHURN_* variables)")
    commands.add_parser("redis-up", help="start a local Redis unless CHURN_REDIS_URL points at one")
    commands.add_parser("redis-down", help="stop the Redis at CHURN_REDIS_URL (default: the local one)")
    commands.add_parser("dev-key", help="make a local development API key once (.data/dev-key)")
    key = commands.add_parser("new-key", help="make an API key and the entry that configures it")
    key.add_argument("--id", required=True, help="key id: lower-case letters, digits and '-'")
    key.add_argument(
        "--scope", action="append", required=True, choices=["events", "score", "admin", "metrics"]
    )
    key.add_argument("--rate", type=float, help="rate limit: requests per second (default: none)")
    key.add_argument("--burst", type=int, help="rate limit: bucket size (default: one second's rate)")
    commands.add_parser("dev-secret", help="make a local id secret once (.data/id-secret), never shown")
    rotate = commands.add_parser("rotate-ids", help="move users' keys to the configured id secret's names")
    rotate.add_argument(
        "--old-secret-file", type=Path, required=True, help="the secret the keys were made with"
    )
    rotate.add_argument("--ids", type=Path, required=True, help="the users' ids, one a line ('-': stdin)")

    commands.add_parser(
        "compose-secrets", help="the files docker-compose.yml mounts as secrets (.data/compose/), once"
    )

    drift = commands.add_parser("drift", help="PSI of an event log's users against a bundle's training data")
    drift.add_argument("--bundle", type=Path, required=True, help="a bundle folder: model_store/<version>")
    drift.add_argument("--events", type=Path, required=True, help="event log (.csv, .jsonl, .parquet)")
    drift.add_argument("--as-of", type=_date, help="features as of this time (default: the last event)")
    drift.add_argument("--out", type=Path, default=Path("out/drift"), help="folder for drift.json and plots")
    drift.add_argument("--fail-above", type=float, help="exit with status 1 when a PSI is above this")

    add_action_commands(commands)

    backfill = commands.add_parser("backfill", help="load an event file into the online store")
    backfill.add_argument("--events", type=Path, required=True, help="event log (.csv, .jsonl, .parquet)")
    backfill.add_argument("--chunk-rows", type=_positive, default=100_000, help="rows read at a time")

    score_batch = commands.add_parser(
        "score-batch", help="score the users listed in a file, or every known user, into a file"
    )
    which = score_batch.add_mutually_exclusive_group(required=True)
    which.add_argument("--users", type=Path, help="user ids: one a line, or a column of a .csv file")
    which.add_argument(
        "--all",
        dest="users",
        action="store_const",
        const=None,
        help="every user in the user directory (written while CHURN_USER_DIRECTORY is on)",
    )
    score_batch.add_argument(
        "--warn", action="store_true", help="send warnings for high-risk users, as the service does"
    )
    score_batch.add_argument("--column", default="user_id", help="the ids' column in a .csv file")
    score_batch.add_argument("--out", type=Path, required=True, help="results: .parquet or .csv")
    score_batch.add_argument("--batch", type=_positive, default=4_096, help="users scored at a time")

    args = parser.parse_args(argv)
    if args.command == "train":
        _train(args, argv)
    elif args.command == "ablation":
        _ablation(args)
    elif args.command == "recalibrate":
        _recalibrate(args, argv)
    elif args.command == "simulate":
        _simulate(args)
    elif args.command == "serve":
        _serve()
    elif args.command == "redis-up":
        _redis_up()
    elif args.command == "redis-down":
        _redis_down()
    elif args.command == "dev-key":
        _dev_key()
    elif args.command == "new-key":
        _new_key(args)
    elif args.command == "dev-secret":
        _dev_secret()
    elif args.command == "rotate-ids":
        _rotate_ids(args)
    elif args.command == "compose-secrets":
        _compose_secrets()
    elif args.command == "drift":
        _drift(args)
    elif args.command in ("warnings", "report"):
        run_action_command(args)
    elif args.command == "backfill":
        _backfill(args)
    elif args.command == "score-batch":
        _score_batch(args)
