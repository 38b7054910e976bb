"""The audit log: each admin action as one JSON line.

A line: `time` (RFC 3339, UTC), `key_id` (the caller's API key id; null with auth off), `action`,
`target` (the user's pseudonym, never the raw id, so the log names nobody without the id secret; for
model operations, the bundle version),
`outcome`, and the action's own details. Lines are appended to CHURN_AUDIT_LOG, or by default handed to
the `churn.audit` logger, which writes them to stderr unless logging is configured for it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

LOGGER: Final = logging.getLogger("churn.audit")


def _to_stderr_unless_configured() -> None:
    """Audit lines must not vanish: Python drops INFO records of a logger nobody configured."""
    if not LOGGER.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False


class AuditLog:
    def __init__(self, path: Path | None) -> None:
        self._fd: int | None = None
        self._lock = threading.Lock()
        if path is None:
            _to_stderr_unless_configured()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND with one write per line: whole lines, also with several workers on one file.
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(
        self, when: datetime, key_id: str | None, action: str, target: str, outcome: str, **details: object
    ) -> None:
        time = when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry = {"time": time, "key_id": key_id, "action": action, "target": target, "outcome": outcome}
        line = json.dumps(entry | details, separators=(",", ":"))
        if self._fd is None:
            LOGGER.info(line)
            return
        with self._lock:
            os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
