#!/usr/bin/env python3
"""The DuckDB side of `ledgerstack bench usage`: the same daily usage records, computed by SQL.

Reads the events the bench exported from the log (CSV: position, occurred_ms, type, state,
account, vm, until_ms), pairs VM.START/VM.STOP (RUNNING_VM, type 1) and VM.CREATE/VM.DESTROY
(ALLOCATED_VM, type 2) into intervals, clips them into the local days of the aggregation zone
(the period of local date D is [first instant of D, first instant of D+1), spec/usage.md), keeps
the days that the last USAGE.CLOSE closed, and writes one row per (day, account, type, entity)
with its milliseconds: `day,account,type,entity,ms`, no header, in no particular order.

Only `Completed` events count, as in the usage projection. Durations are integer milliseconds
throughout (epoch_ms arithmetic, no floats).

It prints JSON lines on stdout: `{"event": "records_in_memory", ...}` the moment the records
are computed (the bench times the whole process up to that line), then a summary with its own
timings. With --parquet it also converts the events to Parquet (untimed), computes the records
again from that file (timed), and checks inside DuckDB that both results are equal.
"""

import argparse
import json
import os
import sys
import time

try:
    import duckdb
except ImportError:
    sys.exit(
        "usage_duckdb.py: the Python module `duckdb` is not installed in "
        f"{sys.executable}; install it with `.venv/bin/pip install -r "
        "tests/python/requirements.txt` (scripts/test does this)"
    )

EVENT_COLUMNS = {
    "position": "BIGINT",
    "occurred_ms": "BIGINT",
    "type": "VARCHAR",
    "state": "VARCHAR",
    "account": "UUID",
    "vm": "UUID",
    "until_ms": "BIGINT",
}

# The first instant of local date d in zone z. ICU reads a local midnight that does not exist
# (America/Santiago 2026-09-06) as the first instant after the gap, which is right, but a
# midnight that occurs twice (America/Havana 2026-11-01) as its second occurrence: step back
# to the first when the instant 60 (or 30) minutes earlier is also local midnight of d.
DAY_START = """
CREATE OR REPLACE MACRO day_start(d, z) AS
    CASE
        WHEN timezone(z, timezone(z, d::TIMESTAMP) - INTERVAL 60 MINUTE) = d::TIMESTAMP
            THEN timezone(z, d::TIMESTAMP) - INTERVAL 60 MINUTE
        WHEN timezone(z, timezone(z, d::TIMESTAMP) - INTERVAL 30 MINUTE) = d::TIMESTAMP
            THEN timezone(z, d::TIMESTAMP) - INTERVAL 30 MINUTE
        ELSE timezone(z, d::TIMESTAMP)
    END
"""

# The local date of an instant given in ms since the epoch.
LOCAL_DATE = """
CREATE OR REPLACE MACRO local_date(ms, z) AS
    timezone(z, make_timestamptz(ms * 1000))::DATE
"""

RECORDS = """
CREATE OR REPLACE TABLE {target} AS
WITH horizon AS (
    SELECT max(until_ms) AS until_ms FROM {source} WHERE type = 'USAGE.CLOSE'
),
completed AS (
    SELECT position, occurred_ms, type, account, vm
    FROM {source}
    WHERE state = 'Completed' AND vm IS NOT NULL
),
-- Each track's transitions: 1 opens, 0 closes. VM.DESTROY closes both tracks.
transitions AS (
    SELECT account, vm, 1 AS usage_type, position, occurred_ms,
           CASE WHEN type = 'VM.START' THEN 1 ELSE 0 END AS opens
    FROM completed WHERE type IN ('VM.START', 'VM.STOP', 'VM.DESTROY')
    UNION ALL
    SELECT account, vm, 2 AS usage_type, position, occurred_ms,
           CASE WHEN type = 'VM.CREATE' THEN 1 ELSE 0 END AS opens
    FROM completed WHERE type IN ('VM.CREATE', 'VM.DESTROY')
),
-- An open lasts until the track's next transition (or the horizon): a second open in a row
-- splits an interval in two without changing its sum.
intervals AS (
    SELECT account, vm, usage_type, opens, occurred_ms AS from_ms,
           coalesce(lead(occurred_ms) OVER (
               PARTITION BY vm, usage_type ORDER BY occurred_ms, position
           ), (SELECT until_ms FROM horizon)) AS to_ms
    FROM transitions
),
open_intervals AS (
    SELECT account, vm, usage_type, from_ms, to_ms,
           local_date(from_ms, $zone) AS first_day,
           local_date(to_ms - 1, $zone) AS last_day
    FROM intervals
    WHERE opens = 1 AND to_ms > from_ms
),
days AS (
    SELECT d::DATE AS day,
           epoch_ms(day_start(d::DATE, $zone)) AS start_ms,
           epoch_ms(day_start((d + INTERVAL 1 DAY)::DATE, $zone)) AS end_ms
    FROM generate_series(
        (SELECT min(first_day) FROM open_intervals)::TIMESTAMP,
        (SELECT max(last_day) FROM open_intervals)::TIMESTAMP,
        INTERVAL 1 DAY
    ) AS t(d)
),
pieces AS (
    SELECT account, vm, usage_type, from_ms, to_ms,
           unnest(generate_series(first_day::TIMESTAMP, last_day::TIMESTAMP, INTERVAL 1 DAY))::DATE
               AS day
    FROM open_intervals
)
SELECT p.day, p.account, p.usage_type AS type, p.vm AS entity,
       sum(least(p.to_ms, d.end_ms) - greatest(p.from_ms, d.start_ms))::BIGINT AS ms
FROM pieces p JOIN days d ON d.day = p.day
WHERE d.end_ms <= (SELECT until_ms FROM horizon)
GROUP BY p.day, p.account, p.usage_type, p.vm
HAVING ms > 0
"""


