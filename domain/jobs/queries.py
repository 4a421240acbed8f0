"""Reads of the job schedule."""

from __future__ import annotations

from domain import db


async def seconds_to_next_due() -> float | None:
    """How long until the next job not yet handed over falls due, by the database's clock (the
    one `claim_due` compares with), or None when none is planned. Jobs already due are left
    out: those not claimed are held by another scheduler (SKIP LOCKED) or wait for the next
    batch. One read of the partial index `scheduled_jobs_due`."""
    rows = await db.fetch(
        """SELECT extract(epoch FROM min(run_at) - clock_timestamp())::float8 AS wait
           FROM scheduled_jobs WHERE enqueued_at IS NULL AND run_at > now()""")
    wait = rows[0]["wait"]
    return None if wait is None else float(wait)
