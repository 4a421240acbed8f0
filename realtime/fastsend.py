"""Direct websocket sends for broadcasts: the hub's fan-out bypass.

python-engineio gives every socket a queue and a writer task; a broadcast through it costs a
queue put, a task switch to the writer and (in `AsyncSocket.poll`) an `asyncio.wait_for`, i.e.
one more task and timer, per recipient. For a socket that is already upgraded to websocket,
whose queue is empty and whose writer is idle, this module lets the emitting coroutine await
the ASGI `websocket.send` itself, with the frame encoded once for all recipients. Everything
else - pings, acks, the CONNECT packet, polling, a socket mid-upgrade, a busy writer, a client
whose transport is not draining - still goes through the queue, so the Socket.IO protocol
and each socket's order are those of python-engineio.

Order per socket. A frame goes direct only when the queue is empty and the writer is parked
in `poll()` waiting for it (`_cw_idle`). Our `poll()` replaces python-engineio's on each
websocket socket: it leaves an item in the queue until the writer task itself takes it, and
clears `_cw_idle` in the same step (no `wait_for`, whose inner task took items out while the
writer had not run yet). So once something is queued, later frames queue behind it until the
writer has sent it all and is idle again. A direct send never suspends: uvicorn's sansio
`send` awaits only `writable.wait()`, and we go direct only while `writable` is set, so the
writer cannot run in the middle of it.

Slow clients. A socket whose transport holds more than WRITE_BUFFER_LIMIT unsent bytes (or
that uvicorn paused) gets its frames queued; its writer then blocks on its own transport, the
queue grows and the hub's MAX_QUEUED_FRAMES rule drops it. Nobody else waits for it.

This leans on internals of python-engineio 4.15.1 and uvicorn 0.54.0's websockets-sansio
protocol. `problems()` checks them at start-up; on any mismatch the hub runs without the
bypass (and logs why), and tests/test_fastsend.py fails, so a version bump is re-verified
before it ships.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable
from importlib import metadata
from types import MethodType
from typing import Any

from engineio import exceptions as eio_exceptions
from engineio.async_drivers import asgi as eio_asgi
from engineio.async_socket import AsyncSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger("carewire.fastsend")

#: The versions whose internals this module was written and tested against.
TESTED = {"python-engineio": "4.15.1", "uvicorn": "0.54.0", "websockets": "17.4"}
#: Unsent bytes a transport may hold before frames for it go through its queue instead.
WRITE_BUFFER_LIMIT = 16 * 1024
#: Recipients handled between two yields to the event loop (over consecutive broadcasts).
YIELD_EVERY = 128
_budget = YIELD_EVERY


class FastWebSocket(eio_asgi.WebSocket):  # type: ignore[misc]
    """python-engineio's ASGI websocket wrapper that also hands its socket our `poll()` and
    the uvicorn protocol behind the ASGI `send`, so broadcasts can write to it directly."""

    async def __call__(self, environ: dict[str, Any]) -> Any:
        sock = getattr(self.handler, "__self__", None)
        if isinstance(sock, AsyncSocket):
            _attach(sock, environ.get("asgi.send"))
        return await super().__call__(environ)


def _attach(sock: AsyncSocket, send: Any) -> None:
    proto = getattr(send, "__self__", None)
    if not isinstance(proto, WebSocketsSansIOProtocol) or getattr(send, "__func__", None) is not (
            WebSocketsSansIOProtocol.send):
        return  # another server or a wrapped send: this socket keeps the stock path
    sock._cw_idle = False
    sock.poll = MethodType(_poll, sock)
    sock._cw_proto = proto


async def _poll(self: AsyncSocket) -> list[Any]:
    """`AsyncSocket.poll` for the websocket writer, same contract (packets to send; [] when the
    socket is done; QueueEmpty on timeout), minus `wait_for`, plus the idle flag."""
    queue = self.queue
    if queue.empty():
        self._cw_idle = True
        try:
            async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                pkt = await queue.get()
        except (TimeoutError, asyncio.CancelledError):
            raise eio_exceptions.QueueEmpty() from None
        finally:
            self._cw_idle = False
    else:
        pkt = queue.get_nowait()
    queue.task_done()
    if pkt is None:
        return []
    packets = [pkt]
    while not queue.empty():
        pkt = queue.get_nowait()
        queue.task_done()
        if pkt is None:
            queue.put_nowait(None)
            break
        packets.append(pkt)
    return packets


def direct_protocol(sock: AsyncSocket) -> WebSocketsSansIOProtocol | None:
    """The uvicorn protocol to write `sock`'s next frame to right now, or None: queue it."""
    proto: WebSocketsSansIOProtocol | None = sock.__dict__.get("_cw_proto")
    if (proto is None or not sock._cw_idle or not sock.queue.empty() or not sock.upgraded
            or sock.upgrading or sock.closing or sock.closed):
        return None
    if proto.disconnected or proto.close_sent or not proto.writable.is_set():
        return None
    transport = proto.transport
    if transport.is_closing() or transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
        return None
    return proto


