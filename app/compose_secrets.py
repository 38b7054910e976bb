"""The files docker-compose.yml mounts as secrets, in .data/compose/ (`python -m app compose-secrets`).

Compose bind-mounts a secret file with its host owner and mode, and each container runs as its own user
(the service 10001, Prometheus nobody, Grafana 472): the files are therefore readable by anyone (0444),
and the folder holding them by its owner alone (0700), which keeps other users of the host out.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from app.api.auth import ApiKeyEntry, digest, new_key

FOLDER = Path(".data/compose")
METRICS_KEY_ID = "prometheus"


def _write(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    path.write_text(text)
    path.chmod(0o444)


def _once(path: Path, make: str) -> str:
    """The file's text, written with `make` the first time."""
    if not path.exists():
        _write(path, make)
    return path.read_text()


def write(dev_keys: Path, dev_secret: Path, folder: Path = FOLDER) -> None:
    """The development keys (`dev-key`) plus a key with the `metrics` scope alone for Prometheus, the id
    secret (`dev-secret`) and a Grafana admin password; keys and password are made once and kept."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    metrics_key, _ = new_key(METRICS_KEY_ID, ["metrics"])
    metrics_key = _once(folder / "metrics-key", metrics_key + "\n").strip()
    metrics_entry = ApiKeyEntry(id=METRICS_KEY_ID, scopes=["metrics"], sha256=digest(metrics_key))
    entries = [e for e in json.loads(dev_keys.read_text()) if e["id"] != METRICS_KEY_ID]
    _write(folder / "api_keys.json", json.dumps([*entries, metrics_entry.model_dump()], indent=2) + "\n")
    _write(folder / "id-secret", dev_secret.read_text())
    _once(folder / "grafana-admin-password", secrets.token_urlsafe(24) + "\n")
    names = ", ".join(sorted(os.listdir(folder)))
    print(f"compose secrets in {folder}: {names} (Grafana: admin / the password in grafana-admin-password)")
