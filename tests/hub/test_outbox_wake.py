"""The announcer (hub/outbox/wake.py): a commit after a quiet spell is announced at once; the commits that follow
within the interval share one announcement, sent when the interval ends; nothing is sent without a commit."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hub.outbox import wake


class _Interval:
    """A sleep the test ends by hand: it tells when the announcer is in it, and returns when released."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.lengths: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.lengths.append(seconds)
        self.entered.release()
        self.release.acquire()


def test_commits_within_the_interval_share_one_announcement_and_a_quiet_one_is_sent_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(wake, "_send_announcement", sent.append)
    interval = _Interval()
    announcer = wake._Announcer(interval_s=0.25, sleep=interval)
    engine: Any = object()  # the announcer only hands it to _send_announcement
    other: Any = object()
    try:
        announcer.announce(engine)
        assert interval.entered.acquire(timeout=15)  # sent at once, then the interval began
        assert sent == [engine]
        for _ in range(5):
            announcer.announce(engine)
        announcer.announce(other)
        assert sent == [engine]  # the announcer is in its interval: nothing more sent yet
        interval.release.release()
        assert interval.entered.acquire(timeout=15)  # the six commits' one announcement per database, then rest
        assert sorted(map(id, sent)) == sorted(map(id, [engine, engine, other]))
        assert interval.lengths == [0.25, 0.25]
        interval.release.release()
        # No commit since: the announcer blocks until one comes, it does not tick.
        assert not interval.entered.acquire(timeout=0.2)
        announcer.announce(engine)
        assert interval.entered.acquire(timeout=15)
        assert len(sent) == 4 and sent[-1] is engine
    finally:
        interval.release.release()

