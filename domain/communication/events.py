"""Communication events, to the clinic's admins: a provider's breaker opening or closing, and a
clinic template that failed at send time. They name the provider, or the template's kind,
channel and locale, never a credential, an address, a template's source or a message.

Each is announced once, whichever worker saw it: the last announced state is swapped
atomically in Redis (GETSET), and only the worker that changed it records the event."""

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


class TemplateFailed(DomainEvent, frozen=True):
    """The clinic's template for this kind, channel and locale failed when a message was
    rendered; the shipped default was sent instead, until the template is saved again."""

    TYPE = "communication.template_failed"
    CATEGORY = Category.COMMUNICATION
    PRIORITY = Priority.HIGH
    kind: str
    channel: str
    locale: str


async def _changed(key: str, state: str, *, initial: str) -> bool:
    """Swap in `state`; whether it differs from the last one announced (`initial` if none)."""
    previous = await kv.client().getset(key, state)
    return (previous.decode() if isinstance(previous, bytes) else previous or initial) != state


async def _announce(clinic_id: uuid.UUID, event: DomainEvent) -> None:
    async with db.transaction():
        await record(None, clinic_id=clinic_id, event=event,
                     audience=[rooms.clinic_role(clinic_id, Role.CLINIC_ADMIN)])


async def announce(clinic_id: uuid.UUID, provider: str, *, up: bool, failure_count: int = 0) -> bool:
    """A breaker's change, once. Returns whether this call announced."""
    state = "up" if up else "down"
    if not await _changed(kv.key("breaker-announced", clinic_id, provider), state, initial="up"):
        return False
    await _announce(clinic_id, ProviderUp(provider=provider) if up else
                    ProviderDown(provider=provider, failure_count=failure_count))
    return True


def _template_key(clinic_id: uuid.UUID, kind: str, channel: str, locale: str) -> str:
    return kv.key("template-failed", clinic_id, kind, channel, locale)


async def template_failed(clinic_id: uuid.UUID, kind: str, channel: str, locale: str) -> bool:
    """A clinic template's failure, once until it is saved again (`template_saved`). Records
    the event in the caller's transaction when there is one. Returns whether this call
    announced."""
    key = _template_key(clinic_id, kind, channel, locale)
    if not await _changed(key, "failed", initial="ok"):
        return False
    await _announce(clinic_id, TemplateFailed(kind=kind, channel=channel, locale=locale))
    return True


async def template_saved(clinic_id: uuid.UUID, kind: str, channel: str, locale: str) -> None:
    """A saved (or removed) template may fail anew, and is then announced again."""
    await kv.client().delete(_template_key(clinic_id, kind, channel, locale))
