"""hub/progress.py: a rich bar on a terminal, plain `<label>: <done>/<total>` lines otherwise."""

from __future__ import annotations

import io

from rich.console import Console

from hub import progress


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=80), out


def test_plain_lines_at_start_about_every_tenth_and_at_the_end() -> None:
    console, out = plain_console()
    with progress.task(console, "replaying dead letters", 100) as advance:
        for _ in range(100):
            advance(1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "replaying dead letters: 0/100" and lines[-1] == "replaying dead letters: 100/100"
    assert 10 <= len(lines) <= 12, lines
    assert "\x1b[" not in out.getvalue()


def test_plain_lines_with_a_small_total_name_each_step() -> None:
    console, out = plain_console()
    with progress.task(console, "seeding", 3) as advance:
        advance(1)
        advance(1)
        advance(1)
    assert out.getvalue().splitlines() == ["seeding: 0/3", "seeding: 1/3", "seeding: 2/3", "seeding: 3/3"]


def test_unknown_total_prints_a_count_per_step() -> None:
    console, out = plain_console()
    with progress.task(console, "delivering", None) as advance:
        advance(20)
        advance(5)
    assert out.getvalue().splitlines() == ["delivering: 20", "delivering: 25"]


def test_nothing_to_do_still_says_so() -> None:
    console, out = plain_console()
    with progress.task(console, "delivering", 0):
        pass
    assert out.getvalue().splitlines() == ["delivering: 0/0"]


def test_a_terminal_gets_a_bar_that_ends_complete() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress.task(console, "seeding the demo province", 20) as advance:
        for _ in range(20):
            advance(1)
    text = out.getvalue()
    assert "seeding the demo province" in text and "20/20" in text
    assert "\x1b[" in text  # drawn with terminal control sequences, not plain lines
