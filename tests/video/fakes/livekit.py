"""A local OpenVidu 3: the LiveKit server API as the real server answers it, so the official
`livekit-api` SDK runs end to end against it (PROVIDERS.md, Video).

Twirp: `POST /twirp/livekit.RoomService/{CreateRoom,ListRooms,DeleteRoom,ListParticipants,
RemoveParticipant,UpdateParticipant}` and `/twirp/livekit.Egress/{StartRoomCompositeEgress,
StopEgress,ListEgress}`, bodies in JSON (snake_case field names) or protobuf, answered in the
request's content type; errors as Twirp JSON `{code, msg}` (not_found 404, invalid_argument/malformed 400,
unauthenticated 401, permission_denied 403, already_exists 409). Every call's
`Authorization: Bearer <JWT>` is checked as the server checks it: HS256 with the API secret,
`iss` = API key, `nbf`/`exp` (a minute's leeway), and the grant the call needs. CreateRoom of an
existing name answers the existing room (LiveKit does); `rooms_created` counts real creations.

Participants: `join(token)` is what the server does when a client connects with a token (verify,
auto-create the room as LiveKit's default `room.auto_create` does, record the grants); `leave`.
UpdateParticipant with a `permission` replaces the participant's publish/subscribe/data rights
(the recorded `grants`' canPublish, canSubscribe, canPublishData), as the server does.

Egress: StartRoomCompositeEgress answers EGRESS_STARTING (`activate` moves one to ACTIVE);
StopEgress answers EGRESS_ENDING and then, in the background, uploads a small mp4 to the S3
destination the request named (moto in tests) and moves it to COMPLETE (FAILED when the upload
fails).

Webhooks: `webhook(event, ...)` builds a delivery as LiveKit posts it; with `webhook_url` set,
join/leave/DeleteRoom/egress changes post theirs there, in order, from one background thread
(`deliveries` records each answer's status).

Faults: `fail_next(n, status)`, `hang_next(n)`, `garble_next(n)` (a 200 HTML page) for the next
n requests, the health check included (n=0 clears); `refuse(True)` (stop listening, and reset
connections kept alive); `hits` counts every request that arrived."""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import secrets
import threading
import time
from datetime import timedelta
from typing import Any

import boto3
import httpx
import jwt
from botocore.config import Config
from google.protobuf import json_format
from google.protobuf.message import Message
from livekit import api
from livekit.protocol import egress as proto_egress
from livekit.protocol import models as proto_models
from livekit.protocol import room as proto_room
from livekit.protocol import webhook as proto_webhook

from tests.communication.fakes.base_http import HANG, RESET, FakeServer, Reply

#: Twirp error code -> HTTP status (twirp's spec).
STATUS = {"not_found": 404, "invalid_argument": 400, "malformed": 400, "unauthenticated": 401,
          "permission_denied": 403, "already_exists": 409, "bad_route": 404,
          "failed_precondition": 412, "resource_exhausted": 429, "internal": 500, "unavailable": 503}

#: (service, method) -> (request message, the grant it needs)
ROUTES: dict[tuple[str, str], tuple[type[Message], str]] = {
    ("RoomService", "CreateRoom"): (proto_room.CreateRoomRequest, "roomCreate"),
    ("RoomService", "ListRooms"): (proto_room.ListRoomsRequest, "roomList"),
    ("RoomService", "DeleteRoom"): (proto_room.DeleteRoomRequest, "roomCreate"),
    ("RoomService", "ListParticipants"): (proto_room.ListParticipantsRequest, "roomAdmin"),
    ("RoomService", "RemoveParticipant"): (proto_room.RoomParticipantIdentity, "roomAdmin"),
    ("RoomService", "UpdateParticipant"): (proto_room.UpdateParticipantRequest, "roomAdmin"),
    ("Egress", "StartRoomCompositeEgress"): (proto_egress.RoomCompositeEgressRequest, "roomRecord"),
    ("Egress", "StopEgress"): (proto_egress.StopEgressRequest, "roomRecord"),
    ("Egress", "ListEgress"): (proto_egress.ListEgressRequest, "roomRecord"),
}

#: What StopEgress uploads as "the recording".
RECORDING = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


