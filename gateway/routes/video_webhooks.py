"""OpenVidu's webhooks (LiveKit's format: a signed JWT in `Authorization` carrying the body's
SHA-256). Verified on the raw body, stored in the one inbox, answered at once; a job applies
them (domain/video/webhooks.py). Refusals are problem+json, counted and sampled into the audit
log like every webhook refusal (gateway/routes/webhooks.py)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, post
from litestar.params import HeaderParameter

from domain.video import webhooks
from gateway.routes import PUBLIC
from gateway.routes.webhooks import receive_with


@post("/openvidu", permission=PUBLIC, self_audited=True, status_code=200,
      summary="OpenVidu (LiveKit) room, participant and egress webhooks (signed JWT verified)")
async def openvidu_events(
    request: Request[Any, Any, Any],
    authorization: Annotated[str | None, HeaderParameter(name="authorization",
                                                         max_length=4000)] = None,
) -> Response[Any]:
    """`Authorization: <JWT>` (no Bearer) signed with the API key's secret, `sha256` = base64
    SHA-256 of the body. 200 `{stored, duplicates}`; 401 forged, altered, stale or unknown key;
    400 a verified body that is not an event."""
    return await receive_with(request, webhooks.PROVIDER, webhooks.intake)


router = Router(path="/webhooks/video", tags=["webhooks"], security=[{}],
                route_handlers=[openvidu_events])
