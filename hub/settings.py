"""The one settings object: every knob comes from a ``HUB_`` environment variable."""

from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-secret-change-me-in-production-0123456789"
DEV_AUDIT_KEY = "dev-only-audit-key-change-me-in-production-9876543210"
# Compose mounts its `secrets:` here (read-only, often mode 0444): a file under it may be readable by others.
RUN_SECRETS = Path("/run/secrets")


class SecretFileRefused(Exception):
    """A ``HUB_*_FILE`` secret cannot be used (both forms set, file missing, empty or open to other users);
    the message names the variables and the file. Not a ValueError: pydantic lets it through unwrapped, so
    `hub` answers it in one line (hub/cli.py) instead of a validation traceback."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str = ""
    amqp_url: str | None = None

    secret_key: str = DEV_SECRET
    # Keys the audit chain (HMAC); kept outside the database so a database writer cannot recompute it.
    audit_key: str = DEV_AUDIT_KEY
    token_ttl_minutes: int = Field(default=30, ge=1, le=24 * 60)

    max_material_bytes: int = 10 * 1024 * 1024
    material_content_types: tuple[str, ...] = (
        "application/pdf",
        "image/jpeg",
        "image/png",
        "application/ofd",
    )
    max_materials_per_case: int = 50

    log_json: bool = True
    log_level: str = "INFO"

    public_base_url: str = "http://127.0.0.1:8000"

    # Registries (docs/registries.md). None: not configured, verification is "not_configured".
    population_wsdl: str | None = None
    enterprise_url: str | None = None
    tax_wsdl: str | None = None
    organisation_url: str | None = None
    registry_timeout_s: float = Field(default=1.5, gt=0, le=60)  # per attempt, in API requests
    registry_attempts: int = Field(default=2, ge=1, le=10)  # in API requests
    registry_worker_timeout_s: float = Field(default=5.0, gt=0, le=120)  # per attempt, worker re-verification
    registry_worker_attempts: int = Field(default=3, ge=1, le=10)
    registry_breaker_failures: int = Field(default=5, ge=1)
    registry_breaker_reset_s: float = Field(default=30.0, gt=0)
    registry_cache_ttl_s: float = Field(default=60.0, ge=0)
    verification_budget_s: float = Field(default=3.0, ge=0, le=60)  # registry time a submission may spend
    reverify_batch: int = Field(default=50, ge=1, le=10_000)  # cases per worker re-verification round
    mock_registries_base_port: int = 8100  # `hub up` starts the mocks here when no registry is configured

    # Idempotency (rules): how long the first answer to an `Idempotency-Key` is kept (it holds the
    # applicant's query code, encrypted); a retry after that is a new request.
    idempotency_key_ttl_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    # Audit (audit): how often the worker publishes `audit.checkpoint.v1` (all chain heads); 0 = never.
    audit_checkpoint_interval_s: float = Field(default=3600.0, ge=0)
    # Abuse limits (throttle): counters live in the database, so every API process shares them.
    login_account_attempts: int = Field(default=5, ge=1)  # failed sign-ins per username and window
    login_address_attempts: int = Field(default=20, ge=1)  # failed sign-ins per source address and window
    login_window_s: int = Field(default=900, ge=1)
    query_code_attempts: int = Field(default=5, ge=1)  # wrong query codes per tracking number and window
    query_code_window_s: int = Field(default=900, ge=1)
    max_json_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)  # every body but uploads and SOAP
    max_soap_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    multipart_overhead_bytes: int = Field(default=64 * 1024, ge=0)  # boundaries and form fields of an upload
    wsse_created_window_s: int = Field(default=300, ge=1)  # UsernameToken Created: at most this far from now
    # Idle cost (issue 8, part 7): the relay wakes on commit (same process) and on NOTIFY (PostgreSQL);
    # this poll only catches rows written by another process on SQLite, or by raw SQL.
    outbox_relay_fallback_s: float = Field(default=5.0, gt=0)
    # Reference-data caches (issue 8, part cache; hub/refcache.py): on PostgreSQL every process hears of a
    # change by NOTIFY; on SQLite (and on PostgreSQL while the LISTEN connection is down) a process trusts
    # what it cached this long, then reads again: another process may have changed it. 0: read every time.
    reference_cache_ttl_s: float = Field(default=5.0, ge=0)
    # Batched ingest (issue 8, part ingest): the inbound consumer applies up to this many prefetched records
    # per transaction (each in its own savepoint), waiting at most the wait for more once one is there. A batch
    # has ~12 ms of fixed CPU (its ~21 statements: look-ups, writes, rules, commit) whatever its size, so 400:
    # −12 % of a record's CPU against 200, while 800 cost two workers more than it saved (session 16,
    # docs/performance.md). The worker prefetches twice a batch per consumer.
    ingest_batch_size: int = Field(default=400, ge=1, le=1000)
    ingest_batch_wait_ms: float = Field(default=10.0, ge=0, le=1000)
    # Electronic supervision, time limits (issue 10, part alerts; hub/supervision/scanner.py): `hub worker`
    # scans the cases whose colour may change today every this many seconds, this many per transaction;
    # 0 turns the scan (and the escalation of unresolved red alerts) off in this worker.
    supervision_scan_interval_s: float = Field(default=60.0, ge=0)
    supervision_scan_batch: int = Field(default=500, ge=1, le=10000)
    # Partner lifecycle (issue 11, part lifecycle; hub/exchange/provisioning.py): the RabbitMQ management API
    # `hub partners add|rotate|disable|enable|sync` use. Default: the broker's host, port 15672, with the
    # hub's own AMQP user (an administrator); a user and password in this URL take precedence.
    rabbitmq_management_url: str | None = None
    # Electronic supervision, performance metrics (issue 10, part metrics; hub/supervision/rollup.py): `hub
    # worker` rolls the closed days' case figures up (and recomputes the days a later write made dirty) every
    # this many seconds, this many days per transaction; 0 turns the roll-up off in this worker (the metrics
    # then read the cases for every day after the last roll-up: exact, slower over long periods).
    supervision_metrics_rollup_interval_s: float = Field(default=300.0, ge=0)
    supervision_metrics_rollup_days: int = Field(default=31, ge=1, le=366)
    # Operations (issue 13, part ops; docs/operations.md): `hub api` and `hub worker` migrate on start unless
    # this is false (`--no-migrate`; compose runs `hub db upgrade` once as its `migrate` job). The worker
    # writes its threads' liveness to ``worker_heartbeat_file`` (default <data_dir>/heartbeats/worker-<host
    # name>.json) every ``worker_heartbeat_s``; `hub worker --alive` reads it and fails when the file is older
    # than three beats, a thread has died, or a job has not come round for its pause plus ``worker_stall_s``.
    # On SIGTERM/SIGINT the worker waits up to ``worker_stop_grace_s`` for its threads to finish their batch
    # (keep it under the container's stop grace period).
    migrate_on_start: bool = True
    worker_heartbeat_file: Path | None = None
    worker_heartbeat_s: float = Field(default=5.0, gt=0, le=300)
    worker_stall_s: float = Field(default=300.0, gt=0)
    worker_stop_grace_s: float = Field(default=20.0, gt=0, le=3600)

    # issue 12 payments (part orders; hub/payments/gateways.py, docs/payments.md). A gateway whose url is empty
    # is not offered. Key files are PEM: the merchant's own private key (and UnionPay certificate) and the
    # gateway's public key / signing certificate. ``payments_public_url``: where the gateways call back and
    # browsers return to (default: ``public_base_url``).
    payments_public_url: str = ""
    payments_alipay_url: str = ""
    payments_alipay_app_id: str = ""
    payments_alipay_seller_id: str = ""
    payments_alipay_private_key_file: Path | None = None
    payments_alipay_public_key_file: Path | None = None
    payments_unionpay_url: str = ""
    payments_unionpay_mer_id: str = ""
    payments_unionpay_private_key_file: Path | None = None
    payments_unionpay_cert_file: Path | None = None
    payments_unionpay_gateway_cert_file: Path | None = None
    payments_timeout_s: float = Field(default=5.0, gt=0, le=60)
    payments_order_ttl_s: int = Field(default=1800, ge=60, le=7 * 24 * 3600)
    # Payments, reconciliation and refunds (issue 12, part reconcile; hub/payments/reconciliation.py, refunds.py):
    # `hub worker` asks the gateway about an order left created/pending without a notification for
    # payments_query_after_s (then again with backoff from payments_query_interval_s), looks for refunds to send
    # every payments_refund_interval_s, and reconciles yesterday with each gateway's statement from this hour
    # (China time) on; -1 turns the daily reconciliation off in this worker.
    payments_query_after_s: float = Field(default=60.0, ge=0)
    payments_query_interval_s: float = Field(default=15.0, gt=0)
    payments_refund_interval_s: float = Field(default=10.0, gt=0)
    payments_reconcile_hour: int = Field(default=3, ge=-1, le=23)
    # Connection budget (issue 13, part compose; docs/operations.md "Connection budgets"): the PostgreSQL pool
    # of each `hub api` / `hub worker` process — at most pool + overflow connections, plus its one LISTEN
    # connection. Size max_connections for every process at its limit. SQLite keeps SQLAlchemy's own pool.
    db_pool_size: int = Field(default=20, ge=1, le=1000)
    db_max_overflow: int = Field(default=20, ge=0, le=1000)
    # The broker administrator's password for the partner commands and `hub bootstrap` (compose: the
    # `rabbitmq_admin_password` secret, with HUB_RABBITMQ_MANAGEMENT_URL=http://admin@rabbitmq:15672); the
    # hub's own AMQP user is no administrator there. Used only when that URL names a user.
    rabbitmq_management_password_file: Path | None = None

    # Metrics (issue 13, part metrics; hub/metrics/, docs/metrics.md). ``metrics_token`` (HUB_METRICS_TOKEN, or
    # HUB_METRICS_TOKEN_FILE) set: /metrics on the api and the worker answer 401 without `Authorization: Bearer
    # <token>`; unset or empty: open. `hub worker` serves Prometheus text at http://<worker_metrics_host>:
    # <worker_metrics_port>/metrics (port 0: off); its figures read from the database are read at most once per
    # ``worker_metrics_cache_s`` (one query per family), however often it is scraped.
    metrics_token: str | None = None
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_cache_s: float = Field(default=10.0, ge=0, le=3600)

    # Secrets from files (issue 13, part boot; docs/bootstrap.md): every secret may be given as ``HUB_<X>_FILE``,
    # a file whose stripped content is the value (compose `secrets:`); the file must not be open to group or
    # other unless it lives under /run/secrets. Setting both ``HUB_<X>`` and ``HUB_<X>_FILE`` is refused. The
    # database and broker passwords are put into HUB_DATABASE_URL / HUB_AMQP_URL, which then carry none.
    # ``bootstrap_admin_password_file``: the first administrator's password for `hub bootstrap` (a file only).
    secret_key_file: Path | None = None
    audit_key_file: Path | None = None
    metrics_token_file: Path | None = None
    database_password_file: Path | None = None
    amqp_password_file: Path | None = None
    bootstrap_admin_password_file: Path | None = None

    # One outbox relay per installation (issue 8, part relay; hub/outbox/lease.py): on PostgreSQL the relay of
    # one worker holds a session-level advisory lock; every other worker's relay stands by and tries for the
    # lock every this many seconds (so it takes over this soon after the holder stops or dies).
    outbox_relay_standby_s: float = Field(default=2.0, gt=0, le=60)

    # issue 8, part lanes (adapters/amqp/lanes.py, docs/performance-lanes.md): the inbound consumer applies its
    # batches on this many threads at once, each case's records always on the same one, so the worker's Python
    # runs while PostgreSQL executes another lane's batch. 1: one batch at a time. SQLite always uses 1. Default 1:
    # with PostgreSQL on the same 2-core machine two lanes gained 0-7 % for one worker and cost two workers 10-18 %
    # (docs/performance.md); they are for a PostgreSQL whose round trips are long (another host).
    ingest_lanes: int = Field(default=1, ge=1, le=32)
    # issue 8, part shards (hub/exchange/shards.py, docs/amqp.md "Case shards", docs/performance-shards.md): > 0
    # routes each case's records (by the correlation_id partners set to the case's external id) to one of this
    # many shard queues, each consumed by one worker at a time, so two workers never meet on a case. Needs the
    # RabbitMQ plugin rabbitmq_consistent_hash_exchange (`hub worker` stops at start, saying so, without it).
    # Default 4 (issue 8, part default): two workers drain 1.59-1.65 x one with it, 0.99-1.11 on the one queue;
    # with one worker it costs nothing. 0: the one queue hub.inbound.records. Only with HUB_AMQP_URL (the
    # in-process bus has one queue).
    ingest_shards: int = Field(default=4, ge=0, le=64)
    # How often each worker compares its shard leases with its fair share (ceil(shards / live workers)) and takes
    # or gives up shards: a joining or dead worker's shards move within about two of these.
    ingest_shard_rebalance_s: float = Field(default=5.0, gt=0, le=300)
    _secret_files: dict[str, Path] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        for name in ("secret_key", "audit_key", "metrics_token"):
            path = getattr(self, f"{name}_file")
            if path is None:
                continue
            if name in self.model_fields_set:
                raise SecretFileRefused(f"both {_env(name)} and {_env(name)}_FILE are set: set one of them")
            setattr(self, name, read_secret_file(path, variable=f"{_env(name)}_FILE"))
            self._secret_files[name] = path
        if self.database_password_file is not None:
            self.database_url = _with_database_password(self.database_url, self.database_password_file)
        if self.amqp_password_file is not None:
            self.amqp_url = _with_amqp_password(self.amqp_url, self.amqp_password_file)
        return self

    def secret_file_of(self, name: str) -> Path | None:
        """The file a secret setting (``secret_key``, ``audit_key``, ``metrics_token``) was read from, if any."""
        return self._secret_files.get(name)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hub.db').as_posix()}"

    @property
    def materials_dir(self) -> Path:
        return self.data_dir / "materials"

    @property
    def resolved_heartbeat_file(self) -> Path:
        """Per host (container) by default: replicas sharing one data volume never write each other's file."""
        if self.worker_heartbeat_file is not None:
            return self.worker_heartbeat_file
        import socket

        return self.data_dir / "heartbeats" / f"worker-{socket.gethostname()}.json"


