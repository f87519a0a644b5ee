"""`hub worker`: AMQP consumers, the outbox relay and the periodic jobs, each on its own thread.

Nothing here holds state another process needs: run as many workers as the load wants.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import AmqpBus, MessageBus, make_bus
from adapters.amqp.messages import OutboundMessage
from adapters.amqp.settings import AmqpSettings
from adapters.amqp.topology import DEAD_LETTER_QUEUE, EVENTS_EXCHANGE, INBOUND_QUEUE, Topology
from adapters.resilience import exponential_backoff_s
from hub import refcache
from hub.audit import checkpoints
from hub.clock import Clock
from hub.db import unit_of_work
from hub.exchange.consumer import DeadLetterHandler, InboundHandler
from hub.exchange.service import IngestTally
from hub.exchange.shards import ShardConsumer, ShardLeases
from hub.outbox import wake
from hub.outbox.lease import RelayLease
from hub.outbox.relay import OutgoingEvent, relay_once
from hub.payments.gateways import Gateways
from hub.processes import process_gone
from hub.settings import Settings

if TYPE_CHECKING:
    from hub.metrics.worker import MetricsServer

log = logging.getLogger("hub.worker")
IN_PROCESS_USER = "hub"
RELAY_BATCH = 500  # outbox rows per relay pass


@dataclass
class Job:
    """A periodic job: `run()` returns how much it did; a busy job runs again at once. With ``wake``, an idle
    job sleeps until the event is set (work was committed) or ``idle_seconds`` pass, whichever is first."""

    name: str
    run: Callable[[], int]
    idle_seconds: float = 1.0
    wake: threading.Event | None = None
    # Set for a job that may stand by (the relay while another worker holds its lease): how long to wait on the
    # stop event instead of the wake while it does, or None while it works.
    standing_by: Callable[[], float | None] | None = None

    def pause_s(self, failures: int) -> float:
        """How long to wait when idle: ``idle_seconds`` (a long fallback poll stays long); after failures in a
        row, doubling per failure (five doublings at most), never over 30 s."""
        if failures == 0:
            return self.idle_seconds
        return exponential_backoff_s(failures + 1, initial_s=self.idle_seconds,
                                     max_s=min(30.0, self.idle_seconds * 2 ** 5))


def inbound_prefetch(batch_size: int) -> int:
    """Deliveries each consumer may hold unacknowledged (basic.qos): two batches, so that the next batch is
    already here while one is applied (its acks follow its commit); never below the AMQP adapter's default."""
    return max(AmqpSettings.prefetch, 2 * batch_size)


def hub_user(amqp_url: str | None) -> str:
    if not amqp_url:
        return IN_PROCESS_USER
    return urlparse(amqp_url).username or "guest"


