"""One outbox relay per installation at a time: the relay's lease, a PostgreSQL session-level advisory lock.

Every `hub worker` runs a relay, and every relay was woken by every outbox NOTIFY and queried the outbox, although
only one of them could find rows (FOR UPDATE SKIP LOCKED): with two workers, half the passes were empty. Now the
relay that holds the lease works; the others stand by and try for the lease every ``outbox_relay_standby_s``.

* The lock is held by the connection the relay works on (its own, out of the pool): every pass proves the
  session alive. A pass that fails on the database drops the connection, and with it the lease.
* A worker that stops closes that connection; a worker that dies (SIGKILL, a lost host) loses its session, and
  PostgreSQL releases the lock with it: a standing-by relay takes over within its standby interval.
* The lease only saves work, it guards nothing: two relays at once (e.g. while a half-dead connection is still
  open) stay correct, as before, by FOR UPDATE SKIP LOCKED and consumers deduplicating by message id.
* SQLite has no advisory locks (and one process writes it): there every relay works, as before.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("hub.outbox.lease")

# The two-int4 form of the key: a key space of its own, apart from the bigint keys of the per-case and
# audit locks (hashtextextended). 0x6875_6200 reads "hub"; 1 = the outbox relay.
LEASE_KEY = (0x6875_6200, 1)
_TRY = text("SELECT pg_try_advisory_lock(:class_id, :object_id)")


class RelayLease:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.exclusive = engine.dialect.name == "postgresql"
        self._connection: Connection | None = None
        self._factory: sessionmaker[Session] | None = None
        self._shared: sessionmaker[Session] | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    def factory(self, shared: sessionmaker[Session]) -> sessionmaker[Session] | None:
        """The sessions the relay works in while it holds the lease (bound to the lock's connection), taking the
        lease if it is free; None while another relay holds it. Without advisory locks: ``shared``."""
        if not self.exclusive:
            return shared
        if self._factory is None:
            self._acquire(shared)
        return self._factory

    def _acquire(self, shared: sessionmaker[Session]) -> None:
        connection = self.engine.connect()
        try:
            with connection.begin():  # a session-level lock outlives the transaction that took it
                got = bool(connection.execute(_TRY, {"class_id": LEASE_KEY[0], "object_id": LEASE_KEY[1]}).scalar())
        except Exception:
            connection.invalidate()
            connection.close()
            raise
        if not got:
            connection.close()  # back to the pool: it holds nothing
            return
        log.info("outbox relay lease taken: this worker relays the outbox")
        self._connection = connection
        self._factory = sessionmaker(bind=connection, expire_on_commit=False, autoflush=True,
                                     **{k: v for k, v in shared.kw.items() if k not in ("bind", "expire_on_commit",
                                                                                        "autoflush")})

    def release(self) -> None:
        """Give the lease up: the connection is closed for good (never back to the pool, lock and all)."""
        connection, self._connection, self._factory = self._connection, None, None
        if connection is None:
            return
        try:
            connection.invalidate()  # ends the database session, and with it the session-level lock
        finally:
            connection.close()
