"""Apply lanes: one consumer's deliveries applied by several threads at once, settled by the consumer's own.

Why: a batch handler's thread alternates between its own work (decoding, checks) and waiting for its database
to execute the batch and commit. With one thread the two never overlap. With K lanes, lane A's Python runs
while lane B waits on the database (a database driver releases the GIL while it waits), so one process keeps
both busy. (issue 8, part lanes; docs/performance-lanes.md)

How (``Lanes``):

* The consumer's thread (the only one that touches pika: a BlockingConnection is not thread-safe) builds each
  delivery's ``InboundMessage``, asks the handler ``lane_of(message)`` and appends it to that lane's inbox.
  One lane per key (e.g. one case), so a key's deliveries are applied by one thread, in arrival order, and two
  lanes never hold the same key.
* A lane takes up to ``batch_size`` deliveries from its inbox (waiting at most ``batch_wait_s`` for more once
  one is there), calls ``handle_batch`` and turns the outcomes into settlements. It hands the settlements back
  (``Finished``) through a thread-safe queue and wakes the consumer's thread (``wake``: pika's
  ``add_callback_threadsafe``), which acks, dead-letters and requeues them — after the handler returned, i.e.
  after its commit. Deferred deliveries go back to the front of the lane's inbox, unsettled. Requeues follow
  after the lane's backoff pause (a second hand-back); the other lanes go on meanwhile.
* Each connection is a ``generation``: delivery tags are per channel, so what a lane hands back for a
  connection that is gone is dropped (the broker redelivers those deliveries) and never settled on the next.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from adapters.amqp.messages import InboundMessage, LanedHandler, Outcome
from adapters.amqp.settlement import Action, Settlement, run_batch_handler

log = logging.getLogger("adapters.amqp.consumer")

DEFER_PAUSE_S = 0.25  # a lane whose whole batch was deferred waits this long before trying it again


@dataclass(frozen=True)
class Work:
    """One delivery handed to a lane: its connection's generation, its delivery tag, the message."""

    generation: int
    tag: int
    message: InboundMessage


@dataclass(frozen=True)
class Finished:
    """Settlements a lane hands back to the consumer's thread (each Work names its own generation)."""

    settled: list[tuple[Work, Settlement]]


Settle = Callable[[InboundMessage, Outcome], Settlement]
RetryDelay = Callable[[InboundMessage], float]


class Lanes:
    """``handler.lanes`` threads applying the deliveries the consumer's thread submits (see the module)."""

    def __init__(self, handler: LanedHandler, *, settle: Settle, retry_delay_s: RetryDelay,
                 stop_event: threading.Event, wake: Callable[[], None], name: str) -> None:
        self.handler = handler
        self.count = max(1, int(handler.lanes))
        self.finished: queue.SimpleQueue[Finished] = queue.SimpleQueue()
        self._settle = settle
        self._retry_delay_s = retry_delay_s
        self._stop = stop_event
        self._wake = wake
        self._cond = threading.Condition()
        self._inboxes: list[deque[Work]] = [deque() for _ in range(self.count)]
        self._busy = [False] * self.count
        self._closing = False
        self._generation = 0
        self._threads = [threading.Thread(target=self._run, args=(lane,), name=f"{name}-lane-{lane}", daemon=True)
                         for lane in range(self.count)]
        for thread in self._threads:
            thread.start()

    # The consumer's thread -------------------------------------------------------------------------------

    def lane_of(self, message: InboundMessage) -> int:
        try:
            lane = int(self.handler.lane_of(message))
        except Exception as exc:  # the handler refuses it in its lane; choosing one must never stop the consumer
            log.warning("lane_of raised %s for message %s; lane 0", type(exc).__name__, message.message_id)
            return 0
        return lane if 0 <= lane < self.count else 0

    def submit(self, works: list[Work]) -> None:
        lanes = [self.lane_of(work.message) for work in works]
        with self._cond:
            for lane, work in zip(lanes, works, strict=True):
                self._inboxes[lane].append(work)
            self._cond.notify_all()

    def begin(self, generation: int) -> None:
        """A new connection: what is still waiting from an older one will be redelivered by the broker."""
        with self._cond:
            self._generation = generation
            for inbox in self._inboxes:
                kept = [work for work in inbox if work.generation >= generation]
                inbox.clear()
                inbox.extend(kept)

    def working(self) -> bool:
        """Whether some lane is in the middle of a batch (its settlements not all handed back yet)."""
        with self._cond:
            return any(self._busy)

    def close(self, timeout_s: float = 15.0) -> None:
        """Let every lane finish its batch, then end the lane threads (called once, when consuming ends)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # A lane's thread ---------------------------------------------------------------------------------------

    def _run(self, lane: int) -> None:
        while True:
            batch = self._take(lane)
            if batch is None:
                return
            if not batch:
                continue
            try:
                self._apply(lane, batch)
            except Exception:  # a defect here must not end the lane: its deliveries would never be settled
                log.exception("lane %d failed settling a batch of %d; its deliveries are requeued", lane, len(batch))
                self._hand_back([(work, Settlement(Action.REQUEUE, "lane failed")) for work in batch])
            finally:
                with self._cond:
                    self._busy[lane] = False
                self._wake()

    def _take(self, lane: int) -> list[Work] | None:
        """Up to ``batch_size`` deliveries of this lane, or None when consuming ends. Marks the lane busy."""
        inbox = self._inboxes[lane]
        with self._cond:
            while not inbox:
                if self._closing or self._stop.is_set():
                    return None
                self._cond.wait()
            if self._stop.is_set():
                return None  # stopping: deliveries not started go back to the queue when the connection closes
            size = self.handler.batch_size
            deadline = time.monotonic() + self.handler.batch_wait_s
            while (len(inbox) < size and not self._closing and not self._stop.is_set()
                   and (remaining := deadline - time.monotonic()) > 0):
                self._cond.wait(remaining)
            if self._stop.is_set():
                return None
            taken = [inbox.popleft() for _ in range(min(size, len(inbox)))]
            # A lane's deferred deliveries of a connection that is gone: the broker redelivers them.
            batch = [work for work in taken if work.generation >= self._generation]
            self._busy[lane] = bool(batch)
            return batch

    def _apply(self, lane: int, batch: list[Work]) -> None:
        outcomes = run_batch_handler(self.handler, [work.message for work in batch])
        settled = [(work, self._settle(work.message, outcome)) for work, outcome in zip(batch, outcomes, strict=True)]
        now = [(work, s) for work, s in settled if s.action in (Action.ACK, Action.DEAD_LETTER)]
        deferred = [work for work, s in settled if s.action is Action.DEFER]
        requeue = [(work, s) for work, s in settled if s.action is Action.REQUEUE]
        if deferred:  # first again in this lane's next batch, in their order, still unsettled
            with self._cond:
                self._inboxes[lane].extendleft(reversed(deferred))
        if now:
            self._hand_back(now)
        if deferred and len(deferred) == len(batch):
            self._stop.wait(DEFER_PAUSE_S)  # nothing of the batch could be done now: no busy loop over it
        if requeue:
            # One pause for the batch (only this lane waits), then the broker gets them back.
            self._stop.wait(max(self._retry_delay_s(work.message) for work, _ in requeue))
            self._hand_back(requeue)

    def _hand_back(self, settled: list[tuple[Work, Settlement]]) -> None:
        self.finished.put(Finished(settled))
        self._wake()
