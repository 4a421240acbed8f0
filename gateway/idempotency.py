"""Idempotency-Key on writes: a repeat with the same key and body gets the first answer back;
the same key with another body, or while the first is still running, is a 409.

Keys are scoped per caller (the token's user, or the client address when anonymous) and kept
in Redis for `idempotency_ttl_seconds`. 5xx answers are not kept, so a retry runs again.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain import kv, settings
from domain.errors import Unauthenticated
from domain.identity.tokens import decode_access_token
from gateway.context import bearer_token
from gateway.problems import MEDIA_TYPE, problem_body

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 255


class Stored(msgspec.Struct):
    fingerprint: str
    status: int = 0
    headers: list[tuple[str, str]] = []
    body: bytes = b""


def _caller(scope: Scope, headers: dict[bytes, bytes]) -> str:
    token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
    if token:
        try:
            return f"user:{decode_access_token(token).user_id}"
        except Unauthenticated:
            pass
    client = scope.get("client")
    return f"anon:{client[0] if client else 'unknown'}"


async def _send_problem(send: Send, status: int, code: str, detail: str) -> None:
    body = problem_body(code, detail, status=status)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def idempotency_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_key = headers.get(b"idempotency-key")
        if raw_key is None:
            await app(scope, receive, send)
            return
        if not 1 <= len(raw_key) <= MAX_KEY_LENGTH:
            await _send_problem(send, 400, "invalid",
                                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
            return
        chunks: list[bytes] = []
        limit = settings.get().max_body_bytes
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_problem(send, 413, "invalid", "request body too large")
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        fingerprint = hashlib.sha256(
            b"\0".join([scope["method"].encode(), scope["path"].encode(),
                        scope.get("query_string", b""), body])
        ).hexdigest()
        redis = kv.client()
        key = kv.key("idem", _caller(scope, headers), hashlib.sha256(raw_key).hexdigest())
        ttl = settings.get().idempotency_ttl_seconds
        claimed = await redis.set(key, msgspec.msgpack.encode(Stored(fingerprint)), nx=True, ex=ttl)
        if not claimed:
            previous = await redis.get(key)
            stored = msgspec.msgpack.decode(previous, type=Stored) if previous else None
            if stored is None or stored.fingerprint != fingerprint:
                await _send_problem(send, 409, "conflict",
                                    "Idempotency-Key was already used with a different request")
            elif stored.status == 0:
                await _send_problem(send, 409, "conflict",
                                    "a request with this Idempotency-Key is still in progress")
            else:
                await send({"type": "http.response.start", "status": stored.status,
                            "headers": [(k.encode(), v.encode()) for k, v in stored.headers]
                            + [(b"idempotent-replayed", b"true")]})
                await send({"type": "http.response.body", "body": stored.body})
            return

        delivered = False

        async def replay_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        response: dict[str, Any] = {"status": 500, "headers": [], "body": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-request-id", b"set-cookie")
                ]
            elif message["type"] == "http.response.body":
                response["body"].append(message.get("body", b""))
            await send(message)

        try:
            await app(scope, replay_receive, capture)
        finally:
            if response["status"] >= 500:
                await redis.delete(key)
            else:
                stored = Stored(fingerprint, response["status"], response["headers"],
                                b"".join(response["body"]))
                await redis.set(key, msgspec.msgpack.encode(stored), ex=ttl)

    return middleware
