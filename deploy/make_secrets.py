#!/usr/bin/env python3
"""Create the secrets docker-compose.yml mounts, and render RabbitMQ's definitions from them.

    python deploy/make_secrets.py [--dir secrets] [--rotate NAME ...]

Each missing ``<dir>/<name>.txt`` gets ``secrets.token_urlsafe(48)``; an existing one is kept (run it again
safely), unless named with ``--rotate``. Then ``<dir>/rabbitmq_definitions.json`` is written from
deploy/rabbitmq/definitions.json with each user's password *hash* (RabbitMQ's salted SHA-256) computed from
``amqp_password.txt`` (user ``hub``) and ``rabbitmq_admin_password.txt`` (user ``admin``): the broker never
sees a password in a file, and the committed template holds none.

Permissions: the folder is 0700 (only its owner on this host can enter it); the files are 0644 because
compose mounts file secrets as they are (uid/gid/mode are ignored outside Swarm) and the processes in the
containers run as other users (hub, rabbitmq, postgres) — they need to read them.
Standard library only: run it with any Python 3.9+ before `docker compose up`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "rabbitmq" / "definitions.json"
NAMES = ("db_password", "amqp_password", "hub_secret_key", "hub_audit_key", "metrics_token",
         "bootstrap_admin_password", "rabbitmq_admin_password")
PASSWORD_OF_USER = {"hub": "amqp_password", "admin": "rabbitmq_admin_password"}
DEFINITIONS = "rabbitmq_definitions.json"


def rabbit_password_hash(password: str, salt: bytes | None = None) -> str:
    """``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password)), a 4-byte random salt
    (the same as adapters.amqp.management.rabbit_password_hash, repeated here to need no hub install)."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def write_private(path: Path, text: str) -> None:
    """Written whole or not at all (tmp + rename), 0644 inside the 0700 folder."""
    partial = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(partial, 0o644)
    os.replace(partial, path)


def make_secrets(folder: Path, *, rotate: tuple[str, ...] = ()) -> list[str]:
    """Create what is missing (and what ``rotate`` names); returns the names written."""
    unknown = sorted(set(rotate) - set(NAMES))
    if unknown:
        raise SystemExit(f"unknown secret(s): {', '.join(unknown)} (known: {', '.join(NAMES)})")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    written = []
    for name in NAMES:
        path = folder / f"{name}.txt"
        if name in rotate or not path.exists() or not path.read_text(encoding="utf-8").strip():
            write_private(path, secrets.token_urlsafe(48) + "\n")
            written.append(name)
    render_definitions(folder)
    return written


def render_definitions(folder: Path) -> None:
    definitions = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    definitions.pop("description", None)
    for user in definitions["users"]:
        password = (folder / f"{PASSWORD_OF_USER[user['name']]}.txt").read_text(encoding="utf-8").strip()
        user["password_hash"] = rabbit_password_hash(password)
    write_private(folder / DEFINITIONS, json.dumps(definitions, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "secrets", help="the secrets folder (./secrets)")
    parser.add_argument("--rotate", nargs="*", default=[], metavar="NAME", help="replace these secrets")
    args = parser.parse_args(argv)
    written = make_secrets(args.dir, rotate=tuple(args.rotate))
    print(f"{args.dir}: wrote {', '.join(written) or 'nothing new'}; rendered {DEFINITIONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
