"""The worker's re-verification job: one unit of work per round, registries built once per process.

Wiring in ``hub worker`` (hub/worker.py)::

    reverify = ReverifyJob.from_settings(settings, factory, clock)   # None: no registry configured
    if reverify is not None:
        jobs.append(Job("reverify", reverify, idle_seconds=5.0))     # and reverify.close() on stop
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from adapters.registries import Registries
from hub.clock import Clock
from hub.db import unit_of_work
from hub.settings import Settings
from hub.verification.checks import reverify_pending
from hub.verification.registries import build_from_settings


@dataclass
class ReverifyJob:
    """Callable for the worker's job loop: re-verifies pending checks, returns how many it settled
    (0 while the registries are still down, so the loop idles and backs off)."""

    factory: sessionmaker[Session]
    registries: Registries
    clock: Clock
    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings, factory: sessionmaker[Session], clock: Clock) -> ReverifyJob | None:
        registries = build_from_settings(settings, worker=True)
        return None if registries is None else cls(factory, registries, clock, settings)

    def __call__(self) -> int:
        with unit_of_work(self.factory) as session:
            return reverify_pending(session, registries=self.registries, now=self.clock.now(),
                                    limit=self.settings.reverify_batch, settings=self.settings)

    def close(self) -> None:
        self.registries.close()
