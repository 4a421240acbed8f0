"""Recording an event: inside the caller's transaction, so it commits with the change."""

from __future__ import annotations

import uuid

import msgspec

from domain import clock, db
from domain.audit.commands import lock_chain
from domain.events.envelope import DomainEvent, Envelope
from domain.principal import Principal

#: LISTEN channel the relay wakes on; NOTIFY is delivered at commit.
CHANNEL = "carewire_events"


async def record(
    actor: Principal | None, *, clinic_id: uuid.UUID, event: DomainEvent, audience: list[str]
) -> Envelope:
    if db.engine().current_transaction.get() is None:
        raise RuntimeError("events are recorded inside the transaction of their change")
    await lock_chain()  # lock order: audit chain, then the clinic's sequence (see audit.commands)
    rows = await db.fetch(
        """INSERT INTO clinic_sequences (clinic_id, last_seq) VALUES ($1, 1)
           ON CONFLICT (clinic_id) DO UPDATE SET last_seq = clinic_sequences.last_seq + 1
           RETURNING last_seq""",
        clinic_id,
    )
    envelope = Envelope(
        id=uuid.uuid4(),
        seq=rows[0]["last_seq"],
        clinic_id=clinic_id,
        type=event.TYPE,
        category=event.CATEGORY,
        priority=event.PRIORITY,
        occurred_at=clock.now(),
        data=msgspec.to_builtins(event),
    )
    await db.fetch(
        """INSERT INTO events (id, clinic_id, seq, type, category, priority, occurred_at,
               actor_id, data, audience)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)""",
        envelope.id, clinic_id, envelope.seq, envelope.type, envelope.category.value,
        envelope.priority.value, envelope.occurred_at, actor.user_id if actor else None,
        msgspec.json.encode(envelope.data).decode(), sorted(set(audience)),
    )
    await db.fetch("SELECT pg_notify($1, '')", CHANNEL)
    return envelope
