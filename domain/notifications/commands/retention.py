"""The inbox forgets what notifications said, as the delivery log does: past the clinic's
`message_body_retention_days`, an item's title and body are cleared (the item stays)."""

from __future__ import annotations

from domain import clock, db
from domain.tenancy.queries import message_body_retention_days

#: Items cleared per statement, so one run never holds many rows locked at once.
BATCH = 1000


async def prune_texts(*, batch: int = BATCH) -> int:
    """Clear the text of every inbox item older than its clinic's retention; how many."""
    pruned = 0
    while True:
        rows = await db.fetch(
            f"""WITH due AS (
                    SELECT n.id FROM notifications n
                    WHERE (n.title IS NOT NULL OR n.body IS NOT NULL)
                      AND n.created_at < $1::timestamptz - interval '1 day'
                      AND n.created_at < $1::timestamptz
                          - make_interval(days => {message_body_retention_days("n.clinic_id")})
                    LIMIT $2 FOR UPDATE SKIP LOCKED)
                UPDATE notifications n SET title = NULL, body = NULL
                FROM due WHERE n.id = due.id
                RETURNING 1""",
            clock.now(), batch,
        )
        pruned += len(rows)
        if len(rows) < batch:
            return pruned
