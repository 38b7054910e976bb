"""The Dockerfile and docker-compose.yml, checked as files (no container engine runs the suite): what
they reference exists, health checks gate the start order, settings and ports agree, secrets come from
files."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from app import compose_secrets
from app.api.auth import Keyring
from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PROMETHEUS: dict[str, Any] = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines if line and line[0] != "#"
    ]


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, args in dockerfile():
        if instruction == "FROM":
            current = found.setdefault(args.split(" AS ")[1].strip(), [])
        else:
            current.append((instruction, args))
    return found


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def mounts(service: str) -> dict[str, str]:
    """Container path -> host path of the service's bind mounts (named volumes left out)."""
    pairs = (volume.split(":")[:2] for volume in SERVICES[service].get("volumes", []))
    return {target: source for source, target in pairs if source.startswith("./")}


def test_the_dockerfile_builds_in_two_stages_and_runs_unprivileged_with_an_exec_form_command() -> None:
    found = stages()
    assert list(found) == ["build", "runtime"]
    build, runtime = found["build"], found["runtime"]
    copies = [args for instruction, args in build if instruction == "COPY"]
    # Dependencies are installed from pyproject.toml before the source arrives (layer caching).
    first_install = next(i for i, (ins, args) in enumerate(build) if ins == "RUN" and "pip install" in args)
    assert copies.index("pyproject.toml setup.py README.md ./") < copies.index("app app")
    assert [a for ins, a in build[:first_install] if ins == "COPY" and a.startswith("app ")] == []
    # The feature kernel is compiled in the build stage; the image that runs has no compiler.
    assert any("gcc" in a for ins, a in build[:first_install] if ins == "RUN")
    assert not any("gcc" in a for ins, a in runtime if ins == "RUN")
    # CPU torch by default, from PyTorch's CPU index, at the version pyproject.toml pins.
    args = dict(a.split("=", 1) for ins, a in dockerfile() if ins == "ARG" and "=" in a)
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert "BASE_IMAGE" in args
    assert len(re.findall(r"torch==[0-9.]*", (ROOT / "pyproject.toml").read_text())) == 1
    assert any('--index-url "$TORCH_INDEX"' in a for ins, a in build if ins == "RUN")
    user = [a for ins, a in runtime if ins == "USER"]
    assert user == ["churn"]
    assert any("--from=build /opt/venv" in a for ins, a in runtime if ins == "COPY")
    [healthcheck] = [a for ins, a in runtime if ins == "HEALTHCHECK"]
    check = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert check[:2] == ["python", "-c"] and "urllib.request" in check[2] and "/healthz" in check[2]
    [command] = [a for ins, a in runtime if ins == "CMD"]
    assert json.loads(command) == ["python", "-m", "app", "serve"]


def test_the_dockerfile_copies_only_what_exists() -> None:
    for instruction, args in dockerfile():
        words = args.split()
        if instruction == "COPY" and not words[0].startswith("--from="):
            for source in words[:-1]:
                assert (ROOT / source).exists(), source


def test_ports_line_up_between_image_compose_scrape_target_and_health_check() -> None:
    runtime = stages()["runtime"]
    image_env = dict(
        pair.split("=", 1) for ins, a in runtime if ins == "ENV" for pair in a.split() if "=" in pair
    )
    [exposed] = [a for ins, a in runtime if ins == "EXPOSE"]
    port = env("churn")["CHURN_PORT"]
    assert image_env["CHURN_PORT"] == exposed == port
    [published] = SERVICES["churn"]["ports"]
    assert published.rsplit(":", 1)[1] == port
    [job] = PROMETHEUS["scrape_configs"]
    [discovery] = job["dns_sd_configs"]
    assert discovery["names"] == ["churn"] and str(discovery["port"]) == port
    # The health check reads the port the service listens on, whatever it is set to.
    [healthcheck] = [a for ins, a in runtime if ins == "HEALTHCHECK"]
    assert "os.environ['CHURN_PORT']" in healthcheck


def test_every_churn_variable_in_compose_is_a_setting() -> None:
    names = [name for name in env("churn") if name.startswith("CHURN_")]
    assert names
    settings = {f"CHURN_{field.upper()}" for field in Settings.model_fields}
    assert set(names) <= settings, sorted(set(names) - settings)


