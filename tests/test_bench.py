"""The benchmark runs end to end at a tiny scale (a smoke test: no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURES = (
    "sweep, 2,000 leads",
    "sweep vs physical floor",
    "sweep the next day",
    "ingest, store level, one connection",
    "ingest-time rules disabled",
    "durable-commit ceiling",
    "ingest, store level, 8 connections",
    "ingest over HTTP",
    "first page + stats",
    "cold start",
    "webhook deliveries drained",
)


def test_bench_quick_run_prints_every_measure_with_its_baseline(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--data-dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| measure | leadwatch | baseline (same run) | ratio | target | holds |")
    for measure in MEASURES:
        [row] = [line for line in table if measure in line]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 6 and all(cells[:4]), row
