"""One LISTEN connection per worker, shared by its loops (scheduler, reminders, notifications,
delivery): each subscribes to the channel it wakes on and gets an event set on every NOTIFY
there. A connection per loop cost PostgreSQL four idle backends per worker.

NOTIFY is a hint, never the only way work is found: every loop also polls. When the connection
drops, the next `ensure` reconnects and wakes every subscriber (a NOTIFY sent meanwhile is
lost, so each loop looks once more)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from domain import settings

log = logging.getLogger("carewire.wakeups")


class Wakeups:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[asyncio.Event]] = {}
        self._conn: asyncpg.Connection | None = None
        self._listening: set[str] = set()
        self._lock = asyncio.Lock()

    def subscribe(self, channel: str) -> asyncio.Event:
        """An event set on every NOTIFY on `channel` (listened to from the next `ensure`)."""
        event = asyncio.Event()
        self._subscribers.setdefault(channel, []).append(event)
        return event

    def _notified(self, _conn: Any, _pid: int, channel: str, _payload: str) -> None:
        for event in self._subscribers.get(channel, ()):
            event.set()

    async def ensure(self) -> None:
        """Connect (or reconnect) when there is no open connection; cheap when there is. A
        failure is logged and leaves the loops polling until the next call."""
        if self._conn is not None and not self._conn.is_closed() \
                and self._listening.issuperset(self._subscribers):
            return
        async with self._lock:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn, self._listening = None, set()
                    self._conn = await asyncpg.connect(settings.get().database_url)
                for channel in set(self._subscribers) - self._listening:
                    await self._conn.add_listener(channel, self._notified)
                    self._listening.add(channel)
            except Exception:
                log.exception("cannot LISTEN; the loops poll until it comes back")
                return
            for events in self._subscribers.values():
                for event in events:
                    event.set()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None


class WakingLoop:
    """A worker loop woken by NOTIFY on `channel` (and its own poll): `run` until `_stop` is
    set. Stopping lets the current batch finish for up to `grace` seconds; a batch cut short
    rolls back and stays for the next worker."""

    name = "loop"

    def __init__(self, wakeups: Wakeups, channel: str) -> None:
        self._wakeups = wakeups
        self._stop = asyncio.Event()
        self._wake = wakeups.subscribe(channel)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def run(self) -> None:
        raise NotImplementedError

    async def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=grace)


async def nap(wake: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, less when woken."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=max(0.0, seconds))
