"""Communication events: a provider's breaker opening or closing, to the clinic's admins.
They name the provider and its state, never a credential, an address or a message."""

from __future__ import annotations

import uuid

from domain import db, kv
from domain.access import rooms
from domain.access.roles import Role
from domain.events.commands import record
from domain.events.envelope import Category, DomainEvent, Priority


class ProviderDown(DomainEvent, frozen=True):
    TYPE = "communication.provider_down"
    CATEGORY = Category.COMMUNICATION
    PRIORITY = Priority.HIGH
    provider: str
    failure_count: int


class ProviderUp(DomainEvent, frozen=True):
    TYPE = "communication.provider_up"
    CATEGORY = Category.COMMUNICATION
    provider: str


async def announce(clinic_id: uuid.UUID, provider: str, *, up: bool, failure_count: int = 0) -> bool:
    """Record the change once, whichever worker saw it: the last announced state per breaker
    is swapped atomically in Redis, and only the worker that changed it records the event.
    Returns whether this call announced."""
    state = "up" if up else "down"
    previous = await kv.client().getset(kv.key("breaker-announced", clinic_id, provider), state)
    if (previous.decode() if isinstance(previous, bytes) else previous or "up") == state:
        return False
    event: DomainEvent = ProviderUp(provider=provider) if up else \
        ProviderDown(provider=provider, failure_count=failure_count)
    async with db.transaction():
        await record(None, clinic_id=clinic_id, event=event,
                     audience=[rooms.clinic_role(clinic_id, Role.CLINIC_ADMIN)])
    return True
