"""PostgreSQL's work per record and per submission (issue 8, part pgcpu): indexes no query needs dropped, one
added where a look-up scanned, partial indexes where most rows have nothing to index, and the metrics roll-up's
trigger on INSERT and DELETE once per statement instead of once per row

(A revision of its own at the head, not the reserved no-op slot 0017: a database already at head never runs an
earlier revision again.)
docs/performance-postgresql.md has the measurements and, for every index kept, the query it serves.

* Dropped, another index serves their queries: ``ix_case_events_case_id`` (``uq_case_events_case_id_seq``
  leads with case_id), ``ix_case_verifications_case_id``, ``ix_alerts_case_id``, ``ix_ratings_case_id`` (their
  unique constraints lead with case_id), ``ix_deliveries_partner_code`` (``uq_deliveries_partner_code_case_id_kind``).
* Dropped, no query selects by it: ``ix_cases_deadline`` (the work queue orders by coalesce(deadline,
  intake_deadline), which it cannot serve).
* Partial: ``ix_cases_parent_id`` (a joint case's branches; nearly every case has no parent), on PostgreSQL
  ``ix_cases_accepted_on`` and ``ix_cases_completed_at`` (the metrics ask for a day or a range: an open case has
  neither date, and a new case no longer writes these two wide covering entries), and ``ix_outbox_unsent``
  replacing ``ix_outbox_sent_at`` (the relay reads only the unsent rows; a row marked sent leaves the index).
* Added: ``ix_case_events_actor_id_occurred_at`` — the backfilled-batch rule counts a person's decisions in a
  time window on every odd-hour decision (hub/supervision/realtime.py); it scanned the department's cases of
  the last 180 days (or case_events whole), a cost that grew with the table.
* PostgreSQL's metrics roll-up trigger on INSERT and DELETE runs once per statement over its transition table
  (a batch of partner records inserts its new cases in one statement): one PL/pgSQL call and one INSERT of the
  distinct days per statement, where it was a call per row and a mark per row and day. UPDATE keeps migration
  0015's row trigger, whose WHEN skips the rows whose counted figures did not change. SQLite keeps its triggers.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 10:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

METRICS_KEYS = ['parent_id', 'region_code', 'department_id', 'item_id', 'channel']
COVERING = {
    'accepted_on': METRICS_KEYS,
    'completed_at': [*METRICS_KEYS, 'accepted_on', 'result', 'on_time', 'working_days_used', 'statutory_limit_days',
                     'promised_limit_days'],
}
# (index, table, column) of the indexes another index (a unique constraint leading with the column) serves.
COVERED = [
    ('ix_case_events_case_id', 'case_events', 'case_id'),
    ('ix_case_verifications_case_id', 'case_verifications', 'case_id'),
    ('ix_alerts_case_id', 'alerts', 'case_id'),
    ('ix_ratings_case_id', 'ratings', 'case_id'),
    ('ix_deliveries_partner_code', 'deliveries', 'partner_code'),
]


def _days(row: str) -> str:
    """The business days (China Standard Time) a row's figures fall on; none for a joint case's branch."""
    return (f"(VALUES ((({row}.submitted_at AT TIME ZONE 'UTC') + interval '8 hours')::date), "
            f"({row}.accepted_on), ((({row}.completed_at AT TIME ZONE 'UTC') + interval '8 hours')::date)) "
            f"AS d(day) WHERE {row}.parent_id IS NULL")


# INSERT and DELETE: one call per statement, ``new_rows`` / ``old_rows`` its transition table (a batch of partner
# records inserts its new cases in one statement). The days are marked once per statement, distinct. UPDATE keeps
# migration 0015's row trigger: its WHEN (in C, no call) passes over the rows whose counted figures did not change,
# cheaper than capturing every updated row in transition tables and comparing them in SQL (measured).
STATEMENT_FUNCTION = f"""
CREATE FUNCTION metrics_mark_dirty_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rolled date;
BEGIN
    SELECT rolled_until INTO rolled FROM metrics_rollup WHERE id = 1;
    IF rolled IS NULL THEN
        RETURN NULL;
    END IF;
    -- A new mark per statement and day, never an update of an existing one: two writers back-dating the same
    -- day neither wait for nor deadlock on each other. The roll-up deletes only the marks it has read (by id).
    IF TG_OP = 'INSERT' THEN
        INSERT INTO metrics_dirty_days (day)
        SELECT DISTINCT d.day FROM new_rows n, LATERAL {_days('n')} AND d.day <= rolled;
    ELSE
        INSERT INTO metrics_dirty_days (day)
        SELECT DISTINCT d.day FROM old_rows o, LATERAL {_days('o')} AND d.day <= rolled;
    END IF;
    RETURN NULL;
