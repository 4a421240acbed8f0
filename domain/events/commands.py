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
    return (await record_many(actor, clinic_id=clinic_id, events=[(event, audience)]))[0]


async def record_many(
    actor: Principal | None, *, clinic_id: uuid.UUID,
    events: list[tuple[DomainEvent, list[str]]],
) -> list[Envelope]:
    """Several events of one change in three statements (a queue change tells many patients):
    consecutive sequence numbers, in the order given."""
    if db.engine().current_transaction.get() is None:
        raise RuntimeError("events are recorded inside the transaction of their change")
    if not events:
        return []
    await lock_chain()  # lock order: audit chain, then the clinic's sequence (see audit.commands)
    rows = await db.fetch(
        """INSERT INTO clinic_sequences (clinic_id, last_seq) VALUES ($1, $2)
           ON CONFLICT (clinic_id) DO UPDATE SET last_seq = clinic_sequences.last_seq + $2
           RETURNING last_seq""",
        clinic_id, len(events),
    )
    first = rows[0]["last_seq"] - len(events) + 1
    now = clock.now()
    envelopes = [
        Envelope(id=uuid.uuid4(), seq=first + i, clinic_id=clinic_id, type=event.TYPE,
                 category=event.CATEGORY, priority=event.PRIORITY, occurred_at=now,
                 data=msgspec.to_builtins(event))
        for i, (event, _) in enumerate(events)
    ]
    encode = msgspec.json.encode
    await db.fetch(
        """INSERT INTO events (id, clinic_id, seq, type, category, priority, occurred_at,
               actor_id, data, audience)
           SELECT x.id, $1, x.seq, x.type, x.category, x.priority, $2, $3, x.data,
                  ARRAY(SELECT jsonb_array_elements_text(x.audience))
           FROM unnest($4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::text[],
                       $9::jsonb[], $10::jsonb[])
                AS x(id, seq, type, category, priority, data, audience)""",
        clinic_id, now, actor.user_id if actor else None,
        [e.id for e in envelopes], [e.seq for e in envelopes], [e.type for e in envelopes],
        [e.category.value for e in envelopes], [e.priority.value for e in envelopes],
        [encode(e.data).decode() for e in envelopes],
        [encode(sorted(set(audience))).decode() for _, audience in events],
    )
    await db.fetch("SELECT pg_notify($1, '')", CHANNEL)
    return envelopes