def test_start_order_waits_on_health_checks() -> None:
    depends = {name: service.get("depends_on", {}) for name, service in SERVICES.items()}
    assert depends["churn"] == {"redis": {"condition": "service_healthy"}}
    assert depends["prometheus"] == {"churn": {"condition": "service_healthy"}}
    assert depends["grafana"] == {"prometheus": {"condition": "service_healthy"}}
    for name in ("redis", "prometheus", "grafana"):
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD"
    # The service's own check is the image's HEALTHCHECK; compose must not switch it off.
    assert "healthcheck" not in SERVICES["churn"]


def test_redis_keeps_an_append_only_file_and_publishes_no_port() -> None:
    redis = SERVICES["redis"]
    assert "ports" not in redis
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_every_mounted_file_exists_and_lines_up_with_the_configuration() -> None:
    for service in SERVICES:
        for source in mounts(service).values():
            assert (ROOT / source).exists(), f"{service} mounts {source}, which is not in the repository"
    prometheus = mounts("prometheus")
    config_path = "/etc/prometheus/prometheus.yml"
    assert prometheus[config_path] == "./deploy/prometheus/prometheus.yml"
    for rule_file in PROMETHEUS["rule_files"]:  # relative to the configuration's folder
        assert prometheus[f"/etc/prometheus/{rule_file}"] == f"./deploy/prometheus/{rule_file}"
    assert SERVICES["churn"]["build"]["context"] == "."
    grafana = mounts("grafana")
    provisioning = ROOT / grafana["/etc/grafana/provisioning"]
    [provider] = yaml.safe_load((provisioning / "dashboards/churn.yml").read_text())["providers"]
    dashboards = ROOT / grafana[provider["options"]["path"]]
    assert (dashboards / "churn.json").exists()
    [source] = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in SERVICES
    dashboard = json.loads((dashboards / "churn.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}


def test_keys_and_secrets_come_from_secret_files_never_inline() -> None:
    inline = {"CHURN_API_KEYS", "CHURN_ID_SECRET", "GF_SECURITY_ADMIN_PASSWORD"}
    for service in SERVICES:
        assert not inline & set(env(service)), service
    declared = COMPOSE["secrets"]
    for service, body in SERVICES.items():
        for name in body.get("secrets", []):
            assert declared[name]["file"].startswith("./.data/compose/"), name  # never committed
            for value in env(service).values():
                if value.startswith("/run/secrets/"):
                    assert value.removeprefix("/run/secrets/") in body["secrets"], (service, value)
    assert env("churn")["CHURN_REDIS_URL"].startswith("redis://redis:")
    assert env("churn")["CHURN_API_KEYS_FILE"] == "/run/secrets/api_keys"
    assert env("churn")["CHURN_ID_SECRET_FILE"] == "/run/secrets/id_secret"
    [job] = PROMETHEUS["scrape_configs"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_key"
    assert "metrics_key" in SERVICES["prometheus"]["secrets"]
    assert (ROOT / ".dockerignore").read_text().splitlines()[1] == "*"  # nothing unlisted, .data included


def test_compose_secrets_writes_every_secret_file_compose_names(tmp_path: Path) -> None:
    dev_keys, dev_secret = tmp_path / "api_keys.json", tmp_path / "id-secret"
    dev_keys.write_text(json.dumps([{"id": "dev", "scopes": ["score"], "sha256": "0" * 64}]))
    dev_secret.write_text("a-development-id-secret-of-at-least-32-bytes\n")
    folder = tmp_path / "compose"
    compose_secrets.write(dev_keys, dev_secret, folder)
    metrics_key = (folder / "metrics-key").read_text()
    compose_secrets.write(dev_keys, dev_secret, folder)  # again: the same key, not a new one
    assert (folder / "metrics-key").read_text() == metrics_key
    named = {Path(secret["file"]).name for secret in COMPOSE["secrets"].values()}
    assert {path.name for path in folder.iterdir()} == named
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o444 for path in folder.iterdir())
    keyring = Keyring.load([], folder / "api_keys.json")
    caller = keyring.authenticate(f"Bearer {metrics_key.strip()}")
    assert caller.scopes == frozenset({"metrics"})
    assert (folder / "id-secret").read_text() == dev_secret.read_text()
