"""Facts about other processes on this host, for the files they leave behind (heartbeats, metrics)."""

from __future__ import annotations

import os


def process_gone(pid: int) -> bool:
    """True when no process ``pid`` exists here (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    return False