@dataclass
class Worker:
    settings: Settings
    factory: sessionmaker[Session]
    clock: Clock
    bus: MessageBus | None = None  # None: RabbitMQ when settings.amqp_url is set, else the in-process bus
    jobs: list[Job] = field(default_factory=list)
    consume_inbound: bool = True
    payment_gateways: Gateways | None = None  # None: from the settings (hub.payments.gateways)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    # Each job loop's last turn (time.time()) and how long it may take to come round again: the heartbeat.
    _beats: dict[str, tuple[float, float]] = field(default_factory=dict)
    _escalated_on: date | None = None  # the business day of the last full escalation pass
    metrics_server: MetricsServer | None = None  # HUB_WORKER_METRICS_PORT set: serving /metrics (docs/metrics.md)
    _inbound_tally: IngestTally | None = None  # the inbound consumer's outcomes so far, once it started
    _shards: ShardConsumer | None = None  # routing by case on (HUB_INGEST_SHARDS): the shards this worker holds

    def __post_init__(self) -> None:
        from hub.deliveries.clients import DeliveryClients

        refcache.configure(ttl_s=self.settings.reference_cache_ttl_s)
        # One per process, so each partner's circuit breaker remembers across ticks.
        self._delivery_clients = DeliveryClients()
        self._bus: MessageBus = self.bus if self.bus is not None else make_bus(
            self.settings.amqp_url, topology=Topology(shards=self.settings.ingest_shards),
            prefetch=inbound_prefetch(self.settings.ingest_batch_size))
        self.bus = self._bus
        # Not part of MessageBus: only RabbitMQ has a topology to declare.
        declare = getattr(self._bus, "declare_topology", None)
        if declare is not None:
            declare()
        # Woken by commits that wrote outbox rows (hub/outbox/wake.py); the poll is only a fallback.
        self._relay_wake = wake.subscribe()
        self._listener = wake.PgListener.for_engine(self.factory.kw["bind"], self._relay_wake)
        self._relay_lease = RelayLease(self.factory.kw["bind"])
        self.jobs.insert(0, Job("outbox-relay", self._relay, idle_seconds=self.settings.outbox_relay_fallback_s,
                                wake=self._relay_wake, standing_by=self._relay_standing_by))
        self.jobs.append(Job("deliveries", self._deliver, idle_seconds=2.0))
        from hub.verification.jobs import ReverifyJob

        self._reverify = ReverifyJob.from_settings(self.settings, self.factory, self.clock)
        if self._reverify is not None:  # registries configured: re-check applicants left pending
            self.jobs.append(Job("reverify", self._reverify, idle_seconds=5.0))
        if self.settings.supervision_scan_interval_s > 0:  # issue 10: time limits, escalation (part alerts)
            self.jobs.append(Job("supervision", self.supervise,
                                 idle_seconds=self.settings.supervision_scan_interval_s))
        if self.settings.supervision_metrics_rollup_interval_s > 0:  # issue 10: the metrics' daily roll-up
            self.jobs.append(Job("metrics-rollup", self.roll_up_metrics,
                                 idle_seconds=self.settings.supervision_metrics_rollup_interval_s))
        interval = self.settings.audit_checkpoint_interval_s
        if interval > 0:
            self.jobs.append(Job("audit-checkpoint", self.checkpoint, idle_seconds=min(interval, 60.0)))
        self._refund_wake: threading.Event | None = None
        self._add_payment_jobs()

    def _add_payment_jobs(self) -> None:
        """Issue 12 (part reconcile): only when a gateway is configured. Each tick is its own units of work; an
        idle job sleeps its interval (the refund job is also woken by refunds requested in this process)."""
        from hub.payments import refunds

        if self.payment_gateways is None:
            self.payment_gateways = Gateways.from_settings(self.settings)
        if not self.payment_gateways.names():
            return
        settings = self.settings
        self._refund_wake = refunds.subscribe()
        self.jobs.append(Job("payments-query", self.query_payments, idle_seconds=settings.payments_query_interval_s))
        self.jobs.append(Job("payments-refunds", self.send_refunds, idle_seconds=settings.payments_refund_interval_s,
                             wake=self._refund_wake))
        if settings.payments_reconcile_hour >= 0:
            self.jobs.append(Job("payments-reconcile", self.reconcile_payments, idle_seconds=60.0))

    def start(self) -> None:
        self._serve_metrics()  # first: a port already taken fails the start before any work is taken
        user = hub_user(self.settings.amqp_url)
        if self.consume_inbound:
            inbound = InboundHandler(self.factory, self.clock, user, self.settings.audit_key,
                                     batch_size=self.settings.ingest_batch_size,
                                     batch_wait_s=self.settings.ingest_batch_wait_ms / 1000,
                                     lanes=self._ingest_lanes())
            self._inbound_tally = inbound.tally
            self._spawn("inbound", partial(self._consume_inbound, inbound))
            self._start_shards(inbound)
            self._spawn("dead-letters", lambda: self._bus.consume(
                DEAD_LETTER_QUEUE, DeadLetterHandler(self.factory, self.clock, user), stop_event=self._stop))
        if self._listener is not None:
            self._listener.start()
        for job in self.jobs:
            self._spawn(job.name, partial(self._loop, job))

    def _consume_inbound(self, inbound: InboundHandler) -> None:
        """hub.inbound.records, and on RabbitMQ every retired shard queue too (beyond HUB_INGEST_SHARDS, or all of
        them with 0: docs/amqp.md "Case shards"), so switching routing by case off or changing N strands nothing."""
        if isinstance(self._bus, AmqpBus):
            self._bus.consume(INBOUND_QUEUE, inbound, stop_event=self._stop, drain_retired_shards=True)
        else:
            self._bus.consume(INBOUND_QUEUE, inbound, stop_event=self._stop)

    def _start_shards(self, inbound: InboundHandler) -> None:
        """Issue 8, part shards: consume the case shards this worker holds (hub/exchange/shards.py), balanced
        among the live workers every ``ingest_shard_rebalance_s``. Only on RabbitMQ with routing by case on."""
        bus = self._bus
        if not isinstance(bus, AmqpBus) or bus.topology.shards == 0:
            return
        topology = bus.topology
        leases = ShardLeases(self.factory.kw["bind"], topology.shards)

        def consume(queues: Sequence[str], stop: threading.Event) -> None:
            bus.consume(queues, inbound, stop_event=stop)

        self._shards = ShardConsumer(leases, topology.shard_queue, consume)
        job = Job("shards", self._shards.balance, idle_seconds=self.settings.ingest_shard_rebalance_s)
        self._spawn(job.name, partial(self._loop, job))

    def _ingest_lanes(self) -> int:
        """Apply lanes of the inbound consumer (issue 8, part lanes): SQLite runs one writer at a time, so one."""
        if self.factory.kw["bind"].dialect.name == "sqlite":
            return 1
        return self.settings.ingest_lanes

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Stop taking work, let every thread finish what it holds (a consumer its batch: committed, then
        acked), close the connections. Returns the threads still running after ``timeout`` (daemons: they
        die with the process, their uncommitted batch goes back to the queue unacked)."""
        self._stop.set()
        if self._shards is not None:  # its consumer finishes its batch (committed, acked), then the leases go
            self._shards.stop(timeout)
        for job in self.jobs:
            if job.wake is not None:
                job.wake.set()  # it sleeps on its wake event, not on _stop
        if self._refund_wake is not None:
            from hub.payments import refunds

            refunds.unsubscribe(self._refund_wake)
        if self._listener is not None:
            self._listener.stop()
        wake.unsubscribe(self._relay_wake)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if "hub-worker-outbox-relay" not in stuck:
            self._relay_lease.release()  # another worker's relay takes over within its standby interval
        self._bus.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None
        if self._reverify is not None:
            self._reverify.close()
        return stuck

    def heartbeat(self) -> dict[str, object]:
        """Every thread's liveness now, as the heartbeat file holds it (``read_heartbeat`` judges it)."""
        now = time.time()
        threads: dict[str, dict[str, object]] = {}
        for thread in self._threads:
            name = thread.name.removeprefix("hub-worker-")
            entry: dict[str, object] = {"alive": thread.is_alive()}
            if name in self._beats:
                beat, allowed = self._beats[name]
                entry.update(beat_at=beat, allowed_s=allowed)
            threads[name] = entry
        # Every thread of the process by its kernel id, for per-thread CPU (/proc/<pid>/task/<tid>/stat, `top -H`):
        # the LISTEN, metrics and broker threads too, which are not the worker's to judge.
        native_ids = {str(t.native_id): t.name for t in threading.enumerate() if t.native_id is not None}
        state: dict[str, object] = {"pid": os.getpid(), "written_at": now,
                                    "interval_s": self.settings.worker_heartbeat_s, "stopping": self._stop.is_set(),
                                    "threads": threads, "native_ids": native_ids}
        if self._inbound_tally is not None:
            # How the inbound batches went so far: records deferred because another worker held their case, and
            # the batches that had to wait for one (issue 8, part shards).
            state["inbound"] = self._inbound_tally.as_dict()
        if self._shards is not None:
            state["shards"] = self._shards.consuming
        return state

    def breakers(self) -> dict[tuple[str, str], str]:
        """This process's circuit breakers, (kind, target) → state: each partner's delivery endpoint, each
        registry the re-verification calls, each payment gateway."""
        states: dict[tuple[str, str], str] = {}
        for partner, status in self._delivery_clients.status().items():
            states[("delivery", partner)] = str(status.get("breaker", "unknown"))
        if self._reverify is not None:
            for name, status in self._reverify.registries.status().items():
                states[("registry", name)] = str(status.get("breaker", "unknown"))
        gateways = self.payment_gateways
        if gateways is not None:
            for name in gateways.names():
                status_of = getattr(gateways.get(name), "status", None)
                if callable(status_of):
                    states[("payment", name)] = str(status_of().get("breaker", "unknown"))
        return states

    def _serve_metrics(self) -> None:
        if self.settings.worker_metrics_port == 0 or self.metrics_server is not None:
            return
        from hub.metrics.worker import MetricsServer, WorkerCollector

        collector = WorkerCollector(self.factory, self.clock, self, cache_s=self.settings.worker_metrics_cache_s)
        self.metrics_server = MetricsServer(self.settings.worker_metrics_host, self.settings.worker_metrics_port,
                                            collector, token=self.settings.metrics_token)
        self.metrics_server.start()

    def write_heartbeat(self, path: Path) -> None:
        """Atomically (a rename): `hub worker --alive` never reads half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_file = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial_file.write_text(json.dumps(self.heartbeat()), encoding="utf-8")
        partial_file.replace(path)

    def wait(self) -> None:
        while not self._stop.wait(1.0):
            pass

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"hub-worker-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _loop(self, job: Job) -> None:
        failures = 0
        sleep = job.wake or self._stop
        while not self._stop.is_set():
            if job.wake is not None:
                job.wake.clear()  # before looking: a commit from now on wakes the next wait
            self._beat(job, failures)
            try:
                done = job.run()
                failures = 0
            except Exception:
                failures += 1
                log.exception("job %s failed (%d in a row)", job.name, failures)
                done = 0
            standby = job.standing_by() if job.standing_by is not None else None
            self._beat(job, failures, standby)
            if done == 0 and not self._stop.is_set():
                if standby is not None:  # notifications are for the job that works: wake only to try again
                    self._stop.wait(standby)
                else:
                    sleep.wait(job.pause_s(failures))

    def _beat(self, job: Job, failures: int, standby: float | None = None) -> None:
        """The loop came round: it is due again within its pause plus the time a run may take."""
        pause = job.pause_s(failures) if standby is None else max(standby, job.pause_s(failures))
        self._beats[job.name] = (time.time(), pause + self.settings.worker_stall_s)

    def _deliver(self) -> int:
        from hub.deliveries.service import drain

        report = drain(self.factory, clock=self.clock, clients=self._delivery_clients)
        return len(report.sent)  # a count: 0 lets the loop idle (a list never equals 0, and the job spun a core)

    def checkpoint(self) -> int:
        """Publish the chain heads when the last checkpoint is one interval old (hub/audit/checkpoints.py)."""
        with unit_of_work(self.factory) as session:
            checkpoints.emit_if_due(session, key=self.settings.audit_key, now=self.clock.now(),
                                    interval_s=self.settings.audit_checkpoint_interval_s)
        return 0  # at most one per interval: never "busy"

    def supervise(self) -> int:
        """Electronic supervision's periodic work (hub/supervision/scanner.py): one bounded batch of the cases
        whose colour may change today (busy while a batch comes back full), and once per business day a pass
        escalating the red alerts left unresolved."""
        from hub.clock import business_date
        from hub.supervision import scanner

        now = self.clock.now()
        batch = self.settings.supervision_scan_batch
        scanned = scanner.scan_once(self.factory, now=now, batch=batch)
        today = business_date(now)
        if self._escalated_on != today:
            after = 0
            while True:
                with unit_of_work(self.factory) as session:
                    page = scanner.escalate(session, now=now, after=after, batch=batch)
                if page.last_id is None:
                    break
                after = page.last_id
            self._escalated_on = today
        return scanned if scanned >= batch else 0

    def roll_up_metrics(self) -> int:
        """The performance metrics' daily roll-up (hub/supervision/rollup.py): every step due — dirty days to
        recompute, days to roll up — each bounded in its own transaction; returns the days done."""
        from hub.supervision import rollup

        done, days = 0, self.settings.supervision_metrics_rollup_days
        while not self._stop.is_set():
            step = rollup.roll_up(self.factory, now=self.clock.now(), days=days)
            if step == 0:
                break
            done += step
        return done

    def query_payments(self) -> int:
        """Ask the gateways about open orders that heard nothing (hub/payments/reconciliation.py)."""
        from hub.payments import reconciliation

        assert self.payment_gateways is not None
        return reconciliation.query_pending(self.factory, gateways=self.payment_gateways, settings=self.settings,
                                            now=self.clock.now())

    def send_refunds(self) -> int:
        """Send the refunds due, the same refund number on every retry (hub/payments/refunds.py)."""
        from hub.payments import refunds

        assert self.payment_gateways is not None
        return refunds.send_due(self.factory, gateways=self.payment_gateways, now=self.clock.now())

    def reconcile_payments(self) -> int:
        """Yesterday's reconciliation per gateway, once, from ``payments_reconcile_hour`` (China time) on."""
        from hub.payments import reconciliation

        assert self.payment_gateways is not None
        return reconciliation.reconcile_due(self.factory, gateways=self.payment_gateways, settings=self.settings,
                                            now=self.clock.now())

    def _relay(self) -> int:
        """One pass of the outbox relay, if this worker holds the relay's lease (hub/outbox/lease.py)."""
        factory = self._relay_lease.factory(self.factory)
        if factory is None:
            return 0  # another worker's relay works; this one stands by
        try:
            sent = relay_once(factory, self._publish, now=self.clock.now(), batch=RELAY_BATCH)
        except Exception:
            self._relay_lease.release()  # the connection may be gone, and the lock with it: take it again
            raise
        # Busy only while batches come back full. A short one found every row committed before the loop cleared
        # the wake event; a row committed since has set it again, so the wait returns at once — no empty pass
        # (a SELECT … FOR UPDATE and a COMMIT, ≈0.7 ms of CPU) after every wake.
        return sent if sent >= RELAY_BATCH else 0

    def _relay_standing_by(self) -> float | None:
        lease = self._relay_lease
        return None if not lease.exclusive or lease.held else self.settings.outbox_relay_standby_s

    def _publish(self, events: Sequence[OutgoingEvent]) -> None:
        self._bus.publish_many([
            OutboundMessage(
                exchange=EVENTS_EXCHANGE, routing_key=e.routing_key, body=e.body, type=e.event_type,
                message_id=e.message_id, correlation_id=e.correlation_id, headers=e.headers, mandatory=False,
            )
            for e in events
        ])


