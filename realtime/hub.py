"""The Socket.IO hub: connect-time auth, server-named rooms, ordered and de-duplicated delivery
of committed events, resume from the durable log, and prompt session revocation.

Delivery: every gateway process subscribes to one Redis channel the relay publishes to, and
delivers to its own sockets. What each socket is handed, and when (cursors per clinic, live
events held during a replay, gaps filled from the log) is realtime/ordering.py's; the hub is
its Outlet: rooms, Socket.IO frames and the fan-out bypass.

Scope: a membership change in one clinic re-scopes the user's sockets in that clinic only
(rooms left and joined as the new role allows); logout, revocation, a disabled user and token
expiry close them. A user holds at most `sockets_per_user` sockets over all processes (a Redis
sorted set; the oldest is closed, through a control channel when another process holds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, NoReturn

import engineio
import msgspec
import socketio
from redis.exceptions import RedisError

from domain import kv, settings
from domain.access import rooms as room_names
from domain.access.rooms import may_join, rooms_for, visible_rooms
from domain.addresses import client_address
from domain.audit import refusals
from domain.audit.commands import Outcome, record
from domain.errors import NotFound, Unauthenticated
from domain.events import queries as event_log
from domain.events.envelope import Outgoing
from domain.identity.queries import principal_for_access_token, revoked_sessions
from domain.principal import Principal, RequestMeta
from domain.queueing.queries import board_claims, load_queue
from realtime import channels, codec, fastsend, metrics
from realtime.ordering import Ordering, Sequenced

log = logging.getLogger("carewire.hub")

#: A membership that begins (an accepted invitation), changes or ends re-scopes that user's
#: live sockets for that clinic only.
MEMBERSHIP_EVENTS = ("member.added", "member.removed", "member.updated")
#: Oldest first: a user's live sockets (all processes) in a sorted set scored by connect time.
#: Adds this one, prunes entries older than any token can live, and returns (and removes) the
#: oldest beyond the cap. TIME makes the script non-deterministic: Redis < 7 needs
#: replicate_commands first.
_CAP_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local victims = redis.call('ZRANGE', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
if #victims > 0 then redis.call('ZREM', KEYS[1], unpack(victims)) end
return victims
"""
#: Frames a socket may have waiting before it counts as too slow and is disconnected (a socket
#: whose transport is backed up gets its frames queued: see realtime/fastsend.py).
MAX_QUEUED_FRAMES = 1000


def ack_ok(data: Any = None) -> dict[str, Any]:
    return {"ok": True, "data": data}


