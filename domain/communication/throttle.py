"""Sends per second per provider per clinic, shared by every worker: a generic cell rate
algorithm in one Redis script (Redis's clock, so workers on different hosts agree).

Each send reserves the next free slot, `1/rate` seconds after the previous one, and waits for
it: messages over the limit wait, none is dropped, and sends are spaced evenly (no bursts, so
no one-second window holds more than the limit, bar the jitter of waking up). A slot further
away than the caller will wait is not reserved; the caller reschedules the message instead of
holding a worker.
"""

from __future__ import annotations

import asyncio
import uuid

from domain import kv

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(now, tat)
local wait = start - now
if wait > tonumber(ARGV[2]) then
  return -wait
end
redis.call('SET', KEYS[1], start + interval, 'PX', math.floor((wait + interval) / 1000) + 1000)
return wait
"""

_script_sha: str | None = None


async def reserve(clinic_id: uuid.UUID, provider: str, *, rate_per_second: int,
                  max_wait: float) -> float:
    """Reserve a send slot. Returns the seconds to wait for it (≥ 0), or, when the next slot is
    more than `max_wait` away, minus the seconds until it (nothing reserved)."""
    global _script_sha
    client = kv.client()
    key = kv.key("throttle", clinic_id, provider)
    args = (max(1, round(1_000_000 / rate_per_second)), round(max_wait * 1_000_000))
    if _script_sha is None:
        _script_sha = str(await client.script_load(_RESERVE))
    try:
        micros = int(await client.evalsha(_script_sha, 1, key, *args))
    except Exception as exc:  # a restarted Redis forgot the script
        if "NOSCRIPT" not in str(exc):
            raise
        _script_sha = str(await client.script_load(_RESERVE))
        micros = int(await client.evalsha(_script_sha, 1, key, *args))
    return micros / 1_000_000


async def acquire(clinic_id: uuid.UUID, provider: str, *, rate_per_second: int,
                  max_wait: float) -> float | None:
    """Wait for a send slot and return None; or, when none is free within `max_wait`, return
    the seconds until one is, without waiting or reserving."""
    wait = await reserve(clinic_id, provider, rate_per_second=rate_per_second, max_wait=max_wait)
    if wait < 0:
        return -wait
    if wait > 0:
        await asyncio.sleep(wait)
    return None