class StopSignals:
    """SIGTERM/SIGINT noted from the first moment of `hub worker`: a stop that arrives while the worker is still
    starting (keys, schema check, broker connection — seconds on a busy host, e.g. a replica restarted then
    stopped by `docker compose down`) ends it cleanly instead of killing it mid-start with Python's default."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._worker: Worker | None = None
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._on_signal)

    def _on_signal(self, number: int, _frame: object) -> None:
        self.received.append(signal.Signals(number).name)
        if self._worker is not None:
            self._worker._stop.set()

    def attach(self, worker: Worker) -> None:
        self._worker = worker
        if self.received:
            worker._stop.set()


def run_forever(worker: Worker, signals: StopSignals | None = None) -> int:
    """Run until SIGTERM (`docker stop`, systemd) or SIGINT (Ctrl-C): then stop taking deliveries, let each
    thread finish its batch (committed, then acked), close the connections, say so in one log line and
    return 0 — or 1 when a thread did not finish within ``worker_stop_grace_s``."""
    signals = signals or StopSignals()
    signals.attach(worker)
    received = signals.received
    if received:  # stopped while starting: nothing taken yet, nothing to finish
        worker.stop(timeout=worker.settings.worker_stop_grace_s)
        log.info("worker stopped on %s during start-up: nothing was taken", received[0],
                 extra={"status": "stopped"})
        return 0
    heartbeat_file = worker.settings.resolved_heartbeat_file
    worker.start()
    log.info("worker started: %s", ", ".join(t.name for t in worker._threads))
    try:
        while not worker._stop.wait(worker.settings.worker_heartbeat_s):
            _write_heartbeat(worker, heartbeat_file)
    finally:
        started = time.monotonic()
        stuck = worker.stop(timeout=worker.settings.worker_stop_grace_s)
        heartbeat_file.unlink(missing_ok=True)  # a stopped worker is not alive
    why = received[0] if received else "stop requested"
    took = f"{time.monotonic() - started:.1f} s"
    if stuck:
        log.error("worker stopped on %s after %s; still running, abandoned: %s", why, took, ", ".join(stuck),
                  extra={"status": "stopped"})
        return 1
    log.info("worker stopped on %s after %s: every batch finished and acknowledged, connections closed", why,
             took, extra={"status": "stopped"})
    return 0


def _write_heartbeat(worker: Worker, path: Path) -> None:
    try:
        worker.write_heartbeat(path)
    except OSError as exc:  # a full or read-only disk must not stop the work; the health check will say so
        log.warning("heartbeat not written to %s: %s", path, exc)


@dataclass(frozen=True)
class Verdict:
    alive: bool
    reason: str


def read_heartbeat(path: Path, *, now: float) -> Verdict:
    """`hub worker --alive`: whether the worker writing ``path`` runs with every thread alive."""
    try:
        beat = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Verdict(False, f"no heartbeat at {path} (the worker is not running on this host, or has stopped)")
    except (OSError, ValueError) as exc:
        return Verdict(False, f"heartbeat {path} unreadable: {exc}")
    age = now - float(beat["written_at"])
    if age > 3 * float(beat["interval_s"]) + 1:
        return Verdict(False, f"heartbeat {age:.0f} s old (written every {beat['interval_s']} s): the worker hangs "
                              "or has died")
    if process_gone(int(beat["pid"])):
        return Verdict(False, f"the worker process {beat['pid']} is gone")
    dead = [name for name, t in beat["threads"].items() if not t["alive"]]
    if dead:
        return Verdict(False, f"thread(s) died: {', '.join(sorted(dead))}")
    stalled = [name for name, t in beat["threads"].items()
               if "beat_at" in t and float(beat["written_at"]) - float(t["beat_at"]) > float(t["allowed_s"])]
    if stalled:
        return Verdict(False, f"job(s) stalled, not come round in time: {', '.join(sorted(stalled))}")
    return Verdict(True, f"{len(beat['threads'])} threads alive (pid {beat['pid']}, heartbeat {age:.0f} s old)")


