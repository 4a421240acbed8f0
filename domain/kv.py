"""The process's Redis client, opened once at start-up, and our key prefix."""

from __future__ import annotations

import redis.asyncio as aioredis

from domain import settings

_client: aioredis.Redis | None = None


def client() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(settings.get().redis_url)
    return _client


def key(*parts: object) -> str:
    return settings.get().redis_prefix + ":".join(str(p) for p in parts)


async def close() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
