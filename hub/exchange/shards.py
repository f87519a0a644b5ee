"""Each case's records at one worker (issue 8, part shards): which `hub worker` consumes which shard queue.

With HUB_INGEST_SHARDS = N > 0 the broker routes every record by its case (the ``correlation_id`` property) to
one of N shard queues (adapters/amqp/topology.py). A shard is consumed by the worker that holds its lease:

* a lease is a PostgreSQL session-level advisory lock, held on a connection of its own (out of the pool, as the
  outbox relay's lease in hub/outbox/lease.py); each live worker also holds a member lock, so the leases count
  the workers without a table: a worker's fair share is ceil(N / live workers);
* every ``ingest_shard_rebalance_s`` each worker compares what it holds with its share: it takes free shards up to
  it, and gives up the ones above it (their consumer first finishes its batch: committed, then acked), so a worker
  that joins gets its share within two intervals;
* a worker that stops releases its leases; one that dies (SIGKILL, a lost host) loses its database session, and
  PostgreSQL releases its locks with it: the others take its shards at their next turn, and the broker hands its
  unacknowledged deliveries to them;
* the leases only save work, they guard nothing: two workers on one shard for a moment (a half-dead connection,
  a hand-over) are only slower — the per-case transaction locks and deferral (hub/exchange/service.py) still keep
  each case's records apart and in order;
* SQLite has no advisory locks (and one process writes it): there a worker holds every shard.

The shard consumer is one more consumer of the worker, on one channel for all its shards (adapters/amqp/consumer.py),
beside the consumer of ``hub.inbound.records``, which every worker keeps draining (records queued before routing
was switched on, or by hand).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("hub.exchange.shards")

# Two-int4 advisory keys, beside the outbox relay's (0x6875_6200, 1): "hub" + 1 for the shards, + 2 for members.
SHARD_CLASS = 0x6875_6201
MEMBER_CLASS = 0x6875_6202
_TRY = text("SELECT pg_try_advisory_lock(:class_id, :object_id)")
_UNLOCK = text("SELECT pg_advisory_unlock(:class_id, :object_id)")
_HOLDERS = text(
    "SELECT l.objid::int AS key, l.pid, a.application_name FROM pg_locks l "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.classid = :class_id AND l.objsubid = 2 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def fair_share(shards: int, members: int) -> int:
    """How many shards each of ``members`` live workers should hold (rounded up: every shard has a holder)."""
    return math.ceil(shards / max(members, 1))


@dataclass(frozen=True)
class ShardHolder:
    shard: int
    pid: int  # the holding worker's database session
    name: str  # its application_name: "hub-worker <host> <pid>"


def holders(connection: Connection) -> list[ShardHolder]:
    """Who holds which shard now (for `hub exchange status`); PostgreSQL only."""
    rows = connection.execute(_HOLDERS, {"class_id": SHARD_CLASS}).all()
    return sorted((ShardHolder(int(key), int(pid), name or "") for key, pid, name in rows), key=lambda h: h.shard)


def live_workers(connection: Connection) -> int:
    return len(connection.execute(_HOLDERS, {"class_id": MEMBER_CLASS}).all())


class ShardLeases:
    """This worker's shard leases: ``balance`` takes or gives up shards toward its fair share."""

    def __init__(self, engine: Engine, shards: int) -> None:
        self.engine = engine
        self.shards = shards
        self.exclusive = engine.dialect.name == "postgresql"
        self.held: set[int] = set()
        self._connection: Connection | None = None

    def wanted(self) -> int:
        """This worker's fair share now (joining as a member first, if it is not one)."""
        if not self.exclusive:
            return self.shards
        connection = self._connect()
        try:
            with connection.begin():  # never idle in a transaction between turns
                members = live_workers(connection)
            return fair_share(self.shards, members)
        except Exception:
            self.close()
            raise

    def take(self, count: int) -> set[int]:
        """Up to ``count`` more shards that nobody holds; the ones taken."""
        if not self.exclusive:
            taken = set(range(self.shards)) - self.held
        else:
            connection = self._connect()
            taken = set()
            try:
                with connection.begin():  # a session-level lock outlives the transaction that took it
                    for shard in self._free_order():
                        if len(taken) >= count:
                            break
                        if connection.execute(_TRY, {"class_id": SHARD_CLASS, "object_id": shard}).scalar():
                            taken.add(shard)
            except Exception:
                self.close()
                raise
        self.held |= taken
        if taken:
            log.info("shard(s) %s taken: this worker consumes %s", sorted(taken), sorted(self.held))
        return taken

    def release(self, shards: Sequence[int]) -> None:
        self.held.difference_update(shards)
        if self._connection is not None:
            try:
                with self._connection.begin():
                    for shard in shards:
                        self._connection.execute(_UNLOCK, {"class_id": SHARD_CLASS, "object_id": shard})
            except Exception:
                self.close()  # the session is gone or unusable: with it every lock it held
                raise
        log.info("shard(s) %s given up: this worker consumes %s", sorted(shards), sorted(self.held))

    def close(self) -> None:
        """Every lease and the membership given up: the session ends (never back to the pool, locks and all)."""
        connection, self._connection = self._connection, None
        self.held = set() if self.exclusive else self.held
        if connection is None:
            return
        try:
            connection.invalidate()
        finally:
            connection.close()

    def _free_order(self) -> list[int]:
        # Each worker starts looking at another shard (by its process id), so two workers joining at once do not
        # race for the same ones first.
        start = os.getpid() % max(self.shards, 1)
        order = [(start + i) % self.shards for i in range(self.shards)]
        return [s for s in order if s not in self.held]

    def _connect(self) -> Connection:
        if self._connection is not None:
            return self._connection
        connection = self.engine.connect()
        try:
            with connection.begin():
                connection.execute(text("SELECT set_config('application_name', :name, false)"),
                                   {"name": f"hub-worker {socket.gethostname()} {os.getpid()}"[:63]})
                connection.execute(_TRY, {"class_id": MEMBER_CLASS, "object_id": _backend_pid(connection)})
        except Exception:
            connection.invalidate()
            connection.close()
            raise
        self._connection = connection
        self.held = set()  # a new session holds nothing yet
        return connection


