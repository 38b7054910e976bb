"""Pseudonymised user ids: Redis sees keyed hashes only; the secret is required, at least 32 bytes, from
the settings or a file; `dev-secret` makes one; `rotate-ids` moves users' keys to a new secret."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from app.cli import main
from app.features.keys import KEY_SUFFIX, TOMBSTONE_SUFFIX, user_tag
from app.features.pseudonym import IdSecretError, Pseudonyms, load_secret
from app.main import create_app
from tests.helpers import T, before, event
from tests.live import LiveServer, live_server, settings_for
from tests.test_online_store import EVENTS, run

SECRET = b"0123456789abcdef0123456789abcdef"
RAW_IDS = ["alice.smith@example.com", "customer-80417", "Zq9-x"]
END = "pseudonym-test-end"


def pseudonyms_of(server: LiveServer) -> Pseudonyms:
    return Pseudonyms.load(server.settings.id_secret, server.settings.id_secret_file)


def test_a_pseudonym_is_the_keyed_blake2b_of_the_id_and_is_pinned() -> None:
    # Every stored key is named by this function: changing it orphans every user's data.
    assert Pseudonyms(SECRET).of("u-42") == "001562e6699ae5968788ace4b51bbd65"
    assert Pseudonyms(SECRET).of("u-43") != Pseudonyms(SECRET).of("u-42")
    assert Pseudonyms(SECRET + b"!").of("u-42") != Pseudonyms(SECRET).of("u-42")
    assert re.fullmatch(r"[0-9a-f]{32}", Pseudonyms(b"x" * 100).of("u-42"))  # longer secrets work too


def test_a_missing_short_or_doubled_secret_is_refused(redis_url: str, tmp_path: Path) -> None:
    with pytest.raises(IdSecretError, match="no id secret configured"):
        create_app(settings_for(redis_url, id_secret=None))
    with pytest.raises(IdSecretError, match="at least 32 bytes, not 31"):
        load_secret(SecretStr("s" * 31), None)
    short = tmp_path / "short"
    short.write_bytes(b"s" * 31 + b"\n")  # the newline does not count
    with pytest.raises(IdSecretError, match="at least 32 bytes, not 31"):
        load_secret(None, short)
    with pytest.raises(IdSecretError, match="not both"):
        load_secret(SecretStr("s" * 32), short)
    with pytest.raises(IdSecretError, match="cannot read"):
        load_secret(None, tmp_path / "absent")


def test_the_secret_can_come_from_a_file(redis_url: str, tmp_path: Path) -> None:
    secret_file = tmp_path / "id-secret"
    secret_file.write_bytes(SECRET + b"\n")
    assert load_secret(None, secret_file) == SECRET
    with (
        live_server(redis_url, id_secret=None, id_secret_file=secret_file) as server,
        server.client() as http,
    ):
        assert http.post("/events", json={"events": [event("u-42", "page_view", T, "e1")]}).json()["accepted"]
    with redis.Redis.from_url(redis_url) as client:
        # The pseudonym of "u-42" under SECRET, in its bucket (its first 8 hex digits mod 64 = 0x26).
        assert client.keys("*") == [b"test:{26}:001562e6699ae5968788ace4b51bbd65:ev:v2"]


def test_redis_never_sees_a_raw_user_id_and_answers_carry_the_callers_ids(redis_url: str) -> None:
    rows = [event(u, "purchase", before(days=i + 1), f"p-{i}", amount=5.0) for i, u in enumerate(RAW_IDS)]
    monitor_client = redis.Redis.from_url(redis_url, decode_responses=True)
    with live_server(redis_url) as server, server.client() as http, monitor_client.monitor() as monitor:
        assert http.post("/events", json={"events": rows}).json()["accepted"] == len(RAW_IDS)
        scored = http.post("/score", json={"user_ids": RAW_IDS, "explain": True}).json()
        features = http.get(f"/users/{RAW_IDS[0]}/features").json()
        erased = http.delete(f"/users/{RAW_IDS[1]}").json()
        monitor_client.echo(END)  # on another connection of the pool: the monitor sees it last
        commands = []
        for entry in monitor.listen():
            if END in entry["command"]:
                break
            commands.append(entry["command"])
        pseudonyms = [pseudonyms_of(server).of(u) for u in RAW_IDS]
    assert [r["user_id"] for r in scored["results"]] == RAW_IDS
    assert features["user_id"] == RAW_IDS[0] and features["known_user"] is True
    assert erased["user_id"] == RAW_IDS[1]
    # Every command of the write, the reads and the erasure went by, naming pseudonyms only.
    seen = "\n".join(commands)
    assert {"EVALSHA", "MGET", "DEL", "SET"} <= {c.split(" ", 1)[0].strip('"').upper() for c in commands}
    assert all(p in seen for p in pseudonyms)
    assert not [u for u in RAW_IDS if u in seen]
    with redis.Redis.from_url(redis_url) as client:
        keys = sorted(k.decode() for k in client.scan_iter(count=1000))
    assert not [k for k in keys if any(u in k for u in RAW_IDS)]
    assert keys == sorted(
        [
            user_tag("test", pseudonyms[0]) + KEY_SUFFIX,
            user_tag("test", pseudonyms[1]) + TOMBSTONE_SUFFIX,
            user_tag("test", pseudonyms[2]) + KEY_SUFFIX,
        ]
    )


def test_dev_secret_makes_an_owner_only_secret_once_and_never_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    main(["dev-secret"])
    path = tmp_path / ".data" / "id-secret"
    secret = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(load_secret(None, path)) >= 32
    main(["dev-secret"])  # kept, not replaced: a new secret would orphan every stored user
    assert path.read_bytes() == secret
    printed = capsys.readouterr().out
    assert "id-secret" in printed and secret.decode().strip() not in printed


def test_rotate_ids_renames_the_listed_users_keys_to_the_new_secrets_pseudonyms(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = Pseudonyms(SECRET), Pseudonyms(b"n" * 40)
    run(redis_url, lambda store: store.apply(EVENTS, T), pseudonyms=old)  # users a and b
    run(redis_url, lambda store: store.erase(old.of("b"), T), pseudonyms=old)
    before_rotation = run(redis_url, lambda store: store.read(["a"], T), pseudonyms=old)
    old_file, ids_file = tmp_path / "old-secret", tmp_path / "ids.txt"
    old_file.write_bytes(SECRET + b"\n")
    ids_file.write_text("a\nb\nnever-seen\n")
    monkeypatch.setenv("CHURN_REDIS_URL", redis_url)
    monkeypatch.setenv("CHURN_REDIS_PREFIX", "t")
    monkeypatch.setenv("CHURN_ID_SECRET", "n" * 40)
    main(["rotate-ids", "--old-secret-file", str(old_file), "--ids", str(ids_file)])
    assert "3 user ids: 2 keys renamed, 0 left" in capsys.readouterr().out

    with redis.Redis.from_url(redis_url) as client:
        keys = {k.decode() for k in client.keys("*")}
        tombstone_ttl = client.ttl(user_tag("t", new.of("b")) + TOMBSTONE_SUFFIX)
    assert keys == {user_tag("t", new.of("a")) + KEY_SUFFIX, user_tag("t", new.of("b")) + TOMBSTONE_SUFFIX}
    assert tombstone_ttl > 0  # RENAMENX keeps the expiry
    after_rotation = run(redis_url, lambda store: store.read(["a"], T), pseudonyms=new)
    assert (after_rotation[0] == before_rotation[0]).all() and after_rotation[1].tolist() == [True]
    # The erasure holds under the new secret: b's old events are still refused.
    late = run(redis_url, lambda store: store.apply([EVENTS[8]], T), pseudonyms=new)
    assert [r.reason for r in late.rejected] == ["erased"]

    # A name the new secret already holds is left alone, never overwritten.
    run(redis_url, lambda store: store.apply(EVENTS[:1], T), pseudonyms=old)
    main(["rotate-ids", "--old-secret-file", str(old_file), "--ids", str(ids_file)])
    assert "3 user ids: 0 keys renamed, 1 left (the new name was taken)" in capsys.readouterr().out


def test_rotate_ids_refuses_to_rotate_to_the_same_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_file, ids_file = tmp_path / "old-secret", tmp_path / "ids.txt"
    old_file.write_bytes(SECRET)
    ids_file.write_text("a\n")
    monkeypatch.setenv("CHURN_ID_SECRET", SECRET.decode())
    with pytest.raises(SystemExit, match="nothing to rotate"):
        main(["rotate-ids", "--old-secret-file", str(old_file), "--ids", str(ids_file)])
