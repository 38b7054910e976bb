"""`python -m app warnings consume ...` and `python -m app report interventions ...`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.actions.webhook import Webhook


def add_commands(commands: Any) -> None:
    """Add the commands to the main parser's subparsers."""
    warnings = commands.add_parser("warnings", help="the CRM's side of the warning stream")
    warning_commands = warnings.add_subparsers(dest="warnings_command", required=True)
    consume = warning_commands.add_parser(
        "consume", help="read warnings with a consumer group, print each as a JSON line, acknowledge it"
    )
    consume.add_argument("--group", required=True, help="consumer group (created, from the stream's start)")
    consume.add_argument("--consumer", required=True, help="this consumer's name within the group")
    consume.add_argument("--out", type=Path, help="append the messages to this file (default: stdout)")
    consume.add_argument(
        "--claim-idle-s", type=float, default=60.0, help="take over others' unacknowledged messages this old"
    )
    consume.add_argument("--block-ms", type=int, default=5_000, help="how long one read waits for news")
    consume.add_argument("--max-messages", type=int, help="stop after this many (default: run until stopped)")
    consume.add_argument(
        "--until-idle", action="store_true", help="stop once a read finds nothing (a periodic job's run)"
    )
    consume.add_argument(
        "--webhook", help="POST each message to this http(s) URL, signed, acknowledging it once delivered"
    )
    consume.add_argument(
        "--webhook-secret-file", type=Path, help="the shared secret the signature is keyed with (>= 16 bytes)"
    )
    consume.add_argument("--webhook-attempts", type=int, default=6, help="attempts per message, with backoff")

    report = commands.add_parser("report", help="reports")
    report_commands = report.add_subparsers(dest="report_command", required=True)
    interventions = report_commands.add_parser(
        "interventions", help="buy-again rates of treated and control users, per action and segment"
    )
    interventions.add_argument(
        "--warnings",
        required=True,
        help="warnings as JSON lines (what `warnings consume` writes), or a Redis URL to read the "
        "configured stream from (redis://host:port/db; a #key at the end names another stream)",
    )
    interventions.add_argument(
        "--events", type=Path, required=True, help="event log (.csv, .jsonl, .parquet)"
    )
    interventions.add_argument(
        "--horizon-days", type=int, default=30, help="bought again within this many days"
    )
    interventions.add_argument("--out", type=Path, required=True, help="folder for the table and the plot")


def run_command(args: argparse.Namespace) -> None:
    if args.command == "warnings":
        _consume(args)
    else:
        _report(args)


def _consume(args: argparse.Namespace) -> None:
    import redis

    from app.actions.consumer import WarningConsumer
    from app.actions.warnings import stream_key
    from app.actions.webhook import DeliveryFailed
    from app.config import Settings

    settings = Settings()
    url = settings.warnings_redis_url or settings.redis_url
    webhook = _webhook(args)
    # With a webhook, messages go there (and to --out when given); without, to --out or stdout.
    out = args.out.open("a") if args.out else (sys.stdout if webhook is None else None)

    def handle(message: dict[str, Any]) -> None:
        # Delivered, or written and flushed, before the acknowledgement: a crash in between redelivers,
        # never loses.
        if webhook is not None:
            webhook.deliver(message)
        if out is not None:
            out.write(json.dumps(message) + "\n")
            out.flush()

    with redis.Redis.from_url(url, decode_responses=True, socket_timeout=args.block_ms / 1000 + 5) as client:
        consumer = WarningConsumer(
            client,
            stream_key(settings.redis_prefix, settings.warnings_stream),
            args.group,
            args.consumer,
            claim_idle_ms=int(args.claim_idle_s * 1000),
        )
        try:
            consumer.run(
                handle, block_ms=args.block_ms, max_messages=args.max_messages, until_idle=args.until_idle
            )
        except KeyboardInterrupt:
            pass
        except DeliveryFailed as error:
            sys.exit(f"warnings consume: {error}; the message stays pending and is delivered again later")
        finally:
            if args.out and out is not None:
                out.close()


def _webhook(args: argparse.Namespace) -> Webhook | None:
    """The webhook the options ask for, or None; refuses a URL without a secret and the reverse."""
    from app.actions.webhook import Webhook

    if (args.webhook is None) != (args.webhook_secret_file is None):
        sys.exit("warnings consume: --webhook and --webhook-secret-file go together")
    if args.webhook is None:
        return None
    try:
        secret = args.webhook_secret_file.read_bytes().rstrip(b"\r\n")
        return Webhook(args.webhook, secret, attempts=args.webhook_attempts)
    except (OSError, ValueError) as error:
        sys.exit(f"warnings consume: {error}")


def _report(args: argparse.Namespace) -> None:
    from app.actions.report import ReportError, read_warnings, write_report
    from app.features.offline import EventLogError, read_event_log

    try:
        warnings = read_warnings(args.warnings)
        events = read_event_log(args.events)
        table = write_report(warnings, events, args.horizon_days, args.out)
    except (ReportError, EventLogError, OSError) as error:
        sys.exit(f"report interventions: {error}")
    print(table)
