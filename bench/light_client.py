"""A deliberately thin Socket.IO-over-websocket client for load generation.

One `asyncio.Protocol` per connection, no websocket library: the HTTP upgrade, the framing,
the Engine.IO open/ping/pong and the Socket.IO namespace connect (with `auth`) are done by
hand, so thousands of sockets cost a client process little more than the kernel's work.

What it understands (and all a benchmark needs):
- server -> client frames are unmasked text frames (opcode 1), maybe several per read, maybe
  split across reads; ping (9) is answered with pong (10); close (8) ends the connection;
- Engine.IO `0{...}` (open) -> we send `40{"token": ...}`; `2` (ping) -> we send `3`;
  `40{...}` = namespace connected; `44{...}` = connect refused;
- Socket.IO events `42["<name>",{..."seq":N,...}]` for the watched event name: the receipt
  time (time.time(), taken once per read) is recorded against the event's `seq`, which is
  found by a byte search, not by parsing the JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

OPEN, HANDSHAKE, ENGINE_OPEN, CONNECTED, CLOSED = range(5)


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked, final client frame (RFC 6455 requires clients to mask)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + _mask(payload, key)


PONG_FRAME_PAYLOAD = b"3"


class Sink:
    """What every connection of one worker reports into (shared, single-threaded)."""

    __slots__ = ("closed", "connected", "event", "keep_times", "per_seq", "refused", "total",
                 "unexpected")

    def __init__(self, event: str) -> None:
        self.event = b'42["' + event.encode() + b'"'
        self.keep_times = False
        self.per_seq: dict[int, list[Any]] = {}  # seq -> [count, first, last, times|None]
        self.total = 0
        self.connected = 0
        self.closed = 0
        self.refused = 0
        self.unexpected = 0

    def reset(self, keep_times: bool) -> None:
        self.keep_times = keep_times
        self.per_seq = {}
        self.total = 0

    def record(self, payload: bytes, now: float) -> None:
        i = payload.find(b'"seq":')
        if i < 0:
            self.unexpected += 1
            return
        i += 6
        j = i
        while 48 <= payload[j] <= 57:
            j += 1
        seq = int(payload[i:j])
        entry = self.per_seq.get(seq)
        if entry is None:
            entry = self.per_seq[seq] = [0, now, now, [] if self.keep_times else None]
        entry[0] += 1
        entry[2] = now
        if entry[3] is not None:
            entry[3].append(now)
        self.total += 1


class SioClient(asyncio.Protocol):
    __slots__ = ("auth", "buf", "connected", "host", "path", "sink", "state", "transport")

    def __init__(self, sink: Sink, host: str, port: int, auth: dict[str, Any],
                 path: str = "/socket.io/") -> None:
        self.sink = sink
        self.host = f"{host}:{port}"
        self.path = path
        self.auth = json.dumps(auth, separators=(",", ":")).encode()
        self.buf = b""
        self.state = OPEN
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path}?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {self.host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode())  # type: ignore[attr-defined]
        self.state = HANDSHAKE

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == CONNECTED:
            self.sink.connected -= 1
        self.state = CLOSED
        self.sink.closed += 1
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if self.state == HANDSHAKE:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            status = data[:data.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail(f"upgrade refused: {data[:end].decode(errors='replace')[:300]}")
                return
            self.state = ENGINE_OPEN
            data = data[end + 4:]
        n = len(data)
        i = 0
        while n - i >= 2:
            b0 = data[i]
            ln = data[i + 1] & 0x7F
            off = i + 2
            if ln == 126:
                if n - i < 4:
                    break
                ln = int.from_bytes(data[off:off + 2], "big")
                off += 2
            elif ln == 127:
                if n - i < 10:
                    break
                ln = int.from_bytes(data[off:off + 8], "big")
                off += 8
            if n - off < ln:
                break
            payload = data[off:off + ln]
            i = off + ln
            op = b0 & 0x0F
            if op == 1 or op == 2 or op == 0:
                self._message(payload, now)
            elif op == 9:
                self.transport.write(frame(payload, 10))  # type: ignore[union-attr]
            elif op == 8:
                self.transport.close()  # type: ignore[union-attr]
                return
        if i < n:
            self.buf = data[i:]

    # Engine.IO / Socket.IO ----------------------------------------------------------------------

    def _message(self, p: bytes, now: float) -> None:
        sink = self.sink
        if p.startswith(sink.event):
            sink.record(p, now)
            return
        c = p[:1]
        if c == b"2":  # Engine.IO ping
            self.transport.write(frame(PONG_FRAME_PAYLOAD))  # type: ignore[union-attr]
        elif c == b"0":  # Engine.IO open
            self.transport.write(frame(b"40" + self.auth))  # type: ignore[union-attr]
        elif p.startswith(b"40"):
            if self.state != CONNECTED:
                self.state = CONNECTED
                sink.connected += 1
                if not self.connected.done():
                    self.connected.set_result(None)
        elif p.startswith(b"44"):
            sink.refused += 1
            self._fail(f"connect refused: {p[2:300].decode(errors='replace')}")
        elif p.startswith(b"41") or c == b"1":
            self.transport.close()  # type: ignore[union-attr]
        else:
            sink.unexpected += 1

    def _fail(self, why: str) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with_close = frame(b"", 8)
            try:
                self.transport.write(with_close)
            finally:
                self.transport.close()


async def open_client(sink: Sink, host: str, port: int, auth: dict[str, Any],
                      limit: float) -> SioClient:
    """Connect and finish the Socket.IO handshake within `limit` seconds (each step)."""
    loop = asyncio.get_running_loop()
    proto = SioClient(sink, host, port, auth)
    factory: Callable[[], SioClient] = lambda: proto  # noqa: E731
    await asyncio.wait_for(loop.create_connection(factory, host, port), limit)
    try:
        await asyncio.wait_for(asyncio.shield(proto.connected), limit)
    except BaseException:
        proto.close()
        raise
    return proto