class FakeRefused(Exception):
    """The fake server refused a participant's connection (`status`, Twirp-like `code`)."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(f"{status} {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg


class _Twirp(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _sid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(9).replace('-', 'a').replace('_', 'b')}"


def _json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


class LiveKitFake(FakeServer):
    def __init__(self, *, webhook_url: str | None = None) -> None:
        super().__init__()
        #: webhook() and _notify() nest under it
        self.lock = threading.RLock()  # type: ignore[assignment]
        self.api_key = f"key{secrets.token_hex(6)}"
        self.api_secret = secrets.token_urlsafe(32)
        self.webhook_url = webhook_url
        #: room name -> {name, sid, empty_timeout, max_participants, creation_time}
        self.rooms: dict[str, dict[str, Any]] = {}
        #: room name -> how many times it was really created (CreateRoom of an existing name or
        #: a join into an existing room does not count)
        self.rooms_created: dict[str, int] = {}
        #: room name -> identity -> {identity, sid, name, metadata, grants (the token's `video`
        #: claim as sent), joined_at}
        self.participants: dict[str, dict[str, dict[str, Any]]] = {}
        #: egress id -> {egress_id, room_name, status ("EGRESS_..."), file_key, s3 (the
        #: request's S3Upload as a dict, or None), request, started_at, ended_at, error}
        self.egress: dict[str, dict[str, Any]] = {}
        #: Every Twirp call that passed authentication: {service, method, claims, request}.
        self.calls: list[dict[str, Any]] = []
        #: How many HTTP requests reached the fake (any path, answered or not).
        self.hits = 0
        #: Every webhook posted to `webhook_url`: (event, HTTP status or the error's name).
        self.deliveries: list[tuple[str, int | str]] = []
        #: LiveKit's `room.auto_create` (a join into an unknown room creates it).
        self.auto_create = True
        self._fail: list[int] = []
        self._hang = 0
        self._garble = 0
        self._refusing = False
        self._outbox: queue.Queue[tuple[str, bytes, dict[str, str]] | None] = queue.Queue()
        self._poster = threading.Thread(target=self._post_loop, daemon=True)

    # --- configuration ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"CAREWIRE_OPENVIDU_URL": self.url, "CAREWIRE_OPENVIDU_API_KEY": self.api_key,
                "CAREWIRE_OPENVIDU_API_SECRET": self.api_secret}

    def credentials(self) -> dict[str, str]:
        """What a clinic stores for its own OpenVidu (PUT .../video/credentials/openvidu)."""
        return {"url": self.url, "api_key": self.api_key, "api_secret": self.api_secret}

    def start(self) -> LiveKitFake:
        super().start()
        self._poster.start()
        return self

    def stop(self) -> None:
        self._outbox.put(None)
        super().stop()

    # --- faults ----------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        with self.lock:
            self._fail = [status] * n

    def hang_next(self, n: int) -> None:
        with self.lock:
            self._hang = n

    def garble_next(self, n: int) -> None:
        """The next `n` requests answer 200 with an HTML page (a proxy in the way)."""
        with self.lock:
            self._garble = n

    def refuse(self, on: bool) -> None:
        """Connections refused (the port closed; a kept-alive connection is reset) until
        `refuse(False)` listens again on the same port."""
        with self.lock:
            if on == self._refusing:
                return
            self._refusing = on
        if on:
            self._server.shutdown()
            self._server.server_close()
        else:
            self._server = type(self._server)(("127.0.0.1", self.port), self._server.RequestHandlerClass)
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.02}, daemon=True)
            self._thread.start()

    # --- HTTP ------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> Reply | type[HANG] | type[RESET]:
        with self.lock:
            self.hits += 1
            if self._refusing:
                return RESET
            if self._hang > 0:
                self._hang -= 1
                return HANG
            if self._garble > 0:
                self._garble -= 1
                return Reply(200, b"<html><body>502 Bad Gateway</body></html>",
                             {"Content-Type": "text/html"})
            if self._fail:
                status = self._fail.pop(0)
                return Reply(status, {"code": "internal" if status < 503 else "unavailable",
                                      "msg": "injected failure"})
        if method == "GET" and path.split("?")[0] == "/":
            return Reply(200, b"OK", {"Content-Type": "text/plain"})
        parts = path.split("?")[0].strip("/").split("/")
        if method != "POST" or len(parts) != 3 or parts[0] != "twirp" or not parts[1].startswith("livekit."):
            return self._error("bad_route", f"no handler for {method} {path}")
        service, name = parts[1].removeprefix("livekit."), parts[2]
        route = ROUTES.get((service, name))
        if route is None:
            return self._error("bad_route", f"no handler for {path}")
        request_class, grant = route
        as_json = headers.get("content-type", "").split(";")[0].strip() == "application/json"
        try:
            claims = self._authenticate(headers.get("authorization", ""))
            request = request_class()
            try:
                if as_json:
                    json_format.Parse(body.decode() or "{}", request)
                else:
                    request.ParseFromString(body)
            except Exception as exc:
                raise _Twirp("malformed", f"the request body could not be decoded: {exc}") from exc
            self._authorize(claims, grant, request)
            with self.lock:
                self.calls.append({"service": service, "method": name, "claims": claims,
                                   "request": _json(request)})
                answer = getattr(self, f"_{name}")(request)
        except _Twirp as err:
            return self._error(err.code, err.msg)
        if as_json:
            return Reply(200, _json(answer), {"Content-Type": "application/json"})
        return Reply(200, answer.SerializeToString(), {"Content-Type": "application/protobuf"})

    @staticmethod
    def _error(code: str, msg: str) -> Reply:
        return Reply(STATUS.get(code, 500), {"code": code, "msg": msg})

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.api_secret, algorithms=["HS256"], issuer=self.api_key, leeway=60,
                options={"require": ["exp", "iss"]})
        except jwt.PyJWTError as exc:
            raise _Twirp("unauthenticated", f"invalid token: {exc}") from exc
        return claims

    def _authenticate(self, authorization: str) -> dict[str, Any]:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Twirp("unauthenticated", "no permissions to access the room")
        return self._decode(token)

    @staticmethod
    def _authorize(claims: dict[str, Any], grant: str, request: Message) -> None:
        video = claims.get("video") or {}
        if not video.get(grant):
            raise _Twirp("permission_denied", f"the token lacks the {grant} grant")
        if grant == "roomAdmin" and video.get("room") != getattr(request, "room", None):
            raise _Twirp("permission_denied", "the token's room is not the request's")

    # --- RoomService -----------------------------------------------------------------------------

    def _room(self, name: str, *, empty_timeout: int = 300, max_participants: int = 0) -> dict[str, Any]:
        """The room of that name, created when new (call with the lock held)."""
        room = self.rooms.get(name)
        if room is None:
            room = {"name": name, "sid": _sid("RM"), "empty_timeout": empty_timeout,
                    "max_participants": max_participants, "creation_time": int(time.time())}
            self.rooms[name] = room
            self.participants[name] = {}
            self.rooms_created[name] = self.rooms_created.get(name, 0) + 1
            self._notify("room_started", room=name)
        return room

    def _room_message(self, room: dict[str, Any]) -> proto_models.Room:
        return proto_models.Room(sid=room["sid"], name=room["name"], empty_timeout=room["empty_timeout"],
                                 max_participants=room["max_participants"],
                                 creation_time=room["creation_time"],
                                 num_participants=len(self.participants.get(room["name"], {})))

    def _CreateRoom(self, req: proto_room.CreateRoomRequest) -> Message:
        if not req.name:
            raise _Twirp("invalid_argument", "room name is required")
        return self._room_message(self._room(req.name, empty_timeout=req.empty_timeout or 300,
                                             max_participants=req.max_participants))

    def _ListRooms(self, req: proto_room.ListRoomsRequest) -> Message:
        names = set(req.names)
        return proto_room.ListRoomsResponse(rooms=[
            self._room_message(r) for n, r in self.rooms.items() if not names or n in names])

    def _DeleteRoom(self, req: proto_room.DeleteRoomRequest) -> Message:
        if req.room not in self.rooms:
            raise _Twirp("not_found", "requested room does not exist")
        for identity in list(self.participants.get(req.room, {})):
            self._notify("participant_left", room=req.room, identity=identity)
        self._notify("room_finished", room=req.room)
        del self.rooms[req.room]
        self.participants.pop(req.room, None)
        return proto_room.DeleteRoomResponse()

    def _participant_message(self, p: dict[str, Any]) -> proto_models.ParticipantInfo:
        grants = p["grants"]
        return proto_models.ParticipantInfo(
            sid=p["sid"], identity=p["identity"], name=p["name"], metadata=p["metadata"],
            state=proto_models.ParticipantInfo.ACTIVE, joined_at=p["joined_at"],
            permission=proto_models.ParticipantPermission(
                can_publish=grants.get("canPublish", True), can_subscribe=grants.get("canSubscribe", True),
                can_publish_data=grants.get("canPublishData", True)))

    def _ListParticipants(self, req: proto_room.ListParticipantsRequest) -> Message:
        if req.room not in self.rooms:
            raise _Twirp("not_found", "requested room does not exist")
        return proto_room.ListParticipantsResponse(participants=[
            self._participant_message(p) for p in self.participants[req.room].values()])

    def _RemoveParticipant(self, req: proto_room.RoomParticipantIdentity) -> Message:
        if req.identity not in self.participants.get(req.room, {}):
            raise _Twirp("not_found", "participant not found")
        self._notify("participant_left", room=req.room, identity=req.identity)
        del self.participants[req.room][req.identity]
        return proto_room.RemoveParticipantResponse()

    def _UpdateParticipant(self, req: proto_room.UpdateParticipantRequest) -> Message:
        p = self.participants.get(req.room, {}).get(req.identity)
        if p is None:
            raise _Twirp("not_found", "participant not found")
        if req.name:
            p["name"] = req.name
        if req.metadata:
            p["metadata"] = req.metadata
        if req.HasField("permission"):
            p["grants"] = {**p["grants"], "canPublish": req.permission.can_publish,
                           "canSubscribe": req.permission.can_subscribe,
                           "canPublishData": req.permission.can_publish_data}
        return self._participant_message(p)

    # --- Egress ----------------------------------------------------------------------------------

    def _egress_message(self, e: dict[str, Any]) -> proto_egress.EgressInfo:
        info = proto_egress.EgressInfo(
            egress_id=e["egress_id"], room_id=e["room_id"], room_name=e["room_name"],
            status=e["status"], started_at=e["started_at"],
            ended_at=e["ended_at"], updated_at=time.time_ns(), error=e["error"])
        if e["file_key"]:
            info.file_results.add(filename=e["file_key"], location=e["location"],
                                  size=len(RECORDING) if e["status"] == "EGRESS_COMPLETE" else 0)
        return info

    def _StartRoomCompositeEgress(self, req: proto_egress.RoomCompositeEgressRequest) -> Message:
        room = self.rooms.get(req.room_name)
        if room is None:
            raise _Twirp("not_found", "requested room does not exist")
        outputs = list(req.file_outputs) or ([req.file] if req.HasField("file") else [])
        if not outputs:
            raise _Twirp("invalid_argument", "no outputs given")
        out = outputs[0]
        s3 = _json(out.s3) if out.HasField("s3") else None
        egress_id = _sid("EG")
        location = (f"{s3.get('endpoint', 's3')}/{s3.get('bucket')}/{out.filepath}" if s3 else out.filepath)
        self.egress[egress_id] = {
            "egress_id": egress_id, "room_id": room["sid"], "room_name": req.room_name,
            "status": "EGRESS_STARTING", "file_key": out.filepath, "location": location, "s3": s3,
            "request": _json(req), "started_at": time.time_ns(), "ended_at": 0, "error": ""}
        self._notify("egress_started", egress_id=egress_id)
        return self._egress_message(self.egress[egress_id])

    def _StopEgress(self, req: proto_egress.StopEgressRequest) -> Message:
        e = self.egress.get(req.egress_id)
        if e is None:
            raise _Twirp("not_found", "egress does not exist")
        if e["status"] not in ("EGRESS_STARTING", "EGRESS_ACTIVE"):
            raise _Twirp("failed_precondition", f"egress is {e['status']}")
        e["status"] = "EGRESS_ENDING"
        self._notify("egress_updated", egress_id=e["egress_id"])
        threading.Thread(target=self._finish, args=(e["egress_id"],), daemon=True).start()
        return self._egress_message(e)

    def _ListEgress(self, req: proto_egress.ListEgressRequest) -> Message:
        running = ("EGRESS_STARTING", "EGRESS_ACTIVE", "EGRESS_ENDING")
        return proto_egress.ListEgressResponse(items=[
            self._egress_message(e) for e in self.egress.values()
            if (not req.room_name or e["room_name"] == req.room_name)
            and (not req.egress_id or e["egress_id"] == req.egress_id)
            and (not req.active or e["status"] in running)])

    def activate(self, egress_id: str) -> None:
        """The egress is recording now (EGRESS_ACTIVE; webhook egress_updated)."""
        with self.lock:
            self.egress[egress_id]["status"] = "EGRESS_ACTIVE"
            self._notify("egress_updated", egress_id=egress_id)

    def _finish(self, egress_id: str) -> None:
        """Upload the file where the request said, then COMPLETE (FAILED if that fails)."""
        e = self.egress[egress_id]
        error = ""
        if e["s3"] is not None:
            s3 = e["s3"]
            try:
                client = boto3.client(
                    "s3", endpoint_url=s3.get("endpoint") or None,
                    region_name=s3.get("region") or "us-east-1",
                    aws_access_key_id=s3.get("access_key"), aws_secret_access_key=s3.get("secret"),
                    config=Config(s3={"addressing_style": "path" if s3.get("force_path_style") else "auto"}))
                client.put_object(Bucket=s3["bucket"], Key=e["file_key"], Body=RECORDING,
                                  ContentType="video/mp4")
            except Exception as exc:
                error = f"upload failed: {exc}"
        with self.lock:
            e["status"] = "EGRESS_FAILED" if error else "EGRESS_COMPLETE"
            e["error"] = error
            e["ended_at"] = time.time_ns()
            self._notify("egress_ended", egress_id=egress_id)

    # --- participants ----------------------------------------------------------------------------

    def join(self, token: str) -> dict[str, Any]:
        """A client connects with this token: verified as the server verifies it (signature,
        nbf/exp, `video.roomJoin`, `video.room`); the participant is recorded with its grants
        (the token's `video` claim) and returned. FakeRefused (401) otherwise."""
        try:
            claims = self._decode(token)
        except _Twirp as err:
            raise FakeRefused(401, err.code, err.msg) from None
        video = claims.get("video") or {}
        if not video.get("roomJoin") or not video.get("room") or not claims.get("sub"):
            raise FakeRefused(401, "unauthenticated", "the token does not grant joining a room")
        room_name = video["room"]
        with self.lock:
            if room_name not in self.rooms and not self.auto_create:
                raise FakeRefused(404, "not_found", "requested room does not exist")
            room = self._room(room_name)
            if room["max_participants"] and len(self.participants[room_name]) >= room["max_participants"]:
                raise FakeRefused(403, "permission_denied", "the room is full")
            participant = {"identity": claims["sub"], "sid": _sid("PA"), "name": claims.get("name", ""),
                           "metadata": claims.get("metadata", ""), "grants": dict(video),
                           "joined_at": int(time.time())}
            self.participants[room_name][claims["sub"]] = participant
            self._notify("participant_joined", room=room_name, identity=claims["sub"])
            return dict(participant)

    def leave(self, room: str, identity: str) -> None:
        with self.lock:
            if identity in self.participants.get(room, {}):
                self._notify("participant_left", room=room, identity=identity)
                del self.participants[room][identity]

    # --- webhooks --------------------------------------------------------------------------------

    def webhook(self, event: str, *, room: str | None = None, identity: str | None = None,
                egress_id: str | None = None, id: str | None = None, created_at: int | None = None,
                ttl: timedelta = timedelta(minutes=5), api_key: str | None = None,
                api_secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The delivery LiveKit posts for `event` about what the fake holds (the room by name,
        a participant of it by identity, an egress by id; the room of an egress is implied):
        (raw body, headers). `id` fixes the event id (a replay); `ttl` < -1 minute makes an
        expired token; `api_key`/`api_secret` sign with other credentials (a forgery)."""
        with self.lock:
            message = proto_webhook.WebhookEvent(
                event=event, id=id or _sid("EV"), created_at=created_at or int(time.time()))
            e = self.egress.get(egress_id) if egress_id else None
            if e is not None:
                message.egress_info.CopyFrom(self._egress_message(e))
                room = room or e["room_name"]
            elif egress_id:
                message.egress_info.egress_id = egress_id
            if room:
                known = self.rooms.get(room)
                message.room.name = room
                message.room.sid = known["sid"] if known else _sid("RM")
                if known:
                    message.room.CopyFrom(self._room_message(known))
            if identity:
                p = self.participants.get(room or "", {}).get(identity)
                if p is not None:
                    message.participant.CopyFrom(self._participant_message(p))
                else:
                    message.participant.identity = identity
                    message.participant.sid = _sid("PA")
        body = json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None).encode()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        token = (api.AccessToken(api_key or self.api_key, api_secret or self.api_secret)
                 .with_sha256(digest).with_ttl(ttl).to_jwt())
        return body, {"Content-Type": "application/webhook+json", "Authorization": token}

    def _notify(self, event: str, **fields: Any) -> None:
        """Queue the webhook of what just happened (posted in order by one thread)."""
        if self.webhook_url:
            body, headers = self.webhook(event, **fields)
            self._outbox.put((event, body, headers))

    def _post_loop(self) -> None:
        with httpx.Client(timeout=10) as client:
            while (item := self._outbox.get()) is not None:
                event, body, headers = item
                url = self.webhook_url
                if not url:
                    continue
                try:
                    status: int | str = client.post(url, content=body, headers=headers).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self.lock:
                    self.deliveries.append((event, status))


def decoded(webhook: tuple[bytes, dict[str, str]]) -> dict[str, Any]:
    """A webhook's body as JSON (for assertions)."""
    parsed: dict[str, Any] = json.loads(webhook[0])
    return parsed
