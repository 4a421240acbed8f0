"""Which provider account a clinic's calls use: the clinic's own (stored through tenancy's
credentials store, provider names `openvidu` and `jitsi`) when it stored one, else the
deployment's settings (CAREWIRE_OPENVIDU_*, CAREWIRE_JITSI_*); `NotConfigured` when neither.

Webhooks (helper for the intake at /api/v1/webhooks/video/openvidu): LiveKit signs each with
the API key/secret of the server that sent it and names the key in the token's `iss`. The
intake calls `verify_openvidu_webhook(body, authorization, await openvidu_keys())`: the
deployment's key verifies there and then. A ValueError naming an unknown issuer means another
OpenVidu sent it: a clinic's own. The intake then reads the room name from the (still
unverified) body, finds the session and so the clinic, and verifies again with
`await openvidu_keys(clinic_id)` (the deployment's pair plus the clinic's); nothing from the body
is trusted before that second check passes."""

from __future__ import annotations

import uuid

import jwt
from livekit import api

from domain.errors import NotFound
from domain.settings import get as app_settings
from domain.tenancy.credentials import get_credentials
from domain.video.models import VideoProviderName
from domain.video.providers.base import NotConfigured, Recorder, VideoProvider
from domain.video.providers.jitsi import Jitsi
from domain.video.providers.openvidu import OpenVidu

#: The fields a clinic stores for each provider (PUT .../video/credentials/{provider}):
#: (required, optional).
FIELDS: dict[VideoProviderName, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openvidu": (("url", "api_key", "api_secret"), ()),
    "jitsi": (("domain", "app_id", "app_secret"), ("key_id",)),
}


async def _stored(clinic_id: uuid.UUID, name: VideoProviderName) -> dict[str, str] | None:
    try:
        return await get_credentials(clinic_id, name)
    except NotFound:
        return None


async def has_own(clinic_id: uuid.UUID, name: VideoProviderName) -> bool:
    """The clinic stored its own account for this provider."""
    return await _stored(clinic_id, name) is not None


def deployment_openvidu() -> OpenVidu | None:
    """The deployment's OpenVidu (CAREWIRE_OPENVIDU_*), or None when its URL is not set."""
    s = app_settings()
    if not (s.openvidu_url and s.openvidu_api_key and s.openvidu_api_secret):
        return None
    return OpenVidu(s.openvidu_url, s.openvidu_api_key, s.openvidu_api_secret)


async def openvidu(clinic_id: uuid.UUID) -> tuple[OpenVidu, bool]:
    """The clinic's OpenVidu and whether it is the clinic's own (True) or the deployment's."""
    own = await _stored(clinic_id, "openvidu")
    if own is not None:
        return OpenVidu(own["url"], own["api_key"], own["api_secret"]), True
    found = deployment_openvidu()
    if found is None:
        raise NotConfigured("openvidu is not set up for this clinic or the deployment")
    return found, False


async def jitsi(clinic_id: uuid.UUID) -> Jitsi:
    s = app_settings()
    own = await _stored(clinic_id, "jitsi")
    if own is not None:
        return Jitsi(own["domain"], own["app_id"], own["app_secret"], key_id=own.get("key_id", ""),
                     scheme=s.jitsi_scheme)
    if not (s.jitsi_domain and s.jitsi_app_id and s.jitsi_app_secret):
        raise NotConfigured("jitsi is not set up for this clinic or the deployment")
    return Jitsi(s.jitsi_domain, s.jitsi_app_id, s.jitsi_app_secret, key_id=s.jitsi_key_id,
                 scheme=s.jitsi_scheme)


async def provider(clinic_id: uuid.UUID, name: VideoProviderName) -> VideoProvider:
    """The adapter for that provider with the clinic's (or else the deployment's) account."""
    if name == "openvidu":
        return (await openvidu(clinic_id))[0]
    return await jitsi(clinic_id)


async def recorder(clinic_id: uuid.UUID) -> Recorder:
    """Recording goes through OpenVidu's egress (Jitsi has none here)."""
    return (await openvidu(clinic_id))[0]


async def openvidu_keys(clinic_id: uuid.UUID | None = None) -> dict[str, str]:
    """API key -> secret pairs an OpenVidu webhook may be signed with: the deployment's, and
    with `clinic_id` also that clinic's own."""
    keys: dict[str, str] = {}
    found = deployment_openvidu()
    if found is not None:
        keys[found.api_key] = found.api_secret
    if clinic_id is not None:
        own = await _stored(clinic_id, "openvidu")
        if own is not None:
            keys[own["api_key"]] = own["api_secret"]
    return keys


def verify_openvidu_webhook(body: bytes, authorization: str, keys: dict[str, str]) -> api.WebhookEvent:
    """The verified event, checked with the secret of the key its token names (`iss`);
    ValueError when that key is not among `keys` ("unknown issuer") or the check fails."""
    try:
        issuer = jwt.decode(authorization, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise ValueError("webhook refused: the Authorization header is not a JWT") from None
    if not isinstance(issuer, str) or issuer not in keys:
        raise ValueError("webhook refused: unknown issuer")
    return OpenVidu("", issuer, keys[issuer]).verify_webhook(body, authorization)
