"""Static checks of the container files (no Docker engine runs here)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_runs_the_service_against_its_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["churn"]
    assert service["environment"]["CHURN_REDIS_URL"].startswith("redis://redis:")
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "redis" in compose["services"]
    # Keys come from a secret file, never from the image or the compose file itself.
    assert service["environment"]["CHURN_API_KEYS_FILE"] == "/run/secrets/api_keys"
    assert compose["secrets"]["api_keys"]["file"] == "./.data/api_keys.json"
    assert service["environment"]["CHURN_ID_SECRET_FILE"] == "/run/secrets/id_secret"
    assert compose["secrets"]["id_secret"]["file"] == "./.data/id-secret"


def test_dockerfile_copies_only_what_exists() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    for words in (line.split() for line in dockerfile if line.startswith("COPY")):
        for source in words[1:-1]:
            assert (ROOT / source).exists(), source
