"""The benchmarks' throwaway databases: dropped even while autovacuum works on them."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

DROP_TIMEOUT_S = 60.0


def drop_database(admin: Engine, name: str) -> None:
    """Drop ``name`` (an AUTOCOMMIT engine of its owner). ``WITH (FORCE)`` ends the benchmark's own leftover
    sessions, but not an autovacuum worker busy on the new tables (it runs as the superuser, whom the owner may
    not signal: "must be a member of the role whose process is being terminated", which ended a run after its
    last round); a plain DROP then has PostgreSQL stop the autovacuum itself. Until dropped or the timeout."""
    deadline = time.monotonic() + DROP_TIMEOUT_S
    force = True
    while True:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if force else "")))
            return
        except DBAPIError:
            if time.monotonic() > deadline:
                raise
            force = not force  # the other way next: FORCE for sessions of ours, plain for autovacuum
            time.sleep(0.2)
