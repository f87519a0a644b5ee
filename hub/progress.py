"""Progress of a long operator command (seeding, replaying dead letters, a delivery run).

On a terminal a rich progress bar; otherwise (a log file, a pipe, CI) plain lines, so the output stays
readable and greppable: ``<label>: <done>/<total>`` at the start, about every tenth and at the end (with no
total known up front, ``<label>: <done>`` at each step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Advance = Callable[[int], None]
PLAIN_STEPS = 10  # plain lines per task at most (besides the first and the last)


@contextmanager
def task(console: Console, label: str, total: int | None) -> Iterator[Advance]:
    """Yield ``advance(n)``; ``total`` None: unknown up front (a count, no bar)."""
    if console.is_terminal:
        with _bar(console, label, total) as advance:
            yield advance
        return
    with _plain(console, label, total) as advance:
        yield advance


@contextmanager
def _bar(console: Console, label: str, total: int | None) -> Iterator[Advance]:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task_id = progress.add_task(label, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task_id, n)

        yield advance
        if total is not None:
            progress.update(task_id, completed=max(total, progress.tasks[0].completed))


@contextmanager
def _plain(console: Console, label: str, total: int | None) -> Iterator[Advance]:
    done = 0
    last_printed = -1
    step = max(1, (total or 0) // PLAIN_STEPS)

    def line() -> None:
        nonlocal last_printed
        console.print(f"{label}: {done}/{total}" if total is not None else f"{label}: {done}", highlight=False)
        last_printed = done

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if total is None or (done - last_printed >= step and done < total):
            line()  # unknown total: one line per call (a delivery run calls once per batch)

    if total is not None:
        line()
    yield advance
    if done != last_printed:
        line()
