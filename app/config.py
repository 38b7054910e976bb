"""Service settings, read from the environment (prefix CHURN_) once, in the app factory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.actions.policy import DEFAULT_POLICY, Policy
from app.api.auth import ApiKeyEntry
from app.schemas import MAX_BATCH as MAX_USERS_PER_REQUEST

DAY = 86_400


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHURN_", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8000
    # Worker processes of `serve`; more than one switches the metrics to Prometheus multi-process mode.
    workers: int = Field(default=1, ge=1, le=64)
    # /score and /events served by raw ASGI handlers in front of the FastAPI router (`make bench-serve`
    # measures both); false routes them through FastAPI like every other path. Both give the same answers.
    fast_routes: bool = True

    # "keys": every route but health and readiness needs an API key with the route's scope (app/api/auth.py),
    # and the service refuses to start without keys. "off" opens everything: only for closed networks.
    auth: Literal["keys", "off"] = "keys"
    # Keys as a JSON list of {"id", "scopes", "sha256"} (the key's SHA-256, never the key), here and/or
    # in a file of the same shape (`make run` writes a development key to .data/api_keys.json).
    api_keys: list[ApiKeyEntry] = []
    api_keys_file: Path | None = None
    # Operational endpoints open without a key; by default each needs one (docs: any key; model: score
    # or admin; metrics: metrics or admin).
    public_endpoints: frozenset[Literal["docs", "model", "metrics"]] = frozenset()

    redis_url: str = "redis://127.0.0.1:6379/0"
    # The URL names any node of a Redis Cluster; the client discovers the others and follows slot moves.
    redis_cluster: bool = False
    # Every key starts with this, so several deployments (or test runs) can share one Redis.
    redis_prefix: str = Field(default="churn", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # Explicit and short: redis-py's defaults (5 s, with retries) would hold requests while Redis stalls.
    redis_timeout_s: float = Field(default=0.25, gt=0, le=10)
    redis_max_connections: int = Field(default=64, ge=1)
    # How long a request waits for a free pooled connection before it is refused as overload (429).
    redis_pool_timeout_s: float = Field(default=0.1, gt=0, le=10)

    model_store: Path = Path("model_store")
    model_version: str | None = None  # default: the version named by model_store/CURRENT
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # A candidate bundle scored beside the served one from the start (POST /admin/model/shadow sets one
    # later); its agreement with the served model is in /model and the churn_shadow_* metrics.
    shadow_version: str | None = None
    # Drift and shadow agreement are measured over the last this many served rows, taking at most
    # monitor_rows_per_batch rows of each batch (spread over it), which bounds their cost per batch.
    monitor_window_rows: int = Field(default=10_000, ge=1_000, le=1_000_000)
    monitor_rows_per_batch: int = Field(default=256, ge=1, le=16_384)

    # Users per gathered batch (one MGET, one feature computation, one forward). At least a whole
    # request, so a request is never split across batches.
    batch_max_rows: int = Field(default=2_048, ge=MAX_USERS_PER_REQUEST, le=16_384)
    # How long a batch's first job waits for company. In a closed loop (clients that wait for each answer
    # before sending again) nothing new arrives meanwhile once every client waits, and a batch of a few
    # users is scored in well under a millisecond here: at 1 ms the core sat idle, waiting on the timer.
    batch_max_delay_ms: float = Field(default=0.5, ge=0, le=2)
    # Users admitted but not yet scored (queued, or in the batch being scored); beyond it requests get
    # 429 before any work is done.
    queue_max_rows: int = Field(default=8_192, ge=MAX_USERS_PER_REQUEST)
    # ... and at most this long to score at the measured pace: what an admitted request waits before its
    # own batch starts, so its latency stays under this plus one batch's time.
    queue_max_wait_ms: float = Field(default=25.0, gt=0)
    # A refusal for overload (429) is answered after this pause: a client that retries at once would
    # otherwise turn refusals into most of the load (each costs a request's HTTP work), and the admitted
    # requests would starve. 0 answers at once.
    overload_pause_ms: float = Field(default=10.0, ge=0, le=1_000)
    score_deadline_s: float = Field(default=2.0, gt=0)
    explain_top_k: int = Field(default=3, ge=1, le=20)

    allowed_lateness_s: int = Field(default=7 * DAY, ge=0)
    max_future_skew_s: int = Field(default=300, ge=0, le=DAY)
    retention_days: int = Field(default=400, ge=91)  # inactive users' keys expire after this long
    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    # On SIGTERM: unready, still serving (with Connection: close) this long, then stop (app/api/drain.py).
    # Longer than the load balancer takes to see /readyz fail; 0 stops at once.
    drain_s: float = Field(default=10.0, ge=0, le=300)
    # Durability of an acknowledged write: 0 answers once the primary has applied it (lost if its host
    # dies within Redis's fsync window); N answers only once N replicas have it (WAIT), else 503.
    ack_replicas: int = Field(default=0, ge=0, le=16)
    ack_timeout_ms: int = Field(default=200, ge=1, le=60_000)
    # Log lines as JSON objects (with the request id), or plain text for a person at a terminal.
    log_format: Literal["json", "text"] = "json"

    # Redis holds a keyed hash of each user id, never the id (app/features/pseudonym.py). Its secret, at
    # least 32 bytes, inline or in a file (so that it need not sit in the environment); one of the two is
    # required. Changing it loses every user's data unless the keys are rotated (README).
    id_secret: SecretStr | None = None
    id_secret_file: Path | None = None
    # Admin actions (erasures) as JSON lines, appended to this file; unset: the `churn.audit` logger,
    # which writes them to stderr.
    audit_log: Path | None = None

    # Warnings to the CRM and their actions (README, "Operating it: warnings, actions and their effect").
    # Off by default: a warning carries the shop's id of the user, and without warnings Redis holds no
    # raw id at all. `make run` turns them on.
    warnings_enabled: bool = False
    # The Redis of the warning stream, cool-down keys and budgets; unset: the store's. The stream holds
    # the shop's ids of warned users (the CRM must know whom to act on), so a Redis of its own keeps
    # raw ids out of the feature store.
    warnings_redis_url: str | None = None
    warnings_stream: str = Field(default="stream", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # The stream keeps about this many messages (MAXLEN ~) and none older than this.
    warnings_stream_max_len: int = Field(default=100_000, ge=100)
    warnings_stream_max_age_days: float = Field(default=14.0, gt=0, le=365)
    warnings_cooldown_s: int = Field(default=7 * DAY, ge=1)
    warnings_tiers: frozenset[Literal["low", "medium", "high"]] = frozenset({"high"})
    warnings_queue_max: int = Field(default=10_000, ge=1)
    warnings_control_share: float = Field(default=0.1, ge=0, le=0.5)
    warnings_control_seed: str = Field(default="control-1", min_length=1, max_length=64)
    # The policy as JSON (app/actions/policy.py), inline or in a file (the file wins).
    warnings_policy: Policy = DEFAULT_POLICY
    warnings_policy_file: Path | None = None

    # The user directory: every write also keeps the user's id, sealed (app/features/directory.py), so
    # that users nobody asks for can be found: the sweep below, `score-batch --all`. Off by default: it
    # costs about 150 bytes of Redis per user and a seal per user written.
    user_directory: bool = False
    # Every this many seconds one replica scores every user in the directory (0: never), so that users
    # who went quiet are scored, and warned about, without being asked for. Needs the user directory.
    sweep_interval_s: float = Field(default=0.0, ge=0)
    sweep_page_users: int = Field(default=512, ge=1, le=MAX_USERS_PER_REQUEST)
    # The sweep's pace: it yields to live traffic (it is refused admission like any request when the
    # queue is full, and waits), and never scores more than this many users a second.
    sweep_max_users_per_s: float = Field(default=20_000.0, gt=0)

    @model_validator(mode="after")
    def _sweep_needs_the_directory(self) -> Settings:
        if self.sweep_interval_s and not self.user_directory:
            raise ValueError("sweep_interval_s needs user_directory: the sweep finds users there")
        return self

    @model_validator(mode="after")
    def _wait_fits_the_socket_timeout(self) -> Settings:
        # WAIT blocks the connection: past the socket timeout it would read as Redis being down.
        if self.ack_replicas and self.ack_timeout_ms >= self.redis_timeout_s * 1000:
            raise ValueError("ack_timeout_ms must be shorter than redis_timeout_s")
        # WAIT counts the replicas of the one node a connection talks to; a write to a cluster spans
        # several primaries, each with its own replicas.
        if self.ack_replicas and self.redis_cluster:
            raise ValueError("ack_replicas is not available with redis_cluster")
        return self
