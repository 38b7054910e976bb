"""Structured logs: one JSON object per line, carrying the id of the request being served.

User ids never appear in log lines at info level or above: requests are identified by their request id
(returned to the client as `X-Request-ID`), and admin actions name users by pseudonym in the audit log.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for name in ("path", "status"):
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def log_config(json_lines: bool) -> dict[str, Any]:
    """uvicorn's `log_config`: every logger (uvicorn's and ours) through one stderr handler."""
    formatter = {"()": JsonFormatter} if json_lines else {"format": "%(levelname)s %(name)s: %(message)s"}
    loggers = {
        name: {"handlers": ["stderr"], "level": "INFO", "propagate": False}
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "churn")
    }
    # Audit lines are JSON already (app/audit.py): written as they are, not wrapped in a log entry.
    loggers["churn.audit"] = {"handlers": ["audit"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter, "bare": {"format": "%(message)s"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default"},
            "audit": {"class": "logging.StreamHandler", "formatter": "bare"},
        },
        "loggers": loggers,
    }
