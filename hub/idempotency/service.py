"""``Idempotency-Key``: a client that retries a request after a lost answer gets the first answer back.

One row per (operation, key), claimed in the same transaction as the work it guards, so the unique
constraint decides between concurrent duplicates: the loser's insert waits for the winner's commit,
fails, and the loser answers with what the winner stored. A key reused with a different request is
refused (422) rather than answered with another request's result.

The stored answer of a submission holds the applicant's query code, a secret. So nothing here can be
read from the database alone: the row is found by a digest of the client's key keyed with the hub's
secret, the request is fingerprinted with a key derived from both (no guessing an applicant's data from
it), and the answer is encrypted and authenticated (HMAC-SHA256 in counter mode, then HMAC-SHA256 over
nonce and ciphertext — standard-library primitives only) with keys derived from both as well. Rows live
``idempotency_key_ttl_s``; expired rows are refused and purged by later claims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.errors import Conflict, FieldError, HubError
from hub.idempotency.models import IdempotencyKey

HEADER = "Idempotency-Key"
SUBMISSION = "POST /api/v1/applications"
PURGE_BATCH = 100  # expired rows removed per claim: bounded work on the request path
CLAIM_ATTEMPTS = 3
NONCE_BYTES = 16
TAG_BYTES = 32

log = logging.getLogger("hub.idempotency")


class IdempotencyKeyReused(HubError):
    def __init__(self) -> None:
        message = (f"{HEADER} 已用于另一份内容不同的请求；新的请求请使用新的键 ({HEADER} was already used "
                   "with a different request body; use a new key for every new request)")
        super().__init__(
            detail=message, title="提交的数据未通过校验", status=422, type_slug="idempotency-key-reused",
            errors=[FieldError(HEADER, "idempotency_key_reused", message)],
        )


@dataclass(frozen=True)
class _Keys:
    digest: str
    fingerprint: bytes
    encryption: bytes
    authentication: bytes


@dataclass(frozen=True)
class Replay:
    """The first answer to the key, to be sent again as it was."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """The key is this request's: do the work, then ``record`` the answer in the same transaction."""

    row: IdempotencyKey
    keys: _Keys


def claim(
    session: Session, *, scope: str, key: str, request: Any, secret: str, ttl_s: int, now: datetime
) -> Claim | Replay:
    """Claim ``key`` for this request, or return the answer stored for it.

    Raises ``IdempotencyKeyReused`` when the key was used with another request. The claim is flushed at
    once, so on PostgreSQL a concurrent request with the same key waits here until this one commits."""
    keys = _derive(secret, scope, key)
    fingerprint = _fingerprint(keys, request)
    _purge_expired(session, now)
    for _ in range(CLAIM_ATTEMPTS):
        row = _find(session, scope, keys.digest)
        if row is not None and row.expires_at <= now:
            session.delete(row)
            session.flush()
            row = None
        if row is not None:
            return _replay(row, keys, fingerprint)
        new = IdempotencyKey(scope=scope, key_digest=keys.digest, request_hash=fingerprint,
                             created_at=now, expires_at=now + timedelta(seconds=ttl_s))
        try:
            with session.begin_nested():
                session.add(new)
        except IntegrityError:
            continue  # a concurrent request with this key committed first: answer as it did
        return Claim(new, keys)
    raise Conflict(f"{HEADER} 正被另一请求使用，请稍后重试 (a request with this {HEADER} is being "
                   "processed; retry later)", type_slug="idempotency-key-in-use")


def record(session: Session, claim: Claim, *, status: int, body: dict[str, Any], case_id: int | None = None) -> None:
    """Store (or replace) the answer to the claimed key; it commits with the caller's transaction."""
    plain = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    claim.row.status_code = status
    claim.row.response = _seal(claim.keys, plain)
    if case_id is not None:
        claim.row.case_id = case_id
    session.flush()


def _find(session: Session, scope: str, digest: str) -> IdempotencyKey | None:
    return session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key_digest == digest)
        .execution_options(populate_existing=True)
    )


def _replay(row: IdempotencyKey, keys: _Keys, fingerprint: str) -> Replay:
    if not hmac.compare_digest(row.request_hash, fingerprint):
        raise IdempotencyKeyReused()
    plain = _open(keys, row.response) if row.response and row.status_code else None
    if plain is None:
        # Only a row edited outside the hub gets here: its answer cannot be trusted, so none is given.
        log.error("idempotency answer unreadable", extra={"status": "tampered"})
        raise Conflict(f"无法重现此 {HEADER} 的首次应答，请使用新的键 (the first answer to this {HEADER} "
                       "cannot be reproduced; use a new key)", type_slug="idempotency-answer-unavailable")
    return Replay(status=int(row.status_code or 0), body=json.loads(plain))


def _purge_expired(session: Session, now: datetime) -> None:
    # SKIP LOCKED (PostgreSQL; SQLite has one writer anyway): never wait for another claim's purge.
    expired = (select(IdempotencyKey.id).where(IdempotencyKey.expires_at <= now)
               .limit(PURGE_BATCH).with_for_update(skip_locked=True))
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(expired))
                    .execution_options(synchronize_session=False))


# --- keys, fingerprint and sealing -----------------------------------------------------------------


def _derive(secret: str, scope: str, key: str) -> _Keys:
    root = hmac.new(secret.encode(), f"idempotency\x00{scope}\x00{key}".encode(), hashlib.sha256).digest()

    def sub(label: bytes) -> bytes:
        return hmac.new(root, label, hashlib.sha256).digest()

    return _Keys(digest=sub(b"digest").hex(), fingerprint=sub(b"fingerprint"), encryption=sub(b"encryption"),
                 authentication=sub(b"authentication"))


def _fingerprint(keys: _Keys, request: Any) -> str:
    canonical = json.dumps(request, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(keys.fingerprint, canonical, hashlib.sha256).hexdigest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
              for counter in range((length + 31) // 32))
    return b"".join(blocks)[:length]


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def _seal(keys: _Keys, plain: bytes) -> str:
    nonce = secrets.token_bytes(NONCE_BYTES)
    cipher = _xor(plain, _keystream(keys.encryption, nonce, len(plain)))
    tag = hmac.new(keys.authentication, nonce + cipher, hashlib.sha256).digest()
    return base64.b64encode(nonce + cipher + tag).decode("ascii")


def _open(keys: _Keys, sealed: str) -> bytes | None:
    try:
        raw = base64.b64decode(sealed, validate=True)
    except ValueError:
        return None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        return None
    nonce, cipher, tag = raw[:NONCE_BYTES], raw[NONCE_BYTES:-TAG_BYTES], raw[-TAG_BYTES:]
    expected = hmac.new(keys.authentication, nonce + cipher, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        return None
    return _xor(cipher, _keystream(keys.encryption, nonce, len(cipher)))
