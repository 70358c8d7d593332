"""What the sweep's work_mem costs: the same big sweep at two settings, rolled back and repeated.

    python -m bench.work_mem [--leads 500000] [--activities 1000000] [--settings 256MB 16MB]

The bench dataset (20 % of leads due) in a fresh embedded PostgreSQL; per setting, the seconds of
`select public.sweep_alerts()` and the temporary files it wrote (pg_stat_database).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from leadwatch.devtools.embedded import start_embedded, stop_embedded
from leadwatch.migrate import migrate

from .dataset import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.work_mem", description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=500_000)
    parser.add_argument("--activities", type=int, default=1_000_000)
    parser.add_argument("--settings", nargs="+", default=["256MB", "16MB"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="leadwatch-work-mem-"))
    try:
        url = start_embedded(data / "pg", database="bench")
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            load(
                conn, leads=args.leads, activities=args.activities, tenants=10, now=datetime.now(UTC), listing_alerts=0
            )
            conn.execute("vacuum analyze")
            for _ in range(args.rounds):
                for setting in args.settings:
                    conn.execute(f"alter function public.sweep_alerts(text, timestamptz) set work_mem = '{setting}'")
                    before = _temp(conn)
                    conn.execute("checkpoint")
                    started = time.perf_counter()
                    with conn.transaction(force_rollback=True):
                        result = conn.execute("select public.sweep_alerts()").fetchone()[0]
                    seconds = time.perf_counter() - started
                    time.sleep(1.5)  # the statistics arrive after the transaction
                    written, files = (a - b for a, b in zip(_temp(conn), before, strict=True))
                    print(
                        f"work_mem {setting:>6}: {seconds:5.1f} s, {result['leads_checked']:,} due leads, "
                        f"{sum(result['created'].values()):,} alerts, temp files {files} ({written / 1e6:.0f} MB)",
                        flush=True,
                    )
        stop_embedded(data / "pg")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return 0


def _temp(conn: psycopg.Connection) -> tuple[int, int]:
    conn.execute("select pg_stat_clear_snapshot()")
    row = conn.execute(
        "select temp_bytes, temp_files from pg_stat_database where datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


if __name__ == "__main__":
    raise SystemExit(main())
