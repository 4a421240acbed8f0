"""One circuit breaker per provider per clinic, shared by every worker through Redis
(purgatory's Redis unit of work: failures are counted with INCR, the state is one key).
Other contexts use the same factory with circuits of their own naming (video: one per OpenVidu
deployment), excluding their own refusal exception in `get_breaker(name, exclude=[...])`, and
read them with `state_of(name)`.

A `Rejected` send (the provider refused this message) does not count: the provider is up.
purgatory lets every call through while half-open; the first result decides (a success closes
the breaker, a failure re-opens it for another `breaker_open_seconds`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
from purgatory import AsyncCircuitBreakerFactory, AsyncRedisUnitOfWork
from purgatory.domain.messages.events import ContextChanged
from purgatory.domain.model import OpenedState

from domain import kv
from domain.communication.providers.base import Rejected
from domain.settings import get as app_settings

__all__ = ["BreakerState", "OpenedState", "circuit", "factory", "state", "state_of"]


class BreakerState(msgspec.Struct, frozen=True, kw_only=True):
    #: closed, opened or half-opened (purgatory's names).
    state: str
    failure_count: int
    opened_at: float | None


_factory: AsyncCircuitBreakerFactory | None = None
_transitions: list[tuple[str, str]] = []


_circuits: dict[str, tuple[uuid.UUID, str]] = {}


def circuit(clinic_id: uuid.UUID, provider: str) -> str:
    name = kv.key("breaker", clinic_id, provider)
    _circuits[name] = (clinic_id, provider)
    return name


def owner(name: str) -> tuple[uuid.UUID, str] | None:
    """The clinic and provider of a circuit this process has used."""
    return _circuits.get(name)


def _hook(name: str, event_name: str, event: Any) -> None:
    # only communication's circuits: nothing drains another context's transitions
    if event_name == "state_changed" and isinstance(event, ContextChanged) and name in _circuits:
        _transitions.append((name, event.state))


async def factory() -> AsyncCircuitBreakerFactory:
    global _factory
    if _factory is None:
        cfg = app_settings()
        made = AsyncCircuitBreakerFactory(
            default_threshold=cfg.breaker_threshold, default_ttl=cfg.breaker_open_seconds,
            exclude=[Rejected], uow=AsyncRedisUnitOfWork(cfg.redis_url))
        await made.initialize()
        made.add_listener(_hook)
        _factory = made
    return _factory


def take_transitions() -> list[tuple[str, str]]:
    """State changes this process caused since the last call (for provider_down/up events)."""
    out = list(_transitions)
    _transitions.clear()
    return out


async def state(clinic_id: uuid.UUID, provider: str) -> BreakerState:
    """The breaker as every worker sees it; closed when it never failed."""
    return await state_of(circuit(clinic_id, provider))


async def state_of(name: str) -> BreakerState:
    """The breaker of that circuit name as every worker sees it; closed when it never failed."""
    f = await factory()
    async with f.uow as uow:
        ctx = await uow.contexts.get(name)
    if ctx is None:
        return BreakerState(state="closed", failure_count=0, opened_at=None)
    name = ctx.state
    if name == "opened" and ctx.opened_at is not None and time.time() > ctx.opened_at + ctx.ttl:
        name = "half-opened"  # the next call is the trial
    return BreakerState(state=name, failure_count=int(ctx.failure_count or 0),
                        opened_at=ctx.opened_at)

