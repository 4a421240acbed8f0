"""Baseline for bench/fanout.py: stock python-socketio under uvicorn, nothing of carewire.

Same serving options as `carewire serve` (uvicorn factory-less, ws="websockets-sansio",
lifespan on, log_level info, default loop/http = uvloop/httptools). Every socket that connects
with a non-empty `auth.token` joins one room; `POST /emit` emits one `clinic.updated` event of
the same shape and size as carewire's envelope to that room and answers `{"seq": n}`.
`GET /health` answers 200. With `--redis-url` the server uses `AsyncRedisManager`, so several
processes share rooms (the trigger goes to one of them, like carewire's relay).

    .venv/bin/python bench/plain_server.py --port 8765 [--redis-url unix:///path/redis.socket]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import uuid
from typing import Any

import socketio
import uvicorn

ROOM = "clinic:bench:staff"


def build_app(redis_url: str | None) -> Any:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, logger=False,
                               engineio_logger=False)
    clinic_id = str(uuid.uuid4())
    state = {"seq": 0}

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        if not isinstance(auth, dict) or not auth.get("token"):
            raise socketio.exceptions.ConnectionRefusedError("unauthenticated")
        await sio.enter_room(sid, ROOM)

    async def respond(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:  # drain the request body
            event = await receive()
            more = event.get("more_body", False)
        if scope["path"] == "/health":
            await respond(send, 200, b'{"ok":true}')
        elif scope["path"] == "/emit" and scope["method"] == "POST":
            state["seq"] += 1
            seq = state["seq"]
            envelope = {
                "id": str(uuid.uuid4()), "seq": seq, "clinic_id": clinic_id,
                "type": "clinic.updated", "category": "CLINIC", "priority": "NORMAL",
                "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                "data": {"clinic_id": clinic_id, "fields": ["name"]},
            }
            await sio.emit("clinic.updated", envelope, room=ROOM)
            await respond(send, 200, json.dumps({"seq": seq}).encode())
        else:
            await respond(send, 404, b'{"error":"not found"}')

    return socketio.ASGIApp(sio, other_asgi_app=http_app, socketio_path="socket.io")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    uvicorn.run(build_app(args.redis_url), host=args.host, port=args.port,
                ws="websockets-sansio", log_level="info", lifespan="on")


if __name__ == "__main__":
    main()
