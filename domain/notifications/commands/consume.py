"""Reading the event log for notifications: each clinic's events in order after its cursor, the
cursor moved in the transaction that enqueued their messages (see domain/notifications/
consumer.py for what each event becomes)."""

from __future__ import annotations

import logging
import uuid

from domain import db
from domain.events.queries import heads, outgoing_after
from domain.notifications.consumer import BATCH, handle, relevant
from domain.tenancy.queries import load_clinic

log = logging.getLogger("carewire.notifications")


async def pending() -> list[uuid.UUID]:
    """Clinics whose log is ahead of their cursor; a clinic new to the consumer gets its cursor
    at 0 here."""
    head = await heads()
    rows = await db.fetch("SELECT clinic_id, last_seq FROM notification_cursors")
    done = {r["clinic_id"]: r["last_seq"] for r in rows}
    if new := [c for c in head if c not in done]:  # the row process_clinic locks
        await db.fetch("INSERT INTO notification_cursors (clinic_id) SELECT unnest($1::uuid[]) "
                       "ON CONFLICT (clinic_id) DO NOTHING", new)
    return [c for c, seq in head.items() if seq > done.get(c, 0)]


async def process_clinic(clinic_id: uuid.UUID) -> int:
    """Read one batch of a clinic's events and act on them; returns how many were read (0 when
    another worker holds the clinic). An event whose handling fails is logged and skipped (its
    savepoint rolled back), so one bad event cannot stop a clinic's notifications."""
    read = 0
    async with db.transaction() as tx:
        rows = await db.fetch("SELECT last_seq FROM notification_cursors WHERE clinic_id = $1 "
                              "FOR UPDATE SKIP LOCKED", clinic_id)
        if not rows:
            return 0
        batch = await outgoing_after(clinic_id, rows[0]["last_seq"], limit=BATCH)
        if not batch:
            return 0
        clinic = await load_clinic(clinic_id)
        for out in batch:
            env = out.envelope
            if not relevant(env):
                continue
            try:
                async with tx.savepoint():
                    await handle(clinic, env)
            except Exception:
                log.exception("notifications for event %s (%s, seq %s) failed; skipped",
                              env.id, env.type, env.seq)
        await db.fetch("UPDATE notification_cursors SET last_seq = $2, updated_at = now() "
                       "WHERE clinic_id = $1", clinic_id, batch[-1].envelope.seq)
        read = len(batch)
    return read