END
$$
"""
STATEMENT_TRIGGERS = {
    'metrics_dirty_insert': 'INSERT ON cases REFERENCING NEW TABLE AS new_rows',
    'metrics_dirty_delete': 'DELETE ON cases REFERENCING OLD TABLE AS old_rows',
}


def _metrics_indexes(*, partial: bool) -> None:
    for column, included in COVERING.items():
        op.drop_index(f'ix_cases_{column}', table_name='cases')
        op.create_index(f'ix_cases_{column}', 'cases', [column], unique=False, postgresql_include=included,
                        postgresql_where=sa.text(f'{column} IS NOT NULL') if partial else None)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for name, table, _ in COVERED:
        op.drop_index(name, table_name=table)
    op.drop_index('ix_cases_deadline', table_name='cases')
    op.drop_index('ix_cases_parent_id', table_name='cases')
    op.create_index('ix_cases_parent_id', 'cases', ['parent_id'], unique=False,
                    postgresql_where=sa.text('parent_id IS NOT NULL'), sqlite_where=sa.text('parent_id IS NOT NULL'))
    op.drop_index('ix_outbox_sent_at', table_name='outbox')
    op.create_index('ix_outbox_unsent', 'outbox', ['id'], unique=False,
                    postgresql_where=sa.text('sent_at IS NULL'), sqlite_where=sa.text('sent_at IS NULL'))
    op.create_index('ix_case_events_actor_id_occurred_at', 'case_events', ['actor_id', 'occurred_at'], unique=False)
    if postgresql:
        _metrics_indexes(partial=True)
        op.execute('DROP TRIGGER metrics_dirty_insert_delete ON cases')
        op.execute(STATEMENT_FUNCTION)
        for name, event in STATEMENT_TRIGGERS.items():
            op.execute(f'CREATE TRIGGER {name} AFTER {event} FOR EACH STATEMENT EXECUTE FUNCTION metrics_mark_dirty_rows()')


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if postgresql:
        for name in STATEMENT_TRIGGERS:
            op.execute(f'DROP TRIGGER {name} ON cases')
        op.execute('DROP FUNCTION metrics_mark_dirty_rows()')
        op.execute('CREATE TRIGGER metrics_dirty_insert_delete AFTER INSERT OR DELETE ON cases '
                   'FOR EACH ROW EXECUTE FUNCTION metrics_mark_dirty()')
        _metrics_indexes(partial=False)
    op.drop_index('ix_case_events_actor_id_occurred_at', table_name='case_events')
    op.drop_index('ix_outbox_unsent', table_name='outbox')
    op.create_index('ix_outbox_sent_at', 'outbox', ['sent_at'], unique=False)
    op.drop_index('ix_cases_parent_id', table_name='cases')
    op.create_index('ix_cases_parent_id', 'cases', ['parent_id'], unique=False)
    op.create_index('ix_cases_deadline', 'cases', ['deadline'], unique=False)
    for name, table, column in COVERED:
        op.create_index(name, table, [column], unique=False)
