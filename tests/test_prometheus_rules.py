"""The Prometheus configuration and alert rules under deploy/prometheus, checked and unit-tested by
promtool (Debian's `prometheus` package; CI installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@needs_promtool
def test_the_scrape_configuration_is_valid_with_its_key_file_present(tmp_path: Path) -> None:
    # promtool also checks that the credentials file exists: point it at one here, as a deployment has.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    key_file = tmp_path / "metrics_key"
    key_file.write_text("ck_placeholder\n")
    [job] = config["scrape_configs"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_key"
    job["authorization"]["credentials_file"] = str(key_file)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path)
    out = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS" in out and "rules found" in out


@needs_promtool
def test_the_alert_rules_are_valid() -> None:
    out = promtool("check", "rules", "alerts.yml")
    assert "SUCCESS: 9 rules found" in out


@needs_promtool
def test_every_alert_has_unit_tests_and_they_pass() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    checks = [check for test in tests for check in test.get("alert_rule_test", [])]
    # Each alert is shown firing at least once and shown not firing at least once.
    assert {c["alertname"] for c in checks if c["exp_alerts"]} == alerts
    assert {c["alertname"] for c in checks if not c["exp_alerts"]} == alerts
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_every_alert_names_its_runbook_entry_in_the_readme() -> None:
    readme = (PROMETHEUS.parents[1] / "README.md").read_text()
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    for rule in (r for group in rules["groups"] for r in group["rules"]):
        assert rule["annotations"]["runbook"] == f"README.md#{rule['alert'].lower()}"
        assert f"#### {rule['alert']}\n" in readme, f"no runbook entry for {rule['alert']}"
