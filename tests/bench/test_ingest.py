"""bench/ingest.py's progress poll: rare while much is left, every 50 ms near the end (its count(*) of the inbox
costs PostgreSQL more with every round, on the hub's side only)."""

from __future__ import annotations

from bench.ingest import FINAL_POLL_S, LONGEST_POLL_S, next_poll_s


def test_the_poll_waits_a_quarter_of_the_time_the_records_left_should_take() -> None:
    assert next_poll_s(left=2000, applied=1000, elapsed_s=1.0) == 0.5


def test_the_poll_waits_at_most_a_second_however_much_is_left() -> None:
    assert next_poll_s(left=100_000, applied=1000, elapsed_s=1.0) == LONGEST_POLL_S


def test_the_poll_comes_every_50_ms_near_the_end() -> None:
    assert next_poll_s(left=10, applied=1000, elapsed_s=1.0) == FINAL_POLL_S


def test_the_poll_comes_every_50_ms_until_the_rate_is_known() -> None:
    assert next_poll_s(left=20_000, applied=0, elapsed_s=0.4) == FINAL_POLL_S
    assert next_poll_s(left=20_000, applied=5, elapsed_s=0.0) == FINAL_POLL_S
