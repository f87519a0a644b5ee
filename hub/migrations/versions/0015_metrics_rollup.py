"""supervision metrics: a daily roll-up of the case figures, the days a later write made dirty, the roll-up's
watermark, the trigger on cases that marks a rolled-up day dirty in the writer's own transaction, and on
PostgreSQL the indexes on submitted_at, accepted_on and completed_at made covering (INCLUDE) for the days read
from the cases

The performance metrics over a long period read the roll-up for the days up to the watermark that are not
dirty and the cases only for the others (hub/supervision/rollup.py, docs/supervision.md "How it is computed").
A write whose counted figures fall on a rolled-up day — a partner record with past dates, a correction, a
deletion — marks that day in the same transaction, so the report stays exact before the roll-up catches up.
The trigger reads the one watermark row and writes nothing for today's cases (the watermark stays before
today): the write path gains no hot row.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 06:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the metrics count of a case (hub/supervision/metrics.py): a change to any of them changes a day's figures.
COUNTED = ('submitted_at', 'accepted_on', 'completed_at', 'result', 'on_time', 'working_days_used',
           'statutory_limit_days', 'promised_limit_days', 'department_id', 'region_code', 'item_id', 'channel',
           'origin', 'parent_id')

POSTGRESQL_FUNCTION = """
CREATE FUNCTION metrics_mark_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rolled date;
    days date[] := '{}';
BEGIN
    SELECT rolled_until INTO rolled FROM metrics_rollup WHERE id = 1;
    IF rolled IS NULL THEN
        RETURN NULL;
    END IF;
    -- The business days (China Standard Time) the row's figures fall on, before and after the write;
    -- a joint case's branch is not counted.
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.parent_id IS NULL THEN
        days := days || ARRAY[((OLD.submitted_at AT TIME ZONE 'UTC') + interval '8 hours')::date, OLD.accepted_on,
                              ((OLD.completed_at AT TIME ZONE 'UTC') + interval '8 hours')::date];
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.parent_id IS NULL THEN
        days := days || ARRAY[((NEW.submitted_at AT TIME ZONE 'UTC') + interval '8 hours')::date, NEW.accepted_on,
                              ((NEW.completed_at AT TIME ZONE 'UTC') + interval '8 hours')::date];
    END IF;
    -- A new mark per write, never an update of an existing one: two writers back-dating the same day neither
    -- wait for nor deadlock on each other. The roll-up deletes only the marks it has read (by id), so a mark
    -- committed after that stays and the day is recomputed again.
    INSERT INTO metrics_dirty_days (day)
    SELECT DISTINCT d FROM unnest(days) AS d WHERE d <= rolled;
    RETURN NULL;
END
$$
"""


def _sqlite_days(row: str) -> str:
    return (f"SELECT date({row}.submitted_at, '+8 hours') AS d UNION SELECT {row}.accepted_on "
            f"UNION SELECT date({row}.completed_at, '+8 hours')")


def _sqlite_trigger(name: str, event: str, rows: Sequence[str], when: str) -> str:
    days = " UNION ".join(_sqlite_days(row) for row in rows)
    return f"""
CREATE TRIGGER {name} AFTER {event} ON cases
WHEN ({when}) AND (SELECT rolled_until FROM metrics_rollup WHERE id = 1) IS NOT NULL
BEGIN
    INSERT INTO metrics_dirty_days (day)
    SELECT d FROM ({days}) WHERE d IS NOT NULL AND d <= (SELECT rolled_until FROM metrics_rollup WHERE id = 1);
END
"""


def _changed(old: str, new: str, distinct: str) -> str:
    return " OR ".join(f"{old}.{column} {distinct} {new}.{column}" for column in COUNTED)


# Each event's index carries what its figures are filtered, grouped and summed by: index-only scans.
METRICS_KEYS = ['parent_id', 'region_code', 'department_id', 'item_id', 'channel']
COVERING = {
    'submitted_at': [*METRICS_KEYS, 'origin'],
    'accepted_on': METRICS_KEYS,
    'completed_at': [*METRICS_KEYS, 'accepted_on', 'result', 'on_time', 'working_days_used', 'statutory_limit_days',
                     'promised_limit_days'],
}


def _reindex(*, covering: bool) -> None:
    for column, included in COVERING.items():
        op.drop_index(f'ix_cases_{column}', table_name='cases')
        op.create_index(f'ix_cases_{column}', 'cases', [column], unique=False,
                        postgresql_include=included if covering else [])


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        _reindex(covering=True)
    op.create_table('metrics_daily',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('received', sa.Integer(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('completed', sa.Integer(), nullable=False),
    sa.Column('on_time', sa.Integer(), nullable=False),
    sa.Column('overtime', sa.Integer(), nullable=False),
    sa.Column('days_cases', sa.Integer(), nullable=False),
    sa.Column('days_sum', sa.Integer(), nullable=False),
    sa.Column('promised_statutory', sa.Integer(), nullable=False),
    sa.Column('promised_sum', sa.Integer(), nullable=False),
    sa.Column('actual_statutory', sa.Integer(), nullable=False),
    sa.Column('actual_sum', sa.Integer(), nullable=False),
    sa.Column('online', sa.Integer(), nullable=False),
    sa.Column('window', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'department_id', 'region_code', 'item_id', 'channel',
                            name=op.f('pk_metrics_daily'))
    )
    op.create_table('metrics_dirty_days',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metrics_dirty_days'))
    )
    with op.batch_alter_table('metrics_dirty_days', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metrics_dirty_days_day'), ['day'], unique=False)
    rollup = op.create_table('metrics_rollup',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rolled_until', sa.Date(), nullable=True),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metrics_rollup'))
    )
    op.bulk_insert(rollup, [{'id': 1, 'rolled_until': None, 'updated_at': None}])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRESQL_FUNCTION)
        op.execute('CREATE TRIGGER metrics_dirty_insert_delete AFTER INSERT OR DELETE ON cases '
                   'FOR EACH ROW EXECUTE FUNCTION metrics_mark_dirty()')
        op.execute(f"CREATE TRIGGER metrics_dirty_update AFTER UPDATE ON cases FOR EACH ROW "
                   f"WHEN ({_changed('OLD', 'NEW', 'IS DISTINCT FROM')}) EXECUTE FUNCTION metrics_mark_dirty()")
    else:
        op.execute(_sqlite_trigger('metrics_dirty_insert', 'INSERT', ['NEW'], 'NEW.parent_id IS NULL'))
        op.execute(_sqlite_trigger('metrics_dirty_delete', 'DELETE', ['OLD'], 'OLD.parent_id IS NULL'))
        op.execute(_sqlite_trigger('metrics_dirty_update', 'UPDATE', ['OLD', 'NEW'],
                                   f"(OLD.parent_id IS NULL OR NEW.parent_id IS NULL) "
                                   f"AND ({_changed('OLD', 'NEW', 'IS NOT')})"))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER metrics_dirty_update ON cases')
        op.execute('DROP TRIGGER metrics_dirty_insert_delete ON cases')
        op.execute('DROP FUNCTION metrics_mark_dirty()')
    else:
        for name in ('metrics_dirty_update', 'metrics_dirty_delete', 'metrics_dirty_insert'):
            op.execute(f'DROP TRIGGER {name}')
    op.drop_table('metrics_rollup')
    op.drop_table('metrics_dirty_days')
    op.drop_table('metrics_daily')
    if op.get_bind().dialect.name == 'postgresql':
        _reindex(covering=False)