def ack_error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class Bucket:
    """Token bucket against a client flooding the server with events."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.tokens, self.stamp = capacity, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Socket(Sequenced):
    """One connected socket: who it is, its rooms, and (Sequenced) its place in each clinic's
    sequence."""

    __slots__ = ("board", "bucket", "expiry", "principal", "rooms", "token")

    def __init__(self, principal: Principal, *, board: uuid.UUID | None = None,
                 token: str = "") -> None:
        super().__init__()
        self.principal = principal
        #: The access token it connected with: a membership change re-reads the principal.
        self.token = token
        #: The queue a waiting-room board watches; None for a user's socket.
        self.board = board
        self.rooms: set[str] = set()
        self.expiry: asyncio.TimerHandle | None = None
        self.bucket = Bucket(capacity=30, rate=10)


class Hub:
    def __init__(self) -> None:
        cfg = settings.get()
        self._origins = frozenset(cfg.allowed_origins)
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=self._origin_allowed,
            json=codec,
            max_http_buffer_size=cfg.socket_max_message_bytes,
            logger=False,
            engineio_logger=False,
        )
        self.sockets: dict[str, Socket] = {}
        self.by_session: dict[uuid.UUID, set[str]] = {}
        self.order = Ordering(self.sockets, event_log, self)
        self.listening = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[Any]] = set()
        self._stopping = asyncio.Event()
        self._cap_script: Any = None
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("subscribe", self._on_subscribe)
        self.sio.on("unsubscribe", self._on_unsubscribe)
        self.sio.on("resume", self._on_resume)
        self.fast = fastsend.install(self.sio)
        metrics.SOCKETS.set_function(lambda: len(self.sockets))
        metrics.ROOMS.set_function(lambda: len(self.sio.manager.rooms.get("/", {})))

    def _origin_allowed(self, origin: str | None, environ: dict[str, Any]) -> bool:
        """The configured browser origins, and the gateway's own (pages it serves itself, such as
        the waiting-room board, on whatever host and port it is reached at). Never `*`."""
        if origin is None:
            return True  # not a browser: nothing cross-site to guard against
        scheme = environ.get("wsgi.url_scheme", "http")
        return origin in self._origins or origin == f"{scheme}://{environ.get('HTTP_HOST', '')}"

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        self._tasks = [asyncio.create_task(self._listen(), name="hub-listen"),
                       asyncio.create_task(self._sweep_sessions(), name="hub-sweep")]

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # connect / disconnect --------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        meta = RequestMeta(request_id=f"socket:{sid}", ip=client_address(environ.get("asgi.scope", {})))
        if not isinstance(token, str) or not token:
            await self._refused(meta, "auth.token is required")
        board: uuid.UUID | None = None
        try:
            try:
                principal = await principal_for_access_token(token, meta)
            except Unauthenticated:
                board, principal = await self._board_principal(token, meta)
        except Unauthenticated as exc:
            await self._refused(meta, exc.message)
        resume = self._parse_resume(principal, auth.get("resume"))
        sock = Socket(principal, board=board, token=token)
        clinics = principal.clinic_ids()
        self.order.hold(sock, clinics)  # until its cursors are known
        self.sockets[sid] = sock
        if principal.session_id:
            self.by_session.setdefault(principal.session_id, set()).add(sid)
        joins = [room_names.queue(board)] if board else [
            *rooms_for(principal), room_names.session(principal.session_id or uuid.UUID(int=0))]
        for room in joins:
            await self.sio.enter_room(sid, room)
            sock.rooms.add(room)
        await self.order.start_at_heads(sock, clinics)
        loop = asyncio.get_running_loop()
        sock.expiry = loop.call_later(
            max(0.0, (principal.expires_at or 0) - time.time()),
            lambda: self._spawn(self.revoke(sid, "token_expired")),
        )
        for clinic_id, after in resume.items():
            self.order.hold(sock, (clinic_id,))
            self._spawn(self._replay(sid, clinic_id, after))
        live = [c for c in clinics if c not in resume]
        if live:
            self._spawn(self._release_after_connect(sid, live))
        if board is None:
            await self._enforce_cap(sid, principal.user_id)

    async def _refused(self, meta: RequestMeta, message: str) -> NoReturn:
        """Refuse a connect: counted in metrics, sampled into the audit log (a flood of bad
        tokens must not write a row each; see domain/audit/refusals.py)."""
        reason = refusals.reason_of(message)
        metrics.AUTH_REFUSALS.labels("socket", reason).inc()
        try:
            await refusals.record_refusal(transport="socket", reason=reason, message=message,
                                          meta=meta)
        except Exception:  # an audit outage must not take the hub down
            log.exception("could not audit a refused socket connect")
        raise socketio.exceptions.ConnectionRefusedError(
            "unauthenticated", {"code": "unauthenticated", "message": message})

    def _user_sockets_key(self, user_id: uuid.UUID) -> str:
        return kv.key("sio", "user-sockets", user_id)

    async def _enforce_cap(self, sid: str, user_id: uuid.UUID) -> None:
        """At most `sockets_per_user` live sockets per user, over every gateway process: this
        one joins the user's set and the oldest beyond the cap are closed with
        `session.revoked` {reason: too_many_sockets}, here or (through the control channel) on
        the process that holds them. Without Redis the cap is not enforced (logged)."""
        cfg = settings.get()
        try:
            if self._cap_script is None:
                self._cap_script = kv.client().register_script(_CAP_SCRIPT)
            victims = await self._cap_script(
                keys=[self._user_sockets_key(user_id)],
                args=[sid, cfg.sockets_per_user, cfg.access_token_ttl_seconds + 60])
            for victim in (v.decode() if isinstance(v, bytes) else str(v) for v in victims):
                if victim == sid:
                    continue
                if victim in self.sockets:
                    self._evict(victim)
                else:
                    await kv.client().publish(channels.control(), msgspec.json.encode(
                        {"evict": victim}))
        except RedisError:
            log.warning("socket cap not enforced: Redis unavailable")

    def _evict(self, sid: str) -> None:
        if sid in self.sockets:
            metrics.SOCKETS_EVICTED.inc()
            self._spawn(self.revoke(sid, "too_many_sockets"))

    async def _release_after_connect(self, sid: str, clinics: list[uuid.UUID]) -> None:
        await asyncio.sleep(0)  # let the CONNECT packet go first
        for clinic in clinics:
            await self.order.release(sid, clinic)

    async def _board_principal(self, token: str, meta: RequestMeta) -> tuple[uuid.UUID, Principal]:
        """A waiting-room screen: no user, no clinic membership, one queue's room and nothing
        else (it cannot subscribe, resume or read the log)."""
        try:
            queue_id, expires_at = board_claims(token)
        except Unauthenticated:
            raise Unauthenticated("invalid or expired access or board token") from None
        try:
            await load_queue(queue_id)
        except NotFound:
            raise Unauthenticated("the board's queue no longer exists") from None
        return queue_id, Principal(user_id=queue_id, session_id=None, is_super_admin=False,
                                   memberships=(), meta=meta, expires_at=expires_at)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _parse_resume(self, principal: Principal, raw: Any) -> dict[uuid.UUID, int]:
        if raw is None:
            return {}
        try:
            parsed = msgspec.convert(raw, dict[uuid.UUID, int], strict=False)
        except msgspec.ValidationError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                "invalid", {"code": "invalid", "message": f"auth.resume: {exc}"}) from exc
        return {c: max(0, s) for c, s in parsed.items()
                if principal.is_super_admin or principal.membership(c)}

    async def _on_disconnect(self, sid: str, *_: Any) -> None:
        sock = self.sockets.pop(sid, None)
        if sock and sock.expiry:
            sock.expiry.cancel()
        if sock and sock.principal.session_id in self.by_session:
            sids = self.by_session[sock.principal.session_id]
            sids.discard(sid)
            if not sids:
                del self.by_session[sock.principal.session_id]
        if sock and sock.board is None:  # its place under the per-user cap is free again
            try:
                await kv.client().zrem(self._user_sockets_key(sock.principal.user_id), sid)
            except RedisError:
                log.warning("could not drop a closed socket from its user's set")

    async def _audit_denied(self, principal: Principal | None, meta: RequestMeta, action: str,
                            resource_type: str, resource_id: str | None, reason: str) -> None:
        try:
            await record(principal, action=action, resource_type=resource_type,
                         resource_id=resource_id, outcome=Outcome.DENIED,
                         detail={"reason": reason[:200]}, meta=meta)
        except Exception:  # an audit outage must not take the hub down
            log.exception("could not audit a refused socket request")

    async def revoke(self, sid: str, reason: str, **extra: Any) -> None:
        """`session.revoked` first, then close."""
        if sid not in self.sockets:
            return
        with contextlib.suppress(Exception):
            await self.sio.emit("session.revoked", {"reason": reason, **extra}, to=sid)
        await self.sio.disconnect(sid)

    # client requests --------------------------------------------------------------------------

    def _guard(self, sid: str, data: Any) -> tuple[Socket | None, dict[str, Any] | None]:
        sock = self.sockets.get(sid)
        if sock is None:
            return None, ack_error("unauthenticated", "not connected")
        if not sock.bucket.take():
            return None, ack_error("rate_limited", "too many requests; slow down")
        if not isinstance(data, dict):
            return None, ack_error("invalid", "expected an object")
        return sock, None

    async def _on_subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        sock, error = self._guard(sid, data)
        if sock is None:
            return error or {}
        room = data.get("room")
        if not isinstance(room, str) or len(room) > 200:
            return ack_error("invalid", "room: expected a room name")
        if room.startswith("session:") or sock.board or not may_join(sock.principal, room):
            await self._audit_denied(sock.principal, sock.principal.meta, "socket:subscribe",
                                     "room", room, "room not visible to the caller")
            return ack_error("not_found", f"no room {room} for you")
        clinic = _clinic_of(room)
        new = clinic if self.order.is_new(sock, clinic) else None
        if new is not None:
            self.order.hold(sock, (new,))  # until the cursor is known
        try:
            await self.sio.enter_room(sid, room)
            sock.rooms.add(room)
            if new is not None:
                await self.order.start_at_heads(sock, [new])
        finally:
            if new is not None:
                await self.order.release(sid, new)
        return ack_ok({"room": room})

    async def _on_unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        sock, error = self._guard(sid, data)
        if sock is None:
            return error or {}
        room = data.get("room")
        if not isinstance(room, str) or room not in sock.rooms or room.startswith("session:"):
            return ack_error("not_found", "not subscribed to that room")
        await self.sio.leave_room(sid, room)
        sock.rooms.discard(room)
        return ack_ok({"room": room})

    async def _on_resume(self, sid: str, data: Any = None) -> dict[str, Any]:
        sock, error = self._guard(sid, data)
        if sock is None:
            return error or {}
        try:
            clinic = uuid.UUID(str(data.get("clinic_id")))
            after = int(data.get("after_seq"))
        except (TypeError, ValueError):
            return ack_error("invalid", "expected {clinic_id: uuid, after_seq: integer}")
        if not (sock.principal.is_super_admin or sock.principal.membership(clinic)):
            return ack_error("not_found", "clinic not found")
        if clinic in sock.replaying:
            return ack_error("conflict", "a resume of this clinic is already running")
        self.order.hold(sock, (clinic,))
        result = await self._replay(sid, clinic, max(0, after))
        return ack_ok(result)

    # delivery (the Outlet of realtime/ordering.py) -------------------------------------------

    async def _replay(self, sid: str, clinic: uuid.UUID, after: int) -> dict[str, Any]:
        """Send what the socket missed, in order (its clinic is held meanwhile)."""
        await asyncio.sleep(0)  # let the CONNECT packet go first when called from connect
        sock = self.sockets.get(sid)
        if sock is None:
            return {}
        rooms = sorted(sock.rooms | set(visible_rooms(sock.principal, clinic)))
        return await self.order.replay(sid, clinic, after, rooms)

    def participants(self, audience: list[str]) -> Any:
        return self.sio.manager.get_participants("/", audience)

    async def emit(self, sid: str, event: str, data: Any) -> None:
        await self.sio.emit(event, data, to=sid)

    async def broadcast(self, out: Outgoing, admitted: list[tuple[str, Any]]) -> None:
        """Hand a live event to the sockets ordering admitted, dropping one too slow to keep
        up; then re-scope on a membership change, before the clinic's next event."""
        env = out.envelope
        recipients: list[Any] = []  # Engine.IO sockets
        eio_sockets = self.sio.eio.sockets
        # once per recipient: no await in this loop, locals only
        for sid, eio_sid in admitted:
            eio_socket = eio_sockets.get(eio_sid)
            if eio_socket is None or eio_socket.closed:
                continue
            if eio_socket.queue.qsize() >= MAX_QUEUED_FRAMES:
                self._spawn(self.revoke(sid, "too_slow"))  # it resumes on reconnect
                continue
            recipients.append(eio_socket)
        if recipients:
            metrics.DELIVERIES.inc(await self._fanout(env.type, env, recipients))
            metrics.DELIVERY_LATENCY.observe(max(0.0, time.time() - env.occurred_at.timestamp()))
        if env.type in MEMBERSHIP_EVENTS:
            await self._rescope_user(uuid.UUID(str(env.data["user_id"])), env.clinic_id)

    async def _fanout(self, event: str, data: Any, recipients: list[Any]) -> int:
        """Encode the event once and hand the same frame to every recipient's Engine.IO socket,
        as `AsyncServer.emit` would, minus its one asyncio task per recipient (the main cost of
        a broadcast): written straight to the websocket where that keeps the socket's order
        (see realtime/fastsend.py), queued otherwise."""
        frame = fastsend.Frame(engineio.packet.Packet(engineio.packet.MESSAGE, self.sio.packet_class(
            socketio.packet.EVENT, namespace="/", data=[event, data]).encode()))
        await frame.send_all(recipients)
        if frame.direct:
            metrics.DIRECT_SENDS.inc(frame.direct)
        return frame.direct + frame.queued

    async def _rescope_user(self, user_id: uuid.UUID, clinic: uuid.UUID) -> None:
        """The user's membership of `clinic` changed or ended: re-read his principal and move
        each of his sockets out of the rooms it may no longer see, and into that clinic's rooms
        the new role allows. His other clinics' rooms are untouched; a session that no longer
        checks out is closed. Awaited in delivery order, so no later event of the clinic
        reaches a room he has just lost."""
        fresh: dict[str, Principal | None] = {}
        for sid, sock in list(self.sockets.items()):
            if sock.board is not None or sock.principal.user_id != user_id:
                continue
            if sock.token not in fresh:
                try:
                    fresh[sock.token] = await principal_for_access_token(sock.token,
                                                                         sock.principal.meta)
                except Unauthenticated:
                    fresh[sock.token] = None
            principal = fresh[sock.token]
            if principal is None:
                await self.revoke(sid, "membership_changed", clinic_id=str(clinic))
                continue
            if self.sockets.get(sid) is not sock:
                continue  # gone while the principal was read
            sock.principal = principal
            for room in sorted(sock.rooms):
                if not room.startswith("session:") and not may_join(principal, room):
                    await self.sio.leave_room(sid, room)
                    sock.rooms.discard(room)
            for room in rooms_for(principal):
                if room not in sock.rooms and (_clinic_of(room) == clinic
                                               or room.startswith("doctor:")):
                    await self.sio.enter_room(sid, room)
                    sock.rooms.add(room)

    # background loops -------------------------------------------------------------------------

    async def _listen(self) -> None:
        decoder = msgspec.msgpack.Decoder(list[Outgoing])
        control = channels.control().encode()
        delay = 0.1
        while not self._stopping.is_set():
            pubsub = kv.client().pubsub()
            try:
                await pubsub.subscribe(channels.events(), channels.control())
                self.listening = True
                delay = 0.1
                for clinic, seen in list(self.order.clinic_cursors.items()):
                    await self.order.catch_up(clinic, seen)
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    if message["channel"] == control:
                        self._on_control(message["data"])
                        continue
                    for out in decoder.decode(message["data"]):
                        try:
                            await self.order.deliver(out)
                        except Exception:
                            log.exception("delivery failed for event %s", out.envelope.id)
            except (RedisError, OSError) as exc:
                self.listening = False
                log.warning("event channel lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(delay)  # back off between reconnect attempts
                delay = min(delay * 2, 2.0)
            finally:
                self.listening = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    def _on_control(self, data: bytes) -> None:
        """Another process asks for one of our sockets to be closed (the per-user cap)."""
        try:
            command = msgspec.json.decode(data, type=dict[str, str])
        except msgspec.DecodeError:
            log.warning("ignored a malformed control message")
            return
        if "evict" in command:
            self._evict(command["evict"])

    async def _sweep_sessions(self) -> None:
        """Revoked sessions and disabled users lose their sockets within one interval."""
        interval = settings.get().session_check_seconds
        while not self._stopping.is_set():
            await asyncio.sleep(interval)  # the sweep's period, not a synchronisation
            if not self.by_session:
                continue
            try:
                dead = await revoked_sessions(list(self.by_session))
            except Exception:
                log.exception("session sweep failed")
                continue
            for session_id, reason in dead.items():
                for sid in list(self.by_session.get(session_id, ())):
                    await self.revoke(sid, reason)


def _clinic_of(room: str) -> uuid.UUID | None:
    parts = room.split(":")
    if parts[0] == "clinic" and len(parts) > 1:
        with contextlib.suppress(ValueError):
            return uuid.UUID(parts[1])
    return None