class Frame:
    """One Engine.IO packet for many sockets: written directly where that is safe, queued
    everywhere else. Counts what went which way."""

    __slots__ = ("direct", "message", "packet", "queued")

    def __init__(self, packet: Any) -> None:
        self.packet = packet
        encoded = packet.encode()
        self.message = ({"type": "websocket.send", "bytes": encoded, "text": None}
                        if isinstance(encoded, bytes) else
                        {"type": "websocket.send", "bytes": None, "text": encoded})
        self.direct = 0
        self.queued = 0

    async def send_all(self, socks: Iterable[AsyncSocket]) -> None:
        """Hand the frame to each socket in turn; one coroutine for the whole broadcast."""
        global _budget
        packet, message = self.packet, self.message
        direct = queued = 0
        try:
            for sock in socks:
                proto = direct_protocol(sock)
                if proto is None:
                    sock.queue.put_nowait(packet)
                    queued += 1
                else:
                    try:
                        await proto.send(message)  # type: ignore[arg-type]
                        direct += 1
                    except Exception:  # closed under us: the writer finds out and ends the socket
                        sock.queue.put_nowait(packet)
                        queued += 1
                _budget -= 1
                if not _budget:
                    _budget = YIELD_EVERY
                    await asyncio.sleep(0)  # a long broadcast must not starve the loop
        finally:
            self.direct += direct
            self.queued += queued


# the internals we rely on ------------------------------------------------------------------


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def problems(server: Any = None) -> list[str]:
    """Why the bypass must not run with the installed libraries (empty: it may)."""
    found = []
    for dist, version in TESTED.items():
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            found.append(f"{dist} {installed} installed, the bypass was verified on {version}")
    if eio_asgi._async.get("websocket") is not eio_asgi.WebSocket:
        found.append("engineio's asgi driver no longer names WebSocket as its websocket class")
    if "environ['asgi.send']" not in _source(eio_asgi.WebSocket.__call__):
        found.append("engineio's asgi WebSocket no longer takes the ASGI send from the environ")
    upgrade = _source(AsyncSocket._upgrade_websocket)
    if "self.server._async['websocket']" not in upgrade or "self._websocket_handler" not in upgrade:
        found.append("AsyncSocket._upgrade_websocket no longer builds server._async['websocket']"
                     " around self._websocket_handler")
    handler = _source(AsyncSocket._websocket_handler)
    for needle in ("packets = await self.poll()", "await ws.send(pkt.encode())",
                   "self.upgraded = True", "self.upgrading = False",
                   "await self.queue.put(None)"):
        if needle not in handler:
            found.append(f"AsyncSocket._websocket_handler no longer has {needle!r}")
    if "self.queue.get()" not in _source(AsyncSocket.poll):
        found.append("AsyncSocket.poll no longer reads self.queue")
    send = _source(WebSocketsSansIOProtocol.send)
    if send.count("await ") != 1 or "await self.writable.wait()" not in send:
        found.append("uvicorn's sansio send may suspend elsewhere than writable.wait()")
    init = _source(WebSocketsSansIOProtocol.__init__)
    for needle in ("self.writable = asyncio.Event()", "self.disconnected = False",
                   "self.close_sent = False", "self.transport"):
        if needle not in init:
            found.append(f"uvicorn's sansio protocol no longer sets {needle!r}")
    for name in ("pause_writing", "resume_writing"):
        if "self.writable." not in _source(getattr(WebSocketsSansIOProtocol, name, None)):
            found.append(f"uvicorn's sansio {name} no longer drives `writable`")
    if server is not None:
        sock = AsyncSocket(server, "fastsend-probe")
        for attr in ("queue", "upgraded", "upgrading", "closing", "closed", "connected"):
            if not hasattr(sock, attr):
                found.append(f"AsyncSocket has no {attr!r}")
        if not isinstance(getattr(sock, "queue", None), asyncio.Queue):
            found.append("AsyncSocket.queue is not an asyncio.Queue")
    return found


def install(sio: Any) -> bool:
    """Route `sio`'s websocket sockets through FastWebSocket; False (logged) if the installed
    libraries are not the ones verified."""
    found = problems(sio.eio)
    if found:
        log.warning("fan-out bypass disabled: %s", "; ".join(found))
        return False
    sio.eio._async = {**sio.eio._async, "websocket": FastWebSocket}
    return True


def installed(sio: Any) -> bool:
    return sio.eio._async.get("websocket") is FastWebSocket
