"""Structured (JSON) logs; personal identifiers are masked before anything is written."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# Citizen IDs, credit codes and mobile numbers never reach a log line in clear.
_PATTERNS = [
    (re.compile(r"(?<![0-9A-Z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Z])"), r"\1********\2"),
    (re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)"), r"\1****\2"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        # "error": a crash's exception as "Type: message" (hub/cli.py; the traceback, when any, in "exc")
        for key in ("path", "tracking_no", "action", "officer", "status", "method", "error"):
            if hasattr(record, key):
                entry[key] = redact(str(getattr(record, key)))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# Libraries whose INFO lines (each migration applied, every broker connection, uvicorn's start-up) say
# nothing an operator acts on and broke up `hub up`'s banner: WARNING unless asked (verbose, or DEBUG).
LIBRARY_LOGGERS = (
    "alembic", "uvicorn", "uvicorn.error", "uvicorn.access", "pika", "httpx", "httpcore", "zeep", "urllib3",
    "sqlalchemy", "multipart", "python_multipart", "asyncio", "watchfiles",
)


_json_configured = False


def json_configured() -> bool:
    """Whether this process logs JSON lines (`configure(as_json=True)` ran): then a crash or refusal is one
    JSON line too, never a box-drawn traceback (issue 13)."""
    return _json_configured


def configure(level: str = "INFO", as_json: bool = True, *, verbose: bool = False) -> None:
    """The hub's loggers at ``level``; the libraries' at WARNING (or above), unless ``verbose`` or the level
    is DEBUG, when they log at ``level`` too."""
    global _json_configured
    _json_configured = as_json
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if as_json else RedactingFormatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    hub_level = logging.getLevelName(level.upper())
    detailed = verbose or (isinstance(hub_level, int) and hub_level <= logging.DEBUG)
    libraries = hub_level if detailed or not isinstance(hub_level, int) else max(hub_level, logging.WARNING)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(libraries)
