"""Attempt counters shared by every process (sign-in, query codes) and WS-Security nonces.

A counter is one row per (scope, key) holding a fixed window: the first attempt opens a window of
``window`` seconds, later attempts in it add one, an attempt after it ends opens a new one. Each
attempt is counted *before* the credential is checked, in one atomic ``INSERT … ON CONFLICT DO UPDATE
… RETURNING`` (SQLite and PostgreSQL), so concurrent guesses cannot slip past the limit between a check
and a write; a success gives its attempt back (``forgive``) or clears the account (``clear``), so only
failures use the budget. The caller commits the count on its own, before the check it guards, so a
failed check (whose transaction rolls back) still counts.

Purging rows whose window has ended happens when a new window opens, with ``SKIP LOCKED`` on
PostgreSQL so that a purge never waits for, or deadlocks with, a concurrent attempt.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, select, tuple_, update
from sqlalchemy.orm import Session

from hub.errors import HubError
from hub.settings import Settings
from hub.throttle.models import AttemptCounter, SeenNonce

LOGIN_ACCOUNT = "login.account"
LOGIN_ADDRESS = "login.address"
QUERY_CODE = "query_code"
MAX_KEY = 128
PURGE_BATCH = 1000


@dataclass(frozen=True)
class Limit:
    scope: str
    attempts: int
    window: timedelta


class TooManyAttempts(HubError):
    """429: the budget of attempts is spent; ``retry_after`` seconds until the window ends."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail=detail, title="尝试次数过多", status=429, type_slug="too-many-attempts",
                         extra={"retry_after": retry_after})

    @property
    def retry_after(self) -> int:
        return int(self.extra["retry_after"])


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting attempts; raise only after the count is committed."""

    retry_after: int | None
    detail: str = ""

    def raise_if_blocked(self) -> None:
        if self.retry_after is not None:
            raise TooManyAttempts(self.detail, self.retry_after)


# --- limits from the settings ----------------------------------------------------------------------


def login_limits(settings: Settings) -> tuple[Limit, Limit]:
    window = timedelta(seconds=settings.login_window_s)
    return (Limit(LOGIN_ACCOUNT, settings.login_account_attempts, window),
            Limit(LOGIN_ADDRESS, settings.login_address_attempts, window))


def query_code_limit(settings: Settings) -> Limit:
    return Limit(QUERY_CODE, settings.query_code_attempts, timedelta(seconds=settings.query_code_window_s))


# --- sign-in and query codes -------------------------------------------------------------------------


def begin_login(session: Session, *, username: str, address: str, settings: Settings, now: datetime) -> Verdict:
    """Count one sign-in attempt for the account and for the source address (known or unknown account
    alike, so a refusal says nothing about whether the account exists)."""
    account, source = login_limits(settings)
    # Always the account row before the address row: one lock order, so concurrent sign-ins never deadlock.
    waits = [count_attempt(session, limit=account, key=username, now=now),
             count_attempt(session, limit=source, key=address, now=now)]
    blocked = [w for w in waits if w is not None]
    if not blocked:
        return Verdict(None)
    return Verdict(max(blocked), f"登录失败次数过多，请 {max(blocked)} 秒后再试 (too many failed sign-ins for this "
                                 f"account or from this address; retry after {max(blocked)} s)")


def login_succeeded(session: Session, *, username: str, address: str, settings: Settings) -> None:
    account, source = login_limits(settings)
    clear(session, scope=account.scope, key=username)
    forgive(session, scope=source.scope, key=address)


def begin_query_code(session: Session, *, tracking_no: str, settings: Settings, now: datetime) -> Verdict:
    """Count one query-code attempt for the tracking number, whether or not such a case exists, so the
    answers for an unknown number and a wrong code stay the same, refusal included."""
    wait = count_attempt(session, limit=query_code_limit(settings), key=tracking_no, now=now)
    if wait is None:
        return Verdict(None)
    return Verdict(wait, f"该办件查询码错误次数过多，请 {wait} 秒后再试 (too many wrong query codes for this "
                         f"tracking number; retry after {wait} s)")


def query_code_accepted(session: Session, *, tracking_no: str) -> None:
    forgive(session, scope=QUERY_CODE, key=tracking_no)


# --- counters ----------------------------------------------------------------------------------------


def count_attempt(session: Session, *, limit: Limit, key: str, now: datetime) -> int | None:
    """Count one attempt; the seconds until the window ends when it is beyond the limit, else None."""
    key = stored_key(key)
    insert = _insert_for(session)
    fresh = insert(AttemptCounter).values(scope=limit.scope, key=key, window_start=now,
                                          window_end=now + limit.window, count=1)
    ended = AttemptCounter.window_end <= now
    bump = fresh.on_conflict_do_update(
        index_elements=[AttemptCounter.scope, AttemptCounter.key],
        set_={
            "count": case((ended, 1), else_=AttemptCounter.count + 1),
            "window_start": case((ended, fresh.excluded.window_start), else_=AttemptCounter.window_start),
            "window_end": case((ended, fresh.excluded.window_end), else_=AttemptCounter.window_end),
        },
    ).returning(AttemptCounter.count, AttemptCounter.window_end)
    count, window_end = session.execute(bump).one()
    if count == 1:
        purge_expired(session, now=now)  # a window opened: rows of ended windows may be dropped
    if count <= limit.attempts:
        return None
    return max(1, math.ceil((window_end - now).total_seconds()))


def forgive(session: Session, *, scope: str, key: str) -> None:
    """Give back one attempt (it succeeded)."""
    session.execute(update(AttemptCounter)
                    .where(AttemptCounter.scope == scope, AttemptCounter.key == stored_key(key),
                           AttemptCounter.count > 0)
                    .values(count=AttemptCounter.count - 1))


def clear(session: Session, *, scope: str, key: str) -> None:
    session.execute(delete(AttemptCounter).where(AttemptCounter.scope == scope,
                                                 AttemptCounter.key == stored_key(key)))


def purge_expired(session: Session, *, now: datetime) -> None:
    """Drop counters whose window has ended and nonces past their freshness window."""
    counters = (select(AttemptCounter.scope, AttemptCounter.key).where(AttemptCounter.window_end <= now)
                .limit(PURGE_BATCH).with_for_update(skip_locked=True))
    session.execute(delete(AttemptCounter).where(tuple_(AttemptCounter.scope, AttemptCounter.key).in_(counters)))
    nonces = (select(SeenNonce.username, SeenNonce.nonce).where(SeenNonce.expires_at <= now)
              .limit(PURGE_BATCH).with_for_update(skip_locked=True))
    session.execute(delete(SeenNonce).where(tuple_(SeenNonce.username, SeenNonce.nonce).in_(nonces)))


def stored_key(key: str) -> str:
    """Keys longer than the column (a 10 kB "username") are stored as their SHA-256."""
    if len(key) <= MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


# --- WS-Security nonces --------------------------------------------------------------------------------


def use_nonce(session: Session, *, username: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
    """Record a UsernameToken nonce; False when this username already used it (a replay). The nonce is
    kept until its token's Created leaves the freshness window, after which the token is refused anyway."""
    purge_expired(session, now=now)
    insert = _insert_for(session)
    claim = (insert(SeenNonce).values(username=stored_key(username), nonce=stored_key(nonce),
                                      expires_at=expires_at)
             .on_conflict_do_nothing(index_elements=[SeenNonce.username, SeenNonce.nonce])
             .returning(SeenNonce.nonce))
    return session.execute(claim).first() is not None


def _insert_for(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