def _env(name: str) -> str:
    return f"HUB_{name.upper()}"


def read_secret_file(path: Path, *, variable: str) -> str:
    """The stripped content of a secret file, or ``SecretFileRefused`` naming ``variable`` and the file."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SecretFileRefused(f"{variable}: the file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileRefused(f"{variable}: the file {path} cannot be read ({type(exc).__name__})") from None
    if mode & 0o077 and not path.absolute().is_relative_to(RUN_SECRETS):
        raise SecretFileRefused(f"{variable}: the file {path} is open to other users (mode {mode:o}); "
                                f"`chmod 600 {path}`")
    if not value:
        raise SecretFileRefused(f"{variable}: the file {path} is empty")
    return value


def _with_database_password(url: str, path: Path) -> str:
    from sqlalchemy.engine import make_url  # settings stay importable without SQLAlchemy's URL machinery

    if not url:
        raise SecretFileRefused("HUB_DATABASE_PASSWORD_FILE is set but HUB_DATABASE_URL is not "
                                "(the SQLite default takes no password)")
    parsed = make_url(url)
    if parsed.password:
        raise SecretFileRefused("both HUB_DATABASE_URL (with a password) and HUB_DATABASE_PASSWORD_FILE are set: "
                                "leave the password out of the URL")
    password = read_secret_file(path, variable="HUB_DATABASE_PASSWORD_FILE")
    return parsed.set(password=password).render_as_string(hide_password=False)


def _with_amqp_password(url: str | None, path: Path) -> str:
    if not url:
        raise SecretFileRefused("HUB_AMQP_PASSWORD_FILE is set but HUB_AMQP_URL is not")
    parts = urlsplit(url)
    if parts.password:
        raise SecretFileRefused("both HUB_AMQP_URL (with a password) and HUB_AMQP_PASSWORD_FILE are set: "
                                "leave the password out of the URL")
    if not parts.username:
        raise SecretFileRefused("HUB_AMQP_PASSWORD_FILE is set but HUB_AMQP_URL names no user "
                                "(amqp://USER@host:5672/vhost)")
    password = read_secret_file(path, variable="HUB_AMQP_PASSWORD_FILE")
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{quote(password, safe='')}@{host}"))


@lru_cache
def get_settings() -> Settings:
    return Settings()
