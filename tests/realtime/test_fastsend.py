"""The fan-out bypass leans on internals of python-engineio and uvicorn (realtime/fastsend.py,
checked by realtime/fastsend_guard.py). This fails loudly when they change: re-verify the
bypass (order, slow clients, upgrade) on the new versions, then update fastsend_guard.TESTED
and the pins in pyproject.toml together."""

from __future__ import annotations

import asyncio
import json
import socket
import tomllib
from pathlib import Path
from typing import Any

import socketio
import uvicorn
import websockets.asyncio.client
from engineio.packet import MESSAGE, Packet
from socketio import packet as sio_packet

from realtime import fastsend, fastsend_guard


def test_the_installed_internals_are_the_verified_ones():
    sio = socketio.AsyncServer(async_mode="asgi")
    assert fastsend_guard.problems(sio.eio) == []


def test_pyproject_pins_exactly_the_verified_versions():
    deps = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())[
        "project"]["dependencies"]
    pins = {d.split("==")[0].split("[")[0]: d.split("==")[1] for d in deps if "==" in d}
    for dist, version in fastsend_guard.TESTED.items():
        assert pins.get(dist) == version, f"pin {dist}=={version} in pyproject.toml"


def test_install_routes_websockets_through_the_bypass():
    sio = socketio.AsyncServer(async_mode="asgi")
    stock = sio.eio._async
    assert fastsend.install(sio) is True
    assert fastsend.installed(sio)
    # engineio's driver table is shared by every server in the process: it must stay stock.
    assert stock["websocket"] is not fastsend.FastWebSocket
    assert not fastsend.installed(socketio.AsyncServer(async_mode="asgi"))


# the bypass under back-pressure, against real uvicorn and python-engineio ------------------


class LiveServer:
    """uvicorn (websockets-sansio, as `carewire serve`) with a bare python-socketio server
    and the bypass installed, in this event loop, on a free port."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)
        assert fastsend.install(self.sio)
        config = uvicorn.Config(socketio.ASGIApp(self.sio), host="127.0.0.1", port=0,
                                ws="websockets-sansio", lifespan="off", log_level="warning")
        config.load()
        self.server = uvicorn.Server(config)
        self.server.lifespan = config.lifespan_class(config)
        self.url = ""

    async def __aenter__(self) -> LiveServer:
        await self.server.startup()
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.server.should_exit = True
        await self.server.shutdown()

    async def broadcast(self, n: int, pad: str, frames: list[fastsend.Frame]) -> None:
        """What Hub._fanout does with one frame, to every socket."""
        frame = fastsend.Frame(Packet(MESSAGE, self.sio.packet_class(
            sio_packet.EVENT, namespace="/", data=["tick", {"n": n, "pad": pad}]).encode()))
        await frame.send_all([s for s in self.sio.eio.sockets.values() if not s.closed])
        frames.append(frame)


async def stalled_client(url: str) -> Any:
    """A raw websocket Socket.IO client that reads nothing until told: a tiny receive buffer
    and a 2-frame queue, so the server's writes back up quickly."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (url.split("//")[1].split(":")[0],
                                                        int(url.rsplit(":", 1)[1])))
    ws = await websockets.asyncio.client.connect(
        url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", sock=raw,
        max_queue=2, ping_interval=None, close_timeout=1, compression=None)
    assert str(await ws.recv()).startswith("0{")  # Engine.IO open
    await ws.send("40")
    assert str(await ws.recv()).startswith("40{")  # Socket.IO connected
    return ws


