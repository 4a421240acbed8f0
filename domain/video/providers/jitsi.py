"""Jitsi Meet with JWT-authenticated rooms, the fallback when OpenVidu is down.

No API creates or closes a room: a room exists while someone is in it, so `create_room` and
`close_room` make no call (a Jitsi call ends when its participants leave; their tokens end with
the join window). Two token flavours, built with joserfc as the rest of the project builds JWTs:

- self-hosted (no `key_id`): HS256 with the app secret; `iss` = `aud` = the app id, `sub` = the
  domain, `room` = the room. Prosody must be configured to accept it: `app_id` and `app_secret`
  as set here, and `asap_accepted_issuers` / `asap_accepted_audiences` including the app id.
  Stock Jitsi ignores `context.user.moderator` (the first joiner moderates) unless the
  `token_affiliation` (or `token_moderation`) module is installed; the claims are sent either way.
- 8x8 JaaS (`key_id` set): RS256 with the PEM private key in `app_secret`, header
  `kid = "{app_id}/{key_id}"` (app_id is the `vpaas-magic-cookie-...` tenant), `aud: "jitsi"`,
  `iss: "chat"`, `sub` = app id; rooms live at `https://8x8.vc/{app_id}/{room}`.

Stock Jitsi cannot make a participant subscribe-only: an observer is marked in the token
(`context.user.affiliation` member, no moderator, no recording) and shown as such, but the
client would still let them turn on their camera."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from domain.settings import get as app_settings
from domain.video.models import VideoProviderName
from domain.video.providers.base import Grants, Participant, Ticket

JAAS_DOMAIN = "8x8.vc"


class Jitsi:
    name: VideoProviderName = "jitsi"

    def __init__(self, domain: str, app_id: str, app_secret: str, *, key_id: str = "",
                 scheme: str = "https") -> None:
        self.key_id = key_id
        self.domain = JAAS_DOMAIN if key_id else domain
        self.scheme = "https" if key_id else scheme
        self.app_id = app_id
        self.app_secret = app_secret

    def __repr__(self) -> str:  # never the secret
        return f"Jitsi({self.scheme}://{self.domain}, app_id={self.app_id!r}, jaas={bool(self.key_id)})"

    async def create_room(self, room: str, *, empty_timeout_seconds: int,
                          max_participants: int) -> None:
        """Nothing to do: a Jitsi room exists on first join."""

    async def close_room(self, room: str) -> None:
        """Nothing to do: the room ends when its participants leave."""

    async def healthy(self) -> bool:
        """`GET {scheme}://{domain}/config.js` answers 200 (community practice)."""
        try:
            async with httpx.AsyncClient(timeout=app_settings().video_timeout_seconds) as client:
                r = await client.get(f"{self.scheme}://{self.domain}/config.js")
                return r.status_code == 200
        except httpx.HTTPError:
            return False

    def ticket(self, room: str, who: Participant, grants: Grants, *, not_before: datetime,
               expires_at: datetime) -> Ticket:
        user = {"id": who.identity, "name": who.name,
                "moderator": "true" if grants.moderate else "false",
                "affiliation": "owner" if grants.moderate else "member"}
        claims: dict[str, Any] = {
            "room": room, "nbf": int(not_before.timestamp()), "exp": int(expires_at.timestamp()),
            "context": {"user": user, "features": {"recording": "true" if grants.record else "false"}},
        }
        if self.key_id:  # 8x8 JaaS
            claims.update(iss="chat", aud="jitsi", sub=self.app_id)
            header = {"alg": "RS256", "typ": "JWT", "kid": f"{self.app_id}/{self.key_id}"}
            token = jwt.encode(header, claims, RSAKey.import_key(self.app_secret), algorithms=["RS256"])
            url = f"https://{JAAS_DOMAIN}/{self.app_id}/{room}?jwt={token}"
        else:
            claims.update(iss=self.app_id, aud=self.app_id, sub=self.domain)
            token = jwt.encode({"alg": "HS256", "typ": "JWT"}, claims,
                               OctKey.import_key(self.app_secret.encode()), algorithms=["HS256"])
            url = f"{self.scheme}://{self.domain}/{room}?jwt={token}"
        return Ticket(url=url, server_url=None, token=token)
