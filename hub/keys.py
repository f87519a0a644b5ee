"""Where the hub's keys come from — the one place every command resolves them.

Two keys: ``HUB_SECRET_KEY`` signs officers' tokens (and keys the registry access log's subject hashes),
``HUB_AUDIT_KEY`` keys the audit chain. ``hub/settings.py`` ships published development defaults so that
tests can build ``Settings`` directly; no command that serves or operates on real data may run on them.

Three policies, by who runs the command:

* ``PRODUCTION`` (``hub api``, ``hub worker``, ``uvicorn hub.asgi:app``): the key comes from the
  environment only (``HUB_SECRET_KEY``, or ``HUB_SECRET_KEY_FILE`` naming a file that holds it: compose
  secrets), so every replica on every host has the same one. Unset, the development default or
  shorter than ``MIN_KEY_LENGTH`` characters: the command refuses to start.
* ``NEWCOMER`` (``hub up``): the environment if set (same checks), else the data folder's key file
  ``<data_dir>/secrets/<name>`` — generated at random on the first start (mode 0600), reused afterwards.
* ``OPERATOR`` (``hub audit verify`` and other commands that need a key in a fresh process): the
  environment, else the data folder's key file; never generated — without either the command refuses,
  because a fresh key (or the development default) would not be the one the running hub uses.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from hub.settings import DEV_AUDIT_KEY, DEV_SECRET, Settings

MIN_KEY_LENGTH = 32
KEYS_DIR = "secrets"


@dataclass(frozen=True)
class KeySpec:
    field: str  # the Settings attribute, also the key file's name
    env: str
    dev_default: str
    purpose: str


SECRET_KEY = KeySpec("secret_key", "HUB_SECRET_KEY", DEV_SECRET, "signs officers' tokens")
AUDIT_KEY = KeySpec("audit_key", "HUB_AUDIT_KEY", DEV_AUDIT_KEY, "keys the audit chain")
ALL_KEYS = (SECRET_KEY, AUDIT_KEY)


class Policy(Enum):
    PRODUCTION = "production"
    NEWCOMER = "newcomer"
    OPERATOR = "operator"


class KeyRefused(Exception):
    """A command may not run with the key it would get; the message says why and what to do."""


@dataclass(frozen=True)
class ResolvedKey:
    spec: KeySpec
    source: str  # "environment", "key file <path>" or "generated <path>"


def key_file(data_dir: Path, spec: KeySpec) -> Path:
    return data_dir / KEYS_DIR / spec.field


def resolve_keys(settings: Settings, policy: Policy, keys: Sequence[KeySpec] = ALL_KEYS) -> list[ResolvedKey]:
    """Set each key on ``settings`` (in place: the process's cached settings) or raise ``KeyRefused``."""
    problems: list[str] = []
    resolved: list[ResolvedKey] = []
    for spec in keys:
        try:
            value, source = _resolve(settings, policy, spec)
        except KeyRefused as exc:
            problems.append(str(exc))
            continue
        setattr(settings, spec.field, value)
        resolved.append(ResolvedKey(spec, source))
    if problems:
        raise KeyRefused("\n".join(problems))
    return resolved


def _resolve(settings: Settings, policy: Policy, spec: KeySpec) -> tuple[str, str]:
    configured = getattr(settings, spec.field)
    # ``<ENV>_FILE`` (compose secrets) counts as the environment: Settings read the file (hub/settings.py).
    from_file = settings.secret_file_of(spec.field)
    explicit = configured != spec.dev_default or spec.env in os.environ or from_file is not None
    source, named = ("environment", spec.env) if from_file is None else (
        f"file {from_file}", f"{spec.env}_FILE {from_file}")
    if explicit and policy is Policy.OPERATOR:
        # The operator names the key the hub runs with; judging it is the serving command's job (a test hub
        # on the development default is checked by setting that default explicitly).
        return configured, source
    if explicit:
        _check(configured, f"{named} ({spec.purpose})")
        return configured, source
    if policy is Policy.PRODUCTION:
        raise KeyRefused(
            f"{spec.env} is not set: it {spec.purpose}, and a production command takes it from the environment "
            f"only (the same value for every api and worker). Set it (or {spec.env}_FILE, a file holding it) "
            f"to a random string of at least {MIN_KEY_LENGTH} characters, e.g. "
            f"`python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
        )
    path = key_file(settings.data_dir, spec)
    if path.exists():
        return _read(path, spec), f"key file {path}"
    if policy is Policy.OPERATOR:
        raise KeyRefused(
            f"{spec.env} is not set and there is no key file {path}: this command needs the key the running "
            f"hub uses (it {spec.purpose}). Set {spec.env} as the hub's api and worker have it, or point "
            f"HUB_DATA_DIR at the data folder `hub up` uses."
        )
    return _generate(path, spec), f"generated {path}"


def _check(value: str, what: str) -> None:
    if value in (DEV_SECRET, DEV_AUDIT_KEY):
        raise KeyRefused(f"{what} is the published development default; anyone could forge with it. "
                         "Use a random string.")
    if len(value.strip()) < MIN_KEY_LENGTH:
        raise KeyRefused(f"{what} is {len(value.strip())} characters long; at least {MIN_KEY_LENGTH} are needed.")


def _read(path: Path, spec: KeySpec) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyRefused(f"key file {path} is open to other users (mode {mode:o}); `chmod 600 {path}`.")
    value = path.read_text(encoding="utf-8").strip()
    _check(value, f"key file {path} ({spec.purpose})")
    return value


def _generate(path: Path, spec: KeySpec) -> str:
    """A new random key, published atomically: two starts at once end up with one key, never a half-written one."""
    value = secrets.token_urlsafe(48)
    if publish_secret_file(path, value):
        return value
    return _read(path, spec)  # another start won the race: use its key


def publish_secret_file(path: Path, value: str) -> bool:
    """Write ``value`` to ``path`` (mode 0600, its folder 0700) unless the file exists: False then, and the
    file is left as it was. Atomic: a reader never sees a half-written secret, two writers never both win."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        try:
            os.link(draft, path)  # fails if the file exists
        except FileExistsError:
            return False
    finally:
        draft.unlink(missing_ok=True)
    return True
