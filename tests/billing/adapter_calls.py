"""Calling a payment adapter in process from a test: each call in its own event loop, and the
in-process settings pointed at a fake (adapters need no database, but settings refuse to load
without one)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from domain import settings
from domain.billing.providers.base import ProviderError, ProviderRejected
from domain.inbox.signatures import Refused

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def go() -> T:
        return await coro

    return asyncio.run(go())


def outcome(coro: Awaitable[Any]) -> Any:
    """The result, or the provider error / webhook refusal it raised."""
    async def go() -> Any:
        try:
            return await coro
        except (ProviderError, ProviderRejected, Refused) as exc:
            return exc

    return asyncio.run(go())


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """`configure(paypal_url=..., CAREWIRE_X=...)`: CAREWIRE_* settings for the in-process
    adapter (the environment, then a fresh `settings.get()`)."""
    for key, value in (("DATABASE_URL", "postgresql://nobody@/none"),
                       ("REDIS_URL", "redis://127.0.0.1:1"), ("CAREWIRE_JWT_SECRET", "x" * 40)):
        if not os.environ.get(key):
            monkeypatch.setitem(os.environ, key, value)

    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setitem(os.environ, name if name.startswith("CAREWIRE_")
                                else f"CAREWIRE_{name.upper()}", value)
        settings.get.cache_clear()

    apply(payment_timeout_seconds="2.0")
    yield apply
    settings.get.cache_clear()
