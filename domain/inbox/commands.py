"""Storing verified webhooks and processing each once.

`receive` stores and schedules in one transaction: a stored event always has its job, and an
event stored before (a provider's retry, a concurrent duplicate: UNIQUE (provider, event_id)
with ON CONFLICT DO NOTHING waits for the first writer) schedules nothing. `process` marks the
row processed with a guarded UPDATE in the transaction of the handler's effects, so a job run
twice (retried, reclaimed from a dead worker) applies an event once; a handler that raises
rolls its effects and the mark back, and the job's retry tries again."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import msgspec

from domain import db
from domain.inbox.handlers import HANDLERS, handler_for
from domain.inbox.models import Event, Handled, Receipt
from domain.jobs.commands import schedule

log = logging.getLogger("carewire.inbox")

#: The job that processes one stored event (tasks/webhooks.py).
TASK = "inbox.process"


def job_key(provider: str, event_id: str) -> str:
    return f"webhook:{provider}:{event_id}"


async def receive(*, provider: str, event_ids: Sequence[str], body: bytes,
                  headers: Mapping[str, str]) -> Receipt:
    """Store a verified webhook under each of its event ids (one for most providers; one per
    status for WhatsApp, whose POSTs batch them) and schedule one processing job per new one.
    Call only after verifying the body: every row is `verified`."""
    unique = list(dict.fromkeys(event_ids))
    async with db.transaction():
        rows = await db.fetch(
            """INSERT INTO webhook_inbox (provider, event_id, headers, body, verified)
               SELECT $1, e, $3::jsonb, $4, true FROM unnest($2::text[]) AS e
               ON CONFLICT (provider, event_id) DO NOTHING RETURNING event_id""",
            provider, unique, msgspec.json.encode(dict(headers)).decode(), body)
        for row in rows:
            await schedule(task=TASK, job_key=job_key(provider, row["event_id"]),
                           payload={"provider": provider, "event_id": row["event_id"]})
    return Receipt(stored=len(rows), duplicates=len(unique) - len(rows))


async def process(provider: str, event_id: str) -> Handled | None:
    """Apply one stored event through its provider's handler, once. None when it was processed
    before (or is not stored). The handler's writes, `processed_at` and the result commit
    together; a failure is noted on the row (its own statement) and raised for the job to retry."""
    try:
        async with db.transaction():
            rows = await db.fetch(
                """UPDATE webhook_inbox SET processed_at = now()
                   WHERE provider = $1 AND event_id = $2 AND processed_at IS NULL
                   RETURNING id, body, headers""",
                provider, event_id)
            if not rows:
                return None
            row = rows[0]
            headers = row["headers"]
            event = Event(provider=provider, event_id=event_id, body=bytes(row["body"]),
                          headers=msgspec.json.decode(headers) if isinstance(headers, str)
                          else dict(headers))
            if provider in HANDLERS:
                handled = await handler_for(provider)(event)
            else:
                handled = Handled(result="no_handler")
            await db.fetch(
                "UPDATE webhook_inbox SET result = $2, clinic_id = $3, error = NULL WHERE id = $1",
                row["id"], handled.result[:200], handled.clinic_id)
    except Exception as exc:
        log.warning("webhook %s %s failed: %s", provider, event_id, type(exc).__name__)
        await db.fetch("UPDATE webhook_inbox SET error = $3 WHERE provider = $1 AND event_id = $2",
                       provider, event_id, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return handled
