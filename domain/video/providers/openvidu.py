"""OpenVidu 3 through the LiveKit server API it speaks, with the official SDK (`livekit-api`):
room and egress calls over Twirp, participant tokens and webhook checks as LiveKit defines them.

One `LiveKitAPI` (and so one aiohttp session) per call, closed after it: a session makes a few
provider calls in its life (create, end, a recording), so a pooled connection saves nothing
worth a client per event loop, and a fresh connection each time reports a refused or dead
server at once instead of on a stale kept-alive socket."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import aiohttp
import httpx
import jwt
from google.protobuf.message import DecodeError
from livekit import api

from domain.settings import get as app_settings
from domain.video.models import RecordingStatus, VideoProviderName
from domain.video.providers.base import Grants, Participant, ProviderDown, ProviderRefused, Ticket

T = TypeVar("T")

#: EgressInfo.status -> ours.
EGRESS_STATUS: dict[int, RecordingStatus] = {
    api.EgressStatus.EGRESS_STARTING: RecordingStatus.STARTING,
    api.EgressStatus.EGRESS_ACTIVE: RecordingStatus.ACTIVE,
    api.EgressStatus.EGRESS_ENDING: RecordingStatus.ENDING,
    api.EgressStatus.EGRESS_COMPLETE: RecordingStatus.COMPLETE,
    api.EgressStatus.EGRESS_FAILED: RecordingStatus.FAILED,
    api.EgressStatus.EGRESS_ABORTED: RecordingStatus.ABORTED,
    api.EgressStatus.EGRESS_LIMIT_REACHED: RecordingStatus.COMPLETE,
}


def recording_status(status: int) -> RecordingStatus:
    """An EgressInfo status as ours (an unknown one is FAILED: nothing more will come of it)."""
    return EGRESS_STATUS.get(status, RecordingStatus.FAILED)


class OpenVidu:
    name: VideoProviderName = "openvidu"

    def __init__(self, url: str, api_key: str, api_secret: str) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.api_secret = api_secret

    def __repr__(self) -> str:  # never the secret
        return f"OpenVidu({self.url!r}, api_key={self.api_key!r})"

    # --- calls -----------------------------------------------------------------------------------

    async def _call(self, what: Callable[[api.LiveKitAPI], Awaitable[T]]) -> T:
        """Run one SDK call; a timeout, a connection failure, a 5xx or an answer that does not
        decode is ProviderDown, any other Twirp error ProviderRefused."""
        seconds = app_settings().video_timeout_seconds
        try:
            async with asyncio.timeout(seconds):  # the SDK's own timeout misses a slow connect
                lk = api.LiveKitAPI(self.url, self.api_key, self.api_secret,
                                    timeout=aiohttp.ClientTimeout(total=seconds), failover=False)
                try:
                    return await what(lk)
                finally:
                    await lk.aclose()
        except api.TwirpError as err:
            if err.status >= 500 or err.status in (408, 429):
                raise ProviderDown(f"HTTP {err.status}") from err
            raise ProviderRefused(err.code, err.message) from err
        except TimeoutError as err:
            raise ProviderDown("timeout") from err
        except aiohttp.ClientError as err:
            raise ProviderDown(f"connection failed: {type(err).__name__}") from err
        except DecodeError as err:  # a 200 that is not the protobuf answer (a proxy's page)
            raise ProviderDown("garbled answer") from err

    async def create_room(self, room: str, *, empty_timeout_seconds: int,
                          max_participants: int) -> None:
        await self._call(lambda lk: lk.room.create_room(api.CreateRoomRequest(
            name=room, empty_timeout=empty_timeout_seconds, max_participants=max_participants)))

    async def close_room(self, room: str) -> None:
        try:
            await self._call(lambda lk: lk.room.delete_room(api.DeleteRoomRequest(room=room)))
        except ProviderRefused as err:
            if err.code != "not_found":
                raise

    async def admit_participant(self, room: str, identity: str) -> bool:
        """Promote a participant connected with waiting grants to publish, subscribe and send
        data (RoomService UpdateParticipant): True when done, False when nobody of that
        identity is in the room (Twirp not_found: their next token carries the full grants)."""
        update = api.UpdateParticipantRequest(
            room=room, identity=identity, permission=api.ParticipantPermission(
                can_publish=True, can_subscribe=True, can_publish_data=True))
        try:
            await self._call(lambda lk: lk.room.update_participant(update))
        except ProviderRefused as err:
            if err.code != "not_found":
                raise
            return False
        return True

    async def healthy(self) -> bool:
        """`GET {url}/` answers 200 within the provider timeout."""
        try:
            async with httpx.AsyncClient(timeout=app_settings().video_timeout_seconds) as client:
                return (await client.get(self.url + "/")).status_code == 200
        except httpx.HTTPError:
            return False

    # --- tokens ----------------------------------------------------------------------------------

    def ticket(self, room: str, who: Participant, grants: Grants, *, not_before: datetime,
               expires_at: datetime) -> Ticket:
        """A participant token valid from `not_before` to `expires_at` (LiveKit's client SDKs
        connect to `server_url` with it; `url` is the same server for a web client)."""
        token = api.AccessToken(self.api_key, self.api_secret) \
            .with_identity(who.identity).with_name(who.name) \
            .with_metadata(json.dumps({"role": who.role.value})) \
            .with_grants(api.VideoGrants(
                room_join=True, room=room, can_publish=grants.publish, can_subscribe=grants.subscribe,
                can_publish_data=grants.publish, room_admin=grants.moderate,
                room_record=grants.record))
        return Ticket(url=self.url, server_url=self.url,
                      token=_with_window(token, not_before, expires_at))

    # --- recording -------------------------------------------------------------------------------

    async def start_recording(self, room: str, *, bucket: str,
                              file_key: str) -> tuple[str, RecordingStatus]:
        """A composite (grid) mp4 of the room written to `bucket`/`file_key` by OpenVidu's egress,
        with the deployment's S3 settings (AWS_* environment, `aws_endpoint_url`)."""
        settings = app_settings()
        s3 = api.S3Upload(
            bucket=bucket, region=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
            secret=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            endpoint=settings.aws_endpoint_url, force_path_style=True)
        request = api.RoomCompositeEgressRequest(room_name=room, file_outputs=[api.EncodedFileOutput(
            file_type=api.EncodedFileType.MP4, filepath=file_key, s3=s3)])
        info = await self._call(lambda lk: lk.egress.start_room_composite_egress(request))
        return info.egress_id, recording_status(info.status)

    async def stop_recording(self, egress_id: str) -> RecordingStatus:
        """Stop the egress; one already stopping or stopped answers its current status."""
        try:
            info = await self._call(lambda lk: lk.egress.stop_egress(
                api.StopEgressRequest(egress_id=egress_id)))
        except ProviderRefused as err:
            if err.code != "failed_precondition":
                raise
            listed = await self._call(lambda lk: lk.egress.list_egress(
                api.ListEgressRequest(egress_id=egress_id)))
            if not listed.items:
                raise
            return recording_status(listed.items[0].status)
        return recording_status(info.status)

    # --- webhooks --------------------------------------------------------------------------------

    def verify_webhook(self, body: bytes, authorization: str) -> api.WebhookEvent:
        """The event LiveKit signed (JWT in `Authorization`, no Bearer, with the body's SHA-256
        in `sha256`); ValueError for anything else: not UTF-8, a bad signature or issuer,
        expired, no or another body hash, not a WebhookEvent."""
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise ValueError("the body is not UTF-8") from None
        receiver = api.WebhookReceiver(api.TokenVerifier(self.api_key, self.api_secret))
        try:
            return receiver.receive(text, authorization)
        except Exception as exc:  # the SDK raises jwt errors, bare Exceptions and ParseErrors
            raise ValueError(f"webhook refused: {exc}") from None


def _with_window(token: api.AccessToken, not_before: datetime, expires_at: datetime) -> str:
    """Sign with our nbf/exp (the SDK sets nbf = now, exp = now + ttl): re-encode its claims."""
    claims = token.claims.asdict()
    claims.update({"sub": token.identity, "iss": token.api_key,
                   "nbf": int(not_before.timestamp()), "exp": int(expires_at.timestamp())})
    return jwt.encode(claims, token.api_secret, algorithm="HS256")
