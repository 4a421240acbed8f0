"""Adapters called directly, one event loop per call: the pooled HTTP session and SES clients
are bound to the loop that made them, so they are closed with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from domain.communication.providers import http, ses

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def go() -> T:
        try:
            return await coro
        finally:
            await http.close()
            await ses.close()

    return asyncio.run(go())
