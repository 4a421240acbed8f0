"""Fixed-window counters in Redis, shared by every process."""

from __future__ import annotations

from domain import kv
from domain.errors import RateLimited


async def hit(name: str, subject: str, *, window_seconds: int) -> int:
    """Count one event; return the count in the current window."""
    k = kv.key("rl", name, subject)
    async with kv.client().pipeline(transaction=True) as pipe:
        pipe.set(k, 0, ex=window_seconds, nx=True)  # the window starts with the first event
        pipe.incr(k)
        _, count = await pipe.execute()
    return int(count)


async def consume(name: str, subject: str, *, limit: int, window_seconds: int) -> None:
    """Count one event and refuse it when it is over the limit."""
    if await hit(name, subject, window_seconds=window_seconds) > limit:
        await check(name, subject, limit=limit)


async def count(name: str, subject: str) -> int:
    """The events in the current window, without counting one."""
    value = await kv.client().get(kv.key("rl", name, subject))
    return int(value) if value is not None else 0


async def check(name: str, subject: str, *, limit: int) -> None:
    """Refuse when the window already holds `limit` events."""
    k = kv.key("rl", name, subject)
    async with kv.client().pipeline(transaction=False) as pipe:
        pipe.get(k)
        pipe.ttl(k)
        count, ttl = await pipe.execute()
    if count is not None and int(count) >= limit:
        raise RateLimited(f"too many attempts; retry in {max(int(ttl), 1)} s",
                          retry_after=max(int(ttl), 1))


async def reset(name: str, subject: str) -> None:
    await kv.client().delete(kv.key("rl", name, subject))
