"""Whether the fan-out bypass (realtime/fastsend.py) may run with the installed libraries.

The bypass leans on internals of python-engineio, uvicorn's websockets-sansio protocol and
websockets' sans-I/O connection. `problems()` reads their source for each behaviour it relies
on; `fastsend.install` runs it at start-up and leaves the bypass off (logged) on any mismatch,
and tests/realtime/test_fastsend.py fails, so a version bump is re-verified before it ships. Kept apart
from the bypass itself: this is what to update when a dependency moves, and nothing else.
"""

from __future__ import annotations

import asyncio
import inspect
from importlib import metadata
from typing import Any

from engineio.async_drivers import asgi as eio_asgi
from engineio.async_socket import AsyncSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets import protocol as ws_protocol
from websockets import server as ws_server

#: The versions whose internals the bypass was written and tested against.
TESTED = {"python-engineio": "4.15.1", "uvicorn": "0.54.0", "websockets": "17.4"}


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
    # the shared frame: what uvicorn's send does for a websocket.send, and what websockets'
    # send_text / send_binary change in the connection (Frame.send_all writes the same bytes)
    for needle in ("self.conn.send_binary(bytes_data)", "self.conn.send_text(text_data.encode())",
                   "output = self.conn.data_to_send()", 'self.transport.write(b"".join(output))',
                   "self.disconnected", "self.close_sent", "self.handshake_complete",
                   "self.initial_response is None"):
        if needle not in send:
            found.append(f"uvicorn's sansio send no longer has {needle!r}")
    if "self.conn.accept(event)" not in _source(WebSocketsSansIOProtocol.handle_connect):
        found.append("uvicorn's sansio protocol no longer accepts (settles the extensions) in"
                     " handle_connect, before the ASGI app runs")
    accept = _source(ws_server.ServerProtocol.accept)
    if "self.process_request(" not in accept or "self.extensions = self.process_extensions(" not in (
            _source(getattr(ws_server.ServerProtocol, "process_request", None))):
        found.append("websockets' ServerProtocol.accept no longer settles self.extensions")
    for name, needles in (
            ("send_text", ("if self.expect_continuation_frame:", "if self._state is not OPEN:",
                           "self.expect_continuation_frame = not fin",
                           "self.send_frame(Frame(TEXT, data, fin))")),
            ("send_binary", ("if self.expect_continuation_frame:", "if self._state is not OPEN:",
                             "self.expect_continuation_frame = not fin",
                             "self.send_frame(Frame(BINARY, data, fin))")),
            ("send_frame", ("self.writes.append(", "mask=self.side is CLIENT",
                            "extensions=self.extensions")),
            ("data_to_send", ("writes, self.writes = self.writes, []",))):
        code = _source(getattr(ws_protocol.Protocol, name, None))
        for needle in needles:
            if needle not in code:
                found.append(f"websockets' Protocol.{name} no longer has {needle!r}")
    if "return self._state" not in _source(vars(ws_protocol.Protocol)["state"].fget):
        found.append("websockets' Protocol.state is no longer self._state")
    init = _source(WebSocketsSansIOProtocol.__init__)
    for needle in ("self.writable = asyncio.Event()", "self.disconnected = False",
                   "self.close_sent = False", "self.transport", "self.conn = ServerProtocol(",
                   "self.handshake_complete = False", "self.initial_response"):
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
