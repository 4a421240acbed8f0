"""A clinic's own video provider accounts (they go in and come back masked) and how its video
providers are doing (configured, live health check, OpenVidu's circuit breaker)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, get, put
from litestar.params import FromPath, JSONBody

from domain.video import failover
from domain.video.commands import credentials
from domain.video.models import VideoProviderName
from gateway.context import CurrentPrincipal
from gateway.routes import NO_NUL, Body

FieldName = Annotated[str, msgspec.Meta(max_length=64, pattern=NO_NUL)]
FieldValue = Annotated[str, msgspec.Meta(max_length=16_384, pattern=NO_NUL)]


class CredentialsPut(Body):
    credentials: Annotated[dict[FieldName, FieldValue], msgspec.Meta(max_length=20)]


@put("/credentials/{provider:str}", permission="video_settings:manage")
async def put_provider_credentials(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                                   provider: FromPath[VideoProviderName],
                                   data: JSONBody[CredentialsPut]) -> dict[str, Any]:
    """Replace the clinic's account at the provider (exactly its fields: openvidu url, api_key,
    api_secret, the url matching the deployment's allowed pattern; jitsi domain, app_id,
    app_secret and optionally key_id for 8x8 JaaS, app_secret then an RSA private key in PEM).
    From then on the clinic's sessions use it instead of the deployment's. Answers the fields
    masked. Audited (field names only)."""
    masked = await credentials.put_provider_credentials(principal, clinic_id, provider,
                                                        dict(data.credentials))
    return {"provider": provider, "credentials": masked}


@get("/credentials/{provider:str}", permission="video_settings:read")
async def get_provider_credentials(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                                   provider: FromPath[VideoProviderName]) -> dict[str, Any]:
    """The stored fields as `****` + their last 4 characters ({} when none)."""
    masked = await credentials.provider_credentials(principal, clinic_id, provider)
    return {"provider": provider, "credentials": masked}


@get("/health", permission="video_settings:read")
async def video_health(principal: CurrentPrincipal,
                       clinic_id: FromPath[uuid.UUID]) -> failover.VideoHealth:
    """Each provider as the clinic's sessions would use it: configured (the clinic's own account
    or the deployment's), its health check asked now, OpenVidu's circuit breaker; and where a
    new session would start."""
    return await failover.clinic_health(principal, clinic_id)


router = Router(path="/clinics/{clinic_id:str}/video",
                route_handlers=[put_provider_credentials, get_provider_credentials, video_health],
                tags=["video"])