def _backend_pid(connection: Connection) -> int:
    return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


Consume = Callable[[Sequence[str], threading.Event], None]


class ShardConsumer:
    """The worker's consumer of the shard queues it holds: restarted with the new set when that changes."""

    def __init__(self, leases: ShardLeases, queue_of: Callable[[int], str], consume: Consume) -> None:
        self.leases = leases
        self.queue_of = queue_of
        self.consume = consume
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._consuming: frozenset[int] = frozenset()
        self._lock = threading.Lock()  # a turn and the worker's stop never interleave
        self._closed = False

    def balance(self) -> int:
        """One turn: toward the fair share, then consume what is held. Returns 0 (the job idles its interval)."""
        with self._lock:
            if not self._closed:
                self._balance()
        return 0

    def _balance(self) -> None:
        wanted = self.leases.wanted()
        held = self.leases.held
        if len(held) > wanted:
            surplus = sorted(held)[wanted:]
            self._stop_consuming()  # its batch committed and acked first: then another worker may take them
            self.leases.release(surplus)
        elif len(held) < wanted:
            self.leases.take(wanted - len(held))
        if frozenset(self.leases.held) != self._consuming or (self._thread is not None
                                                                and not self._thread.is_alive()):
            self._stop_consuming()
            self._start_consuming()

    @property
    def consuming(self) -> list[int]:
        return sorted(self._consuming)

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            self._stop_consuming(timeout)
            self.leases.close()

    def _start_consuming(self) -> None:
        shards = frozenset(self.leases.held)
        self._consuming = shards
        if not shards:
            return
        stop = self._stop = threading.Event()
        queues = [self.queue_of(s) for s in sorted(shards)]
        self._thread = threading.Thread(target=self.consume, args=(queues, stop), name="hub-worker-inbound-shards",
                                        daemon=True)
        self._thread.start()

    def _stop_consuming(self, timeout: float = 30.0) -> None:
        thread, self._thread = self._thread, None
        self._consuming = frozenset()
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the shard consumer did not stop within %.0f s; its deliveries return to their queues "
                        "when its connection closes", timeout)
