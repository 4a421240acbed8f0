"""A real python-socketio client (websocket unless told otherwise), recording every event it
receives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import socketio


class Recorder:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.connect_error: Any = None
        self.disconnected = asyncio.Event()
        self._changed = asyncio.Event()

        @self.sio.on("*")
        async def any_event(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self._changed.set()

        @self.sio.event
        async def connect_error(data: Any) -> None:
            self.connect_error = data
            self._changed.set()

        @self.sio.event
        async def disconnect(*_: Any) -> None:
            self.disconnected.set()
            self._changed.set()

    async def connect(self, token: str | None, *, resume: dict[str, int] | None = None,
                      origin: str | None = None, transports: list[str] | None = None) -> None:
        auth: dict[str, Any] = {"token": token}
        if resume is not None:
            auth["resume"] = resume
        headers = {"Origin": origin} if origin else {}
        await self.sio.connect(self.base_url, auth=auth, transports=transports or ["websocket"],
                               headers=headers, wait_timeout=10)

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=10)

    def named(self, name: str) -> list[Any]:
        return [d for e, d in self.events if e == name]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        """Wait until the predicate holds, woken by each received event."""
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