def emit(line):
    print(json.dumps(line), flush=True)


def micros_since(started):
    """Whole microseconds since `started` (a perf_counter_ns reading): the bench reads no floats."""
    return (time.perf_counter_ns() - started) // 1000


def compute(con, zone, source, target):
    """Computes the records from table `source` into table `target`; returns microseconds."""
    started = time.perf_counter_ns()
    con.execute(RECORDS.format(source=source, target=target), {"zone": zone})
    return micros_since(started)


def load(con, table, relation_sql, path):
    """Loads the events into a table; returns microseconds."""
    started = time.perf_counter_ns()
    con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {relation_sql}", [path])
    return micros_since(started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True, help="events CSV exported by the bench")
    parser.add_argument("--zone", required=True, help="IANA aggregation zone")
    parser.add_argument("--out", required=True, help="records CSV to write")
    parser.add_argument(
        "--parquet",
        help="also convert the events to this Parquet file and time the computation from it",
    )
    args = parser.parse_args()

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(DAY_START)
    con.execute(LOCAL_DATE)
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in EVENT_COLUMNS.items()) + "}"
    csv_relation = f"read_csv(?, header = true, columns = {columns})"

    load_us = load(con, "events", csv_relation, args.events)
    compute_us = compute(con, args.zone, "events", "records")
    (records,) = con.execute("SELECT count(*) FROM records").fetchone()
    emit({"event": "records_in_memory", "records": records})

    started = time.perf_counter_ns()
    con.execute(
        "COPY (SELECT day, account, type, entity, ms FROM records) TO ? (HEADER false)",
        [args.out],
    )
    write_us = micros_since(started)

    summary = {
        "event": "summary",
        "duckdb_version": duckdb.__version__,
        "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
        "records": records,
        "events": con.execute("SELECT count(*) FROM events").fetchone()[0],
        "csv": {"load_us": load_us, "compute_us": compute_us, "write_us": write_us},
    }

    if args.parquet:
        started = time.perf_counter_ns()
        con.execute("COPY events TO ? (FORMAT parquet)", [args.parquet])
        convert_us = micros_since(started)
        load_p = load(con, "events_p", "read_parquet(?)", args.parquet)
        compute_p = compute(con, args.zone, "events_p", "records_p")
        (differences,) = con.execute(
            "SELECT count(*) FROM ((SELECT * FROM records EXCEPT ALL SELECT * FROM records_p)"
            " UNION ALL (SELECT * FROM records_p EXCEPT ALL SELECT * FROM records))"
        ).fetchone()
        summary["parquet"] = {
            "convert_us": convert_us,
            "bytes": os.path.getsize(args.parquet),
            "load_us": load_p,
            "compute_us": compute_p,
            "differences_from_csv": differences,
        }
        if differences:
            emit(summary)
            sys.exit(f"usage_duckdb.py: {differences} records differ between CSV and Parquet runs")

    emit(summary)


if __name__ == "__main__":
    main()
