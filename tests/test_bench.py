"""The benchmark runs end to end at a tiny scale (a smoke test: no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURES = (
    "sweep, 2,000 leads",
    "sweep vs physical floor",
    "sweep right after that big sweep",
    "first-day sweep: a tenant just imported",
    "the first-day sweep vs the floor of every write it must make",
    "the big sweep vs the floor of every write it must make",
    "sweep with every rule on the business clock",
    "ingest, store level, one connection",
    "ingest-time rules disabled",
    "durable-commit ceiling",
    "ingest vs bare one-row durable INSERT commits into lead_activities",
    "batch ingest, lists of",
    "the lists' floor of their writes",
    "ingest vs the floor of what a call must write",
    "ingest, store level, 8 connections",
    "ingest over HTTP",
    "first page + stats",
    "cold start",
    "webhook deliveries drained",
)


def _postgres_serving(data_dir: Path) -> list[int]:
    """Pids of PostgreSQL servers whose data lives under `data_dir`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and argv[0].endswith(b"postgres") and str(data_dir).encode() in b" ".join(argv):
            pids.append(int(proc.name))
    return pids


def test_bench_quick_run_prints_every_measure_with_its_baseline(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--data-dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _postgres_serving(tmp_path / "bench") == [], "make bench left its PostgreSQL running"
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| measure | leadwatch | baseline (same run) | ratio | target | holds |")
    for measure in MEASURES:
        [row] = [line for line in table if measure in line]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 6 and all(cells[:4]), row


def test_analytics_bench_quick_run_prints_its_row_with_the_baseline(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.analytics", "--quick", "--data-dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = [line for line in result.stdout.splitlines() if line.startswith("| analytics, 30 days")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1].startswith("p50 ") and cells[2].startswith("live query p50 "), row


MATURE = (
    "mature: the morning sweep as Supabase Cron runs it",
    "mature: the sweep right after the morning's, nothing due, as Supabase Cron runs it",
    "mature: the same through the store",
    "mature: ingest right after the morning sweep",
    "mature: lists of 1,000 activities right after the morning sweep",
    "active alerts (raised after the sweep, no ANALYZE since)",
    "active alerts (raised by the sweep)",
    "mature: ingest vs the floor of what a call must write",
    "mature: what a call costs right after the morning sweep",
    "mature: analytics, 30 days",
    "mature: the sweep's refresh of max_alerts' statistics",
)


def test_mature_bench_quick_run_prints_every_measure_with_its_floor(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.mature", "--quick", "--data-dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _postgres_serving(tmp_path / "bench") == [], "the mature bench left its PostgreSQL running"
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| measure | leadwatch | baseline (same run) | ratio | target | holds |")
    for measure in MATURE:
        [row] = [line for line in table if measure in line]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 6 and all(cells[:3]), row
    [refresh] = [line for line in table if "refresh of max_alerts' statistics" in line]
    assert "the morning sweep ran it: yes" in refresh, refresh
