"""`hub worker`'s metrics endpoint (issue 13): what an operator must see of the asynchronous side.

Served at ``http://HUB_WORKER_METRICS_HOST:HUB_WORKER_METRICS_PORT/metrics`` (port 0: off), in Prometheus text,
behind the same optional bearer token as the api's (HUB_METRICS_TOKEN). Every name is documented in
docs/metrics.md.

* From the database, read at scrape time: the outbox backlog and the age of its oldest unsent row, the inbox's
  outcomes, dead letters waiting, deliveries failing by partner, held events. These figures are the hub's, not
  this process's: every worker replica answers the same (aggregate with ``max``, never ``sum``). A scrape must
  not hammer PostgreSQL: each family is one query, run at most once per ``worker_metrics_cache_s`` by each
  worker process, however many scrapers ask (concurrent scrapes wait for the one query in flight).
* From this process: its circuit breakers by target (this process's view: each worker has its own breakers)
  and its threads' liveness (the heartbeat `hub worker --alive` reads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, union_all
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import Clock
from hub.metrics import exposition

log = logging.getLogger("hub.metrics")

INBOX_OUTCOMES = ("applied", "duplicate", "stale", "held", "rejected", "dead_lettered")
BREAKER_STATES = ("closed", "open", "half_open")


class Observed(Protocol):
    """What the collector reads of the running worker (hub.worker.Worker)."""

    def heartbeat(self) -> dict[str, object]: ...

    def breakers(self) -> dict[tuple[str, str], str]: ...


Rows = list[tuple[Any, ...]]


@dataclass
class _Cached:
    """One family's query result, kept ``ttl_s``: concurrent scrapes share the one query in flight. A failed
    read is not tried again before ``ttl_s`` either: a database in trouble is not asked more for being down."""

    query: Callable[[Session], Rows]
    ttl_s: float
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rows: Rows | None = None
    _failure: Exception | None = None
    _read_at: float = float("-inf")

    def rows(self, factory: sessionmaker[Session]) -> Rows:
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl_s:
                self._read_at = time.monotonic()
                try:
                    with factory() as session:
                        self._rows, self._failure = self.query(session), None
                except Exception as exc:
                    self._rows, self._failure = None, exc
                    raise
            if self._failure is not None:
                raise self._failure
            assert self._rows is not None
            return self._rows


def _outbox(session: Session) -> Rows:
    from hub.outbox.models import OutboxMessage as O

    return [tuple(session.execute(select(func.count(), func.min(O.occurred_at)).where(O.sent_at.is_(None))).one())]


def _inbox(session: Session) -> Rows:
    from hub.exchange.models import InboxMessage as I
    from hub.exchange.models import PartnerRejection as R

    applied = select(I.outcome.label("outcome"), func.count().label("n")).group_by(I.outcome)
    refused = select(R.outcome.label("outcome"), func.count().label("n")).group_by(R.outcome)
    return [tuple(row) for row in session.execute(union_all(applied, refused))]


def _dead_letters(session: Session) -> Rows:
    from hub.exchange.models import DeadLetter as D

    return [tuple(session.execute(select(func.count(), func.min(D.received_at)).where(D.replayed_at.is_(None))).one())]


def _deliveries(session: Session) -> Rows:
    from hub.deliveries.models import Delivery as D

    given_up = D.next_attempt_at.is_(None)
    query = (select(D.partner_code, D.kind, D.status, given_up, func.count())
             .where(D.status.in_(("pending", "failed"))).group_by(D.partner_code, D.kind, D.status, given_up))
    return [tuple(row) for row in session.execute(query)]


def _held(session: Session) -> Rows:
    from hub.exchange.models import PendingEvent as P

    query = select(P.partner_code, func.count(), func.min(P.received_at)).group_by(P.partner_code)
    return [tuple(row) for row in session.execute(query)]



class WorkerCollector(Collector):
    """The worker's own families (the process-wide registry adds the process's and the outbound counters)."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock, worker: Observed, *, cache_s: float) -> None:
        self.factory = factory
        self.clock = clock
        self.worker = worker
        self._families = {name: _Cached(query, cache_s) for name, query in (
            ("outbox", _outbox), ("inbox", _inbox), ("dead_letters", _dead_letters), ("deliveries", _deliveries),
            ("held", _held))}

    def collect(self) -> Iterator[Any]:
        now = self.clock.now()
        database_up = 1
        for name, cached in self._families.items():
            if not database_up:
                break  # one family failed: the others would wait for the same unreachable database
            try:
                rows = cached.rows(self.factory)
            except Exception as exc:  # the database away: say so in a gauge, never fail the scrape
                log.warning("metrics: could not read %s from the database: %s", name, type(exc).__name__)
                database_up = 0
                continue
            yield from getattr(self, f"_{name}")(rows, now)
        up = GaugeMetricFamily("hub_worker_database_up",
                               "1 when the worker's last reads of its database figures succeeded, else 0")
        up.add_metric([], database_up)
        yield up
        yield from self._breakers()
        yield from self._threads()

    # --- database families ---------------------------------------------------------------------------

    def _outbox(self, rows: Rows, now: datetime) -> Iterable[Any]:
        [(count, oldest)] = rows
        yield GaugeMetricFamily("hub_outbox_backlog", "Outbox events not yet published to hub.events",
                                value=int(count))
        yield GaugeMetricFamily("hub_outbox_oldest_unsent_age_seconds",
                                "Age of the oldest unpublished outbox event (0: none waiting)",
                                value=_age(oldest, now))

    def _inbox(self, rows: Rows, now: datetime) -> Iterable[Any]:
        counts = dict.fromkeys(INBOX_OUTCOMES, 0)
        for outcome, number in rows:
            counts[str(outcome)] = counts.get(str(outcome), 0) + int(number)
        family = CounterMetricFamily(
            "hub_inbox_messages", "Partner messages by outcome, as the database holds them (inbox: applied, "
            "duplicate, stale, held; partner_rejections: rejected, dead_lettered)", labels=["outcome"])
        for outcome, number in counts.items():
            family.add_metric([outcome], number)
        yield family

    def _dead_letters(self, rows: Rows, now: datetime) -> Iterable[Any]:
        [(count, oldest)] = rows
        yield GaugeMetricFamily("hub_dead_letters_waiting", "Dead letters stored and not replayed",
                                value=int(count))
        yield GaugeMetricFamily("hub_dead_letters_oldest_age_seconds",
                                "Age of the oldest dead letter waiting (0: none)", value=_age(oldest, now))

    def _deliveries(self, rows: Rows, now: datetime) -> Iterable[Any]:
        failing = GaugeMetricFamily(
            "hub_deliveries_failing", "Deliveries whose last attempt failed, by partner and kind; retry: "
            "scheduled (another attempt is due) or given_up (only `hub deliveries retry` sends it)",
            labels=["partner", "kind", "retry"])
        pending = GaugeMetricFamily("hub_deliveries_pending", "Deliveries waiting for their first attempt",
                                    labels=["partner", "kind"])
        for partner, kind, status, given_up, count in rows:
            if status == "failed":
                failing.add_metric([partner, kind, "given_up" if given_up else "scheduled"], int(count))
            else:
                pending.add_metric([partner, kind], int(count))
        yield failing
        yield pending

    def _held(self, rows: Rows, now: datetime) -> Iterable[Any]:
        held = GaugeMetricFamily("hub_events_held", "Partner case steps held until their predecessor arrives",
                                 labels=["partner"])
        oldest = GaugeMetricFamily("hub_events_held_oldest_age_seconds",
                                   "Age of the oldest held step, by partner", labels=["partner"])
        for partner, count, first in rows:
            held.add_metric([partner], int(count))
            oldest.add_metric([partner], _age(first, now))
        yield held
        yield oldest

    # --- this process ------------------------------------------------------------------------------

    def _breakers(self) -> Iterable[Any]:
        family = GaugeMetricFamily(
            "hub_circuit_breaker_state", "This worker's circuit breakers: 1 for the current state of each target "
            "(kind: delivery = a partner's SOAP endpoint, registry, payment gateway)",
            labels=["kind", "target", "state"])
        for (kind, target), state in sorted(self.worker.breakers().items()):
            for candidate in BREAKER_STATES:
                family.add_metric([kind, target, candidate], 1 if state == candidate else 0)
        yield family

    def _threads(self) -> Iterable[Any]:
        beat = self.worker.heartbeat()
        written = float(beat["written_at"])  # type: ignore[arg-type]
        alive = GaugeMetricFamily(
            "hub_worker_thread_alive", "1 when the worker thread runs and, for a periodic job, came round in time "
            "(what `hub worker --alive` checks)", labels=["thread"])
        age = GaugeMetricFamily("hub_worker_thread_beat_age_seconds",
                                "Seconds since a periodic job's loop last came round", labels=["thread"])
        threads: dict[str, dict[str, Any]] = beat["threads"]  # type: ignore[assignment]
        for name, entry in sorted(threads.items()):
            ok = bool(entry["alive"])
            if "beat_at" in entry:
                since = max(0.0, written - float(entry["beat_at"]))
                ok = ok and since <= float(entry["allowed_s"])
                age.add_metric([name], since)
            alive.add_metric([name], 1 if ok else 0)
        yield alive
        yield age


def _age(moment: datetime | None, now: datetime) -> float:
    return 0.0 if moment is None else max(0.0, (now - moment).total_seconds())


class _Combined:
    """The process-wide registry (process figures, outbound counters) followed by the worker's families."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()
        yield from self.collector.collect()


class MetricsServer:
    """A small threaded HTTP server: GET /metrics, nothing else."""

    def __init__(self, host: str, port: int, collector: Collector, *, token: str | None) -> None:
        combined = _Combined(collector)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self._answer(404, b"not found: the worker serves /metrics only\n", "text/plain; charset=utf-8")
                elif not exposition.authorised(self.headers.get("Authorization"), token):
                    self._answer(401, exposition.unauthorised_body(), exposition.UNAUTHORISED_HEADERS["Content-Type"],
                                 {"WWW-Authenticate": exposition.UNAUTHORISED_HEADERS["WWW-Authenticate"]})
                else:
                    self._answer(200, generate_latest(combined), exposition.CONTENT_TYPE)  # type: ignore[arg-type]

            def _answer(self, status: int, body: bytes, content_type: str,
                        headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-worker-metrics", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def start(self) -> None:
        self._thread.start()
        log.info("worker metrics at %s", self.url)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
