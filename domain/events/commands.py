"""Recording an event: inside the caller's transaction, so it commits with the change.

The clinic's sequence row stays locked from numbering to COMMIT, so events are only noted in
the transaction's journal here and numbered and written just before it commits (see
`domain.journal`): other writes of the clinic wait for that, not for the whole command.
"""

from __future__ import annotations

import uuid

import msgspec

from domain import db
from domain.events.envelope import DomainEvent
from domain.journal import CHANNEL, EventRow
from domain.principal import Principal

__all__ = ["CHANNEL", "record", "record_many"]


async def record(
    actor: Principal | None, *, clinic_id: uuid.UUID, event: DomainEvent, audience: list[str]
) -> None:
    await record_many(actor, clinic_id=clinic_id, events=[(event, audience)])


async def record_many(
    actor: Principal | None, *, clinic_id: uuid.UUID,
    events: list[tuple[DomainEvent, list[str]]],
) -> None:
    """Several events of one change (a queue change tells many patients): consecutive
    sequence numbers, in the order given. Nothing is returned: the sequence numbers exist only
    once the transaction is committing."""
    journal = db.journal()
    if journal is None:
        raise RuntimeError("events are recorded inside the transaction of their change")
    who = actor.user_id if actor else None
    journal.events.extend(
        EventRow(id=uuid.uuid4(), clinic_id=clinic_id, actor_id=who, type=event.TYPE,
                 category=event.CATEGORY.value, priority=event.PRIORITY.value,
                 data=msgspec.to_builtins(event), audience=sorted(set(audience)))
        for event, audience in events
    )