class Tally:
    """Numbers received, and a wait for how many, woken by each arrival."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self._changed = asyncio.Event()

    def add(self, n: int) -> None:
        self.items.append(n)
        self._changed.set()

    async def reach(self, count: int, timeout: float = 30) -> None:
        async def wait() -> None:
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


def test_a_stalled_client_neither_blocks_others_nor_loses_its_order():
    total, pad = 2000, "x" * 1000

    async def scenario() -> None:
        async with LiveServer() as live:
            fast = socketio.AsyncClient(reconnection=False)
            got, seen = Tally(), Tally()

            @fast.on("tick")
            async def tick(data: Any) -> None:
                got.add(data["n"])

            await fast.connect(live.url, transports=["websocket"], wait_timeout=10)
            slow = await stalled_client(live.url)
            # Small kernel buffers on the server's side of the slow socket too (Linux would
            # otherwise let megabytes pile up there before the transport backs up).
            for sid, sock in live.sio.eio.sockets.items():
                if sid != fast.eio.sid:
                    sock._cw_route.transport.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
            frames: list[fastsend.Frame] = []
            try:
                # First half while the slow client reads nothing: the broadcasts must not wait
                # for it; its frames queue once its transport backs up.
                for n in range(total // 2):
                    await live.broadcast(n, pad, frames)
                assert sum(f.queued for f in frames) > 0, "the slow client never backed up"
                assert sum(f.direct for f in frames) >= total // 2, "the bypass never engaged"

                # Then while it drains, until it has caught up: a frame may go direct again only
                # once the queue is empty and the writer idle, or the order breaks.
                async def read_slow() -> None:
                    while True:
                        msg = str(await slow.recv())
                        if msg.startswith("42"):
                            seen.add(json.loads(msg[2:])[1]["n"])

                reader = asyncio.ensure_future(read_slow())
                n = total // 2
                direct_before = sum(f.direct for f in frames)
                while n < total or len(seen.items) < n - 2:
                    assert n < 20 * total, f"the slow client never caught up ({len(seen.items)}/{n})"
                    await live.broadcast(n, pad, frames)
                    n += 1
                    await asyncio.sleep(0)  # interleave with the writers and the reader
                assert sum(f.direct for f in frames) > direct_before, "the bypass never resumed"
                await seen.reach(n)
                await got.reach(n)
                # Both caught up, both writers idle: straight to the websocket again.
                caught_up, last = len(frames), n + 5
                for k in range(n, last):
                    await live.broadcast(k, pad, frames)
                assert [f.direct for f in frames[caught_up:]] == [2] * 5
                await seen.reach(last)
                await got.reach(last)
                reader.cancel()
                assert seen.items == list(range(last))
                assert got.items == list(range(last))
            finally:
                await slow.close()
                await fast.disconnect()

    asyncio.run(scenario())


def test_shared_frame_and_per_connection_frame_both_arrive_in_order():
    """Sockets without websocket extensions get the one pre-built frame written to their
    transport; a permessage-deflate socket (browsers and the JS client offer it) gets its own,
    compressed frame through uvicorn's send. Both see every event, in order."""
    total = 300

    async def client(url: str, compression: str | None) -> Any:
        ws = await websockets.asyncio.client.connect(
            url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
            ping_interval=None, close_timeout=1, compression=compression)
        assert str(await ws.recv()).startswith("0{")
        await ws.send("40")
        assert str(await ws.recv()).startswith("40{")
        return ws

    async def read(ws: Any, count: int) -> list[int]:
        seen: list[int] = []
        while len(seen) < count:
            msg = str(await asyncio.wait_for(ws.recv(), 10))
            if msg.startswith("42"):
                seen.append(json.loads(msg[2:])[1]["n"])
        return seen

    async def scenario() -> None:
        async with LiveServer() as live:
            plain = await client(live.url, None)
            deflate = await client(live.url, "deflate")
            try:
                routes = [s._cw_route for s in live.sio.eio.sockets.values()]
                assert sorted(r.shared for r in routes) == [False, True]
                frames: list[fastsend.Frame] = []
                readers = [asyncio.ensure_future(read(ws, total)) for ws in (plain, deflate)]
                for n in range(total):
                    await live.broadcast(n, "y" * (n % 50), frames)
                    if n % 7 == 0:
                        await asyncio.sleep(0)
                got = await asyncio.gather(*readers)
                assert got == [list(range(total))] * 2
                assert sum(f.direct for f in frames) > total  # the bypass engaged for both
            finally:
                await plain.close()
                await deflate.close()

    asyncio.run(scenario())
