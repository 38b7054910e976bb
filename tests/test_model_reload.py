"""Hot reload against a real server: under load no request fails and answers switch version; a bundle
that fails a check is refused with its reason while the served one keeps answering; SIGHUP reloads
model_store/CURRENT; every attempt is audited."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.model.bundle import set_current
from app.redis_server import free_port
from tests.bundles import drop_a_feature_name, flip_weight_bytes, model_store
from tests.live import AUTH, TEST_KEY_ENTRY, LiveServer, live_server, serve_process, wait_ready

USERS = {"user_ids": ["u-1", "u-2"], "explain": False}


def audit_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def model_info(http: httpx.Client) -> dict[str, float]:
    families = text_string_to_metric_families(http.get("/metrics").text)
    return {
        sample.labels["version"]: sample.value
        for family in families
        if family.name == "churn_model_info"
        for sample in family.samples
    }


def test_reloading_under_load_fails_no_request_and_switches_the_answers(
    redis_url: str, tmp_path: Path
) -> None:
    store, served, other = model_store(tmp_path)
    audit = tmp_path / "audit.jsonl"
    answers: list[tuple[float, float, int, str]] = []  # (sent, answered, status, model version)
    lock, stop = threading.Lock(), threading.Event()

    def client(server: LiveServer) -> None:
        with server.client() as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    answer = http.post("/score", json=USERS)
                    version = answer.json().get("model_version", "")
                    outcome = (sent, time.monotonic(), answer.status_code, version)
                except httpx.TransportError as error:
                    outcome = (sent, time.monotonic(), 0, type(error).__name__)
                with lock:
                    answers.append(outcome)

    with live_server(redis_url, model_store=store, audit_log=audit) as server, server.client() as admin:
        threads = [threading.Thread(target=client, args=(server,)) for _ in range(4)]
        for thread in threads:
            thread.start()

        def answered_since(moment: float, at_least: int = 40) -> None:
            deadline = time.monotonic() + 30
            while sum(sent > moment for sent, *_ in list(answers)) < at_least:
                assert time.monotonic() < deadline, "the clients got too few answers"
                time.sleep(0.05)

        answered_since(0)
        switches = []
        for version in (other, served):
            asked = time.monotonic()
            reply = admin.post("/admin/model", json={"version": version})
            switches.append((asked, time.monotonic(), version))
            assert reply.status_code == 200, reply.text
            assert reply.json()["version"] == version
            answered_since(switches[-1][1])
        stop.set()
        for thread in threads:
            thread.join(10)
        described = admin.get("/model").json()
        info = model_info(admin)

    assert Counter(status for _, _, status, _ in answers) == Counter({200: len(answers)})
    (asked_b, done_b, _), (asked_a, done_a, _) = switches
    # Sent after a reload answered and before the next was asked: the new version, every time.
    after_b = [v for sent, answered, _, v in answers if done_b < sent and answered < asked_a]
    after_a = [v for sent, _, _, v in answers if done_a < sent]
    before = [v for sent, answered, _, v in answers if answered < asked_b]
    assert before and set(before) == {served}
    assert after_b and set(after_b) == {other}
    assert after_a and set(after_a) == {served}
    assert described["version"] == served and described["loaded_by"] == "api"
    assert info[served] == 1 and info[other] == 0
    reloads = [line for line in audit_lines(audit) if line["action"] == "reload_model"]
    assert [(r["target"], r["previous"], r["outcome"]) for r in reloads] == [
        (other, served, "loaded"),
        (served, other, "loaded"),
    ]
    assert all(r["key_id"] == "tests" and r["trigger"] == "api" for r in reloads)


@pytest.mark.parametrize(
    ("break_it", "check"),
    [
        (flip_weight_bytes, "check 'sha256' failed: model.safetensors does not match the manifest"),
        (lambda store, name: (store / name / "segments.json").unlink(), "check 'file presence' failed"),
        (drop_a_feature_name, "check 'feature names' failed"),
    ],
)
def test_a_broken_bundle_is_refused_and_the_served_one_keeps_answering(
    redis_url: str, tmp_path: Path, break_it: object, check: str
) -> None:
    store, served, _ = model_store(tmp_path)
    shutil.copytree(store / served, store / "broken")
    break_it(store, "broken")  # type: ignore[operator]
    audit = tmp_path / "audit.jsonl"
    with live_server(redis_url, model_store=store, audit_log=audit) as server, server.client() as http:
        refused = http.post("/admin/model", json={"version": "broken"})
        assert refused.status_code == 409
        body = refused.json()
        assert body["error"] == "bundle_refused" and check in body["message"]
        assert body["detail"] == [{"field": "version", "message": body["message"]}]
        assert http.post("/score", json=USERS).json()["model_version"] == served
        assert http.get("/model").json()["version"] == served
        shadow = http.post("/admin/model/shadow", json={"version": "broken"})
        assert shadow.status_code == 409 and http.get("/model").json()["shadow"] is None
    (line,) = [line for line in audit_lines(audit) if line["action"] == "reload_model"]
    assert line["outcome"] == "refused" and check in str(line["reason"]) and line["target"] == "broken"


def test_versions_not_in_the_store_are_not_found_and_malformed_ones_bad_requests(
    redis_url: str, tmp_path: Path
) -> None:
    store, served, _ = model_store(tmp_path)
    with live_server(redis_url, model_store=store) as server, server.client() as http:
        for version, status, message in (
            ("nowhere", 404, "no bundle 'nowhere'"),
            ("../model_store", 422, "should match"),
        ):
            answer = http.post("/admin/model", json={"version": version})
            assert answer.status_code == status, answer.text
            assert answer.json()["detail"][0]["field"] == "version"
            assert message in answer.json()["detail"][0]["message"]
        unknown_field = http.post("/admin/model", json={"versio": served})
        assert unknown_field.status_code == 422 and unknown_field.json()["detail"][0]["field"] == "versio"
        # No body, or a null version: the store's CURRENT.
        assert http.post("/admin/model").json()["version"] == served
        assert http.post("/admin/model", json={"version": None}).json()["version"] == served


def test_reloading_needs_the_admin_scope(redis_url: str, tmp_path: Path) -> None:
    from app.api.auth import new_key

    key, entry = new_key("scorer", ["score"])
    store, _, other = model_store(tmp_path)
    with (
        live_server(redis_url, model_store=store, api_keys=[TEST_KEY_ENTRY, entry]) as server,
        server.client(headers={"authorization": f"Bearer {key}"}) as http,
    ):
        for method, path in (("POST", "/admin/model"), ("POST", "/admin/model/shadow")):
            answer = http.request(method, path, json={"version": other})
            assert answer.status_code == 403 and answer.json()["error"] == "forbidden"
        assert http.delete("/admin/model/shadow").status_code == 403
        assert http.get("/model/drift").status_code == 200  # reading is the score scope's, as /model


def test_concurrent_reloads_run_one_after_the_other(redis_url: str, tmp_path: Path) -> None:
    store, served, other = model_store(tmp_path)
    audit = tmp_path / "audit.jsonl"
    with live_server(redis_url, model_store=store, audit_log=audit) as server:
        replies: list[httpx.Response] = []

        def reload(version: str) -> None:
            with server.client() as http:
                replies.append(http.post("/admin/model", json={"version": version}))

        threads = [threading.Thread(target=reload, args=(v,)) for v in (other, served, other, served)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with server.client() as http:
            final = http.get("/model").json()["version"]
    assert [reply.status_code for reply in replies] == [200] * 4
    chain = [line for line in audit_lines(audit) if line["action"] == "reload_model"]
    # Serialised: each reload replaced what the one before it had loaded.
    assert [line["previous"] for line in chain[1:]] == [line["target"] for line in chain[:-1]]
    assert chain[0]["previous"] == served and chain[-1]["target"] == final


def serve(store: Path, redis_url: str, port: int, audit: Path, log: Path) -> subprocess.Popen[bytes]:
    return serve_process(
        redis_url,
        port,
        log,
        CHURN_REDIS_PREFIX="reload",
        CHURN_MODEL_STORE=str(store),
        CHURN_AUDIT_LOG=str(audit),
        CHURN_DRAIN_S="0",
    )


def wait_for_version(http: httpx.Client, version: str) -> None:
    deadline = time.monotonic() + 60
    while http.get("/model").json()["version"] != version:
        assert time.monotonic() < deadline, f"still not serving {version}"
        time.sleep(0.1)


def test_sighup_reloads_the_stores_current_and_keeps_serving_a_refused_one(
    redis_url: str, tmp_path: Path
) -> None:
    store, served, other = model_store(tmp_path)
    shutil.copytree(store / served, store / "broken")
    flip_weight_bytes(store, "broken")
    port, audit, log = free_port(), tmp_path / "audit.jsonl", tmp_path / "serve.log"
    proc = serve(store, redis_url, port, audit, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as http:
            set_current(store, other)
            proc.send_signal(signal.SIGHUP)
            wait_for_version(http, other)
            assert http.post("/score", json=USERS).json()["model_version"] == other
            assert http.get("/model").json()["loaded_by"] == "SIGHUP"
            set_current(store, "broken")
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while not any(line["outcome"] == "refused" for line in audit_lines(audit)):
                assert time.monotonic() < deadline, "the refused reload was not audited"
                time.sleep(0.1)
            assert proc.poll() is None
            assert http.post("/score", json=USERS).json()["model_version"] == other
    finally:
        proc.terminate()
        proc.wait(30)
    lines = [(line["target"], line["outcome"], line["trigger"]) for line in audit_lines(audit)]
    assert lines == [(other, "loaded", "SIGHUP"), ("broken", "refused", "SIGHUP")]
