"""The delivery log forgets what messages said: past its clinic's
`message_body_retention_days`, a message's subject, body, html and data are cleared and
`body_pruned_at` set. The row (who, when, where to, how it went) stays."""

from __future__ import annotations

from domain import clock, db
from domain.tenancy.queries import message_body_retention_days

#: Messages cleared per statement, so one run never holds many rows locked at once.
BATCH = 1000


async def prune_bodies(*, batch: int = BATCH) -> int:
    """Clear the bodies of every message older than its clinic's retention; how many. Messages
    still queued or sending keep theirs (the pipeline needs the text to send them). Batches
    skip rows another run holds, so two runs at once share the work."""
    pruned = 0
    while True:
        rows = await db.fetch(
            f"""WITH due AS (
                    SELECT m.id FROM communication_messages m
                    WHERE m.body_pruned_at IS NULL AND m.status NOT IN ('queued', 'sending')
                      AND m.created_at < $1::timestamptz - interval '1 day'
                      AND m.created_at < $1::timestamptz
                          - make_interval(days => {message_body_retention_days("m.clinic_id")})
                    LIMIT $2 FOR UPDATE SKIP LOCKED)
                UPDATE communication_messages m
                SET subject = NULL, body = NULL, html = NULL, data = NULL,
                    body_pruned_at = $1, updated_at = $1
                FROM due WHERE m.id = due.id
                RETURNING 1""",
            clock.now(), batch,
        )
        pruned += len(rows)
        if len(rows) < batch:
            return pruned
