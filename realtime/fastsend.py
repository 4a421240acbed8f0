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

One frame for all. The websocket frame is serialized once per broadcast too: server frames are
unmasked, so for a connection without extensions uvicorn's `send` would write exactly those
bytes. For such a socket (open, nothing of its own in `conn.writes`, no fragmented message
going) `Frame.send_all` writes them with `transport.write` itself, which leaves the websockets
connection in the state `send` would have (see `Frame`). A permessage-deflate socket still goes
through uvicorn's `send`. What each socket needs for this is looked up once, when it attaches
(`Route`), not per delivery.

Slow clients. A socket whose transport holds more than WRITE_BUFFER_LIMIT unsent bytes (or
that uvicorn paused) gets its frames queued; its writer then blocks on its own transport, the
queue grows and the hub's MAX_QUEUED_FRAMES rule drops it. Nobody else waits for it.

This leans on internals of python-engineio 4.15.1, uvicorn 0.54.0's websockets-sansio
protocol and websockets 17.4's sans-I/O connection. realtime/fastsend_guard.py checks them at
start-up; on any mismatch the hub runs without the bypass (and logs why), and
tests/realtime/test_fastsend.py fails, so a version bump is re-verified before it ships.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from types import MethodType
from typing import Any

from engineio import exceptions as eio_exceptions
from engineio.async_drivers import asgi as eio_asgi
from engineio.async_socket import AsyncSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets import frames as ws_frames
from websockets import protocol as ws_protocol

from realtime import fastsend_guard

log = logging.getLogger("carewire.fastsend")

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


class Route:
    """What a broadcast needs of one websocket socket, looked up once when it attaches rather
    than once per delivery: uvicorn's protocol, its websockets connection and its transport,
    and whether the shared pre-framed bytes are what uvicorn's `send` would write for it."""

    __slots__ = ("conn", "proto", "shared", "transport", "writable")

    def __init__(self, proto: WebSocketsSansIOProtocol) -> None:
        self.proto = proto
        self.conn = proto.conn
        self.transport = proto.transport
        self.writable = proto.writable
        # Server frames are unmasked, so without extensions (permessage-deflate compresses per
        # connection, with context) every socket's frame is the same bytes. The extensions are
        # settled by `conn.accept()`, which uvicorn calls before the ASGI app runs.
        self.shared = not self.conn.extensions and self.conn.side is ws_protocol.SERVER


def _attach(sock: AsyncSocket, send: Any) -> None:
    proto = getattr(send, "__self__", None)
    if not isinstance(proto, WebSocketsSansIOProtocol) or getattr(send, "__func__", None) is not (
            WebSocketsSansIOProtocol.send):
        return  # another server or a wrapped send: this socket keeps the stock path
    sock._cw_idle = False
    sock.poll = MethodType(_poll, sock)
    sock._cw_route = Route(proto)


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


class Frame:
    """One Engine.IO packet for many sockets: written directly where that is safe, queued
    everywhere else. Counts what went which way.

    The websocket frame is built once too. For a socket whose connection has no extensions,
    is open, has nothing of its own waiting to be written and no fragmented message going,
    uvicorn's `send` would frame exactly these bytes (`conn.send_text` -> `send_frame` ->
    `Frame.serialize(mask=False)`, nothing else changes in the connection's state) and hand
    them to `transport.write`; we hand them to `transport.write` ourselves. Any other direct
    socket (permessage-deflate, say) goes through uvicorn's `send`."""

    __slots__ = ("direct", "message", "packet", "queued", "wire")

    def __init__(self, packet: Any) -> None:
        self.packet = packet
        encoded = packet.encode()
        if isinstance(encoded, bytes):
            self.message = {"type": "websocket.send", "bytes": encoded, "text": None}
            frame = ws_frames.Frame(ws_frames.Opcode.BINARY, encoded)
        else:
            self.message = {"type": "websocket.send", "bytes": None, "text": encoded}
            frame = ws_frames.Frame(ws_frames.Opcode.TEXT, encoded.encode())
        self.wire = frame.serialize(mask=False)
        self.direct = 0
        self.queued = 0

    async def send_all(self, socks: Iterable[AsyncSocket]) -> None:
        """Hand the frame to each socket in turn, in one coroutine for the whole broadcast,
        yielding to the loop every YIELD_EVERY sockets."""
        global _budget
        packet, message, wire = self.packet, self.message, self.wire
        limit, is_open = WRITE_BUFFER_LIMIT, ws_protocol.OPEN
        direct = queued = 0
        try:
            for sock in socks:
                # the checks of direct_protocol(), inlined: this runs once per delivery
                route = sock.__dict__.get("_cw_route")
                if (route is None or not sock._cw_idle or not sock.queue.empty()
                        or not sock.upgraded or sock.upgrading or sock.closing or sock.closed):
                    sock.queue.put_nowait(packet)
                    queued += 1
                else:
                    proto, transport = route.proto, route.transport
                    if (proto.disconnected or proto.close_sent or not route.writable.is_set()
                            or transport.is_closing()
                            or transport.get_write_buffer_size() > limit):
                        sock.queue.put_nowait(packet)
                        queued += 1
                    else:
                        conn = route.conn
                        if (route.shared and conn._state is is_open and not conn.writes
                                and not conn.expect_continuation_frame
                                and proto.handshake_complete and proto.initial_response is None):
                            try:
                                transport.write(wire)
                                direct += 1
                            except Exception:  # broken under us: the writer ends the socket
                                sock.queue.put_nowait(packet)
                                queued += 1
                        else:
                            try:
                                await proto.send(message)
                                direct += 1
                            except Exception:  # closed under us: the writer ends the socket
                                sock.queue.put_nowait(packet)
                                queued += 1
                _budget -= 1
                if not _budget:
                    _budget = YIELD_EVERY
                    await asyncio.sleep(0)  # a long broadcast must not starve the loop
        finally:
            self.direct += direct
            self.queued += queued


def install(sio: Any) -> bool:
    """Route `sio`'s websocket sockets through FastWebSocket; False (logged) if the installed
    libraries are not the ones verified."""
    found = fastsend_guard.problems(sio.eio)
    if found:
        log.warning("fan-out bypass disabled: %s", "; ".join(found))
        return False
    sio.eio._async = {**sio.eio._async, "websocket": FastWebSocket}
    return True


def installed(sio: Any) -> bool:
    return sio.eio._async.get("websocket") is FastWebSocket
