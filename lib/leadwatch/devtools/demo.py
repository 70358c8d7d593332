"""Demo leads for `leadwatch dev`: supabase/seed.sql, the very file `supabase db reset` loads."""

from __future__ import annotations

import psycopg

from ..migrate import SEED

DEMO_TENANT = "macrea"


def load_demo(database_url: str) -> int:
    """Apply the seed (idempotent) in one transaction; return the demo tenant's active alerts."""
    with psycopg.connect(database_url) as conn:
        conn.execute(SEED.read_text())
        row = conn.execute(
            "select count(*) from public.max_alerts where tenant_id = %s and resolved_at is null", [DEMO_TENANT]
        ).fetchone()
    return row[0] if row else 0
