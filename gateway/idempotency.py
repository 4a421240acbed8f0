"""Idempotency-Key on writes: a repeat with the same key and body gets the first answer back;
the same key with another body, or while the first is still running, is a 409.

Keys are scoped per caller: the token's live session (checked against the database on every
keyed request, so after logout or with another person's token nothing is replayed: the request
goes to the app, which answers it), or the client address when anonymous. Completed answers
are kept in Redis for `idempotency_ttl_seconds`; 5xx answers are not kept, so a retry runs
again. A running request holds only a short marker (`idempotency_in_flight_seconds`) that its
process renews while it runs, so a key whose process died is free again within seconds.
Answers that carry credentials (login, refresh, board tokens) are never stored: Redis holds no
token, and a repeat runs again and gets fresh ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from redis.exceptions import RedisError

from domain import kv, settings
from domain.addresses import client_address
from domain.errors import Unauthenticated
from domain.identity.queries import principal_for_access_token
from domain.principal import RequestMeta
from gateway.context import bearer_token
from gateway.problems import MEDIA_TYPE, problem_body

log = logging.getLogger("carewire.idempotency")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 255
#: Routes whose answers are credentials: the key is ignored, nothing is stored or replayed.
NEVER_STORED = re.compile(r"^/api/v1/(auth/(login|refresh)|queues/[^/]+/board-token)/?$")

#: Acts on a key only while it still holds this request's in-flight marker (ARGV[1]), so a
#: request whose marker expired (and was claimed by a retry) cannot overwrite the retry's.
_IF_OURS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'renew' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if ARGV[2] == 'store' then return redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3]) end
return redis.call('DEL', KEYS[1])
"""


class Stored(msgspec.Struct):
    fingerprint: str
    status: int = 0
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    #: Which request holds an in-flight marker (status 0).
    owner: str = ""


async def _caller(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
    """The key's scope, or None when the request carries a credential that is not good (now):
    such a request is never answered from the store."""
    authorization = headers.get(b"authorization")
    if authorization is None:
        return f"anon:{client_address(scope) or 'unknown'}"
    token = bearer_token(authorization.decode("latin-1"))
    if token is None:
        return None
    try:
        principal = await principal_for_access_token(
            token, RequestMeta(request_id=scope.get("state", {}).get("request_id", ""),
                               ip=client_address(scope)))
    except Unauthenticated:
        return None
    return f"user:{principal.user_id}:{principal.session_id}"


async def _send_problem(send: Send, status: int, code: str, detail: str) -> None:
    body = problem_body(code, detail, status=status)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def idempotency_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] not in WRITE_METHODS:
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
            if message["type"] != "http.request":  # http.disconnect: the client went away
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

        delivered = False

        async def replay_receive() -> ReceiveMessage:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        caller = None if NEVER_STORED.match(scope["path"]) else await _caller(scope, headers)
        if caller is None:
            await app(scope, replay_receive, send)
            return
        fingerprint = hashlib.sha256(
            b"\0".join([scope["method"].encode(), scope["path"].encode(),
                        scope.get("query_string", b""), body])
        ).hexdigest()
        redis = kv.client()
        key = kv.key("idem", caller, hashlib.sha256(raw_key).hexdigest())
        cfg = settings.get()
        in_flight_ms = max(int(cfg.idempotency_in_flight_seconds * 1000), 100)
        marker = msgspec.msgpack.encode(Stored(fingerprint, owner=secrets.token_hex(8)))
        claimed = await redis.set(key, marker, nx=True, px=in_flight_ms)
        if not claimed:
            previous = await redis.get(key)
            stored = msgspec.msgpack.decode(previous, type=Stored) \
                if isinstance(previous, bytes) else None
            if stored is None:  # the holder finished with a 5xx or its marker just expired
                await _send_problem(send, 409, "conflict",
                                    "a request with this Idempotency-Key has just finished; retry")
            elif stored.fingerprint != fingerprint:
                await _send_problem(send, 409, "conflict",
                                    "Idempotency-Key was already used with a different request")
            elif stored.status == 0:
                await _send_problem(send, 409, "conflict",
                                    "a request with this Idempotency-Key is still in progress")
            else:
                await send({"type": "http.response.start", "status": stored.status,
                            "headers": [(k.encode(), v.encode()) for k, v in stored.headers]
                            + [(b"idempotent-replayed", b"true")]})
                await send({"type": "http.response.body", "body": stored.body, "more_body": False})
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(in_flight_ms / 3000)
                try:
                    await redis.eval(_IF_OURS, 1, key, marker, "renew", in_flight_ms)
                except RedisError:  # the request goes on; at worst its marker lapses early
                    log.warning("could not renew an idempotency marker", exc_info=True)

        response: dict[str, Any] = {"status": 500, "headers": [], "body": [], "kept": False}

        async def keep() -> None:
            """Store the answer (or free the key after a 5xx), once."""
            if response["kept"]:
                return
            response["kept"] = True
            if response["status"] >= 500:
                await redis.eval(_IF_OURS, 1, key, marker, "delete")
            else:
                stored = Stored(fingerprint, response["status"], response["headers"],
                                b"".join(response["body"]))
                await redis.eval(_IF_OURS, 1, key, marker, "store",
                                 cfg.idempotency_ttl_seconds * 1000,
                                 msgspec.msgpack.encode(stored))

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
                if not message.get("more_body", False):
                    # stored before the client can see the end of the answer: a repeat sent the
                    # moment it arrives is replayed, never refused as still running
                    await keep()
            await send(message)

        renewing = asyncio.create_task(renew())
        try:
            await app(scope, replay_receive, capture)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await keep()

    return middleware
