"""Inbound provider webhooks. No login (providers cannot log in): each is verified on its raw
body by domain/inbox (signature, certificate, freshness), stored keyed by the provider's event
id and answered at once; a job processes it. Refusals are problem+json, counted in
`carewire_auth_refusals_total{transport="webhook"}` and sampled into the audit log
(domain/audit/refusals.py), and store nothing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

from litestar import Request, Response, Router, get, post
from litestar.params import HeaderParameter, QueryParameter

from domain.audit import refusals
from domain.inbox import intake
from domain.inbox.models import Receipt
from domain.inbox.signatures import Refused
from gateway.context import request_meta
from gateway.problems import problem
from gateway.routes import PUBLIC
from realtime import metrics

log = logging.getLogger("carewire.webhooks")

Intake = Callable[[bytes, Mapping[str, str]], Awaitable[Receipt]]
_CODES = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 503: "unavailable"}


async def refuse(request: Request[Any, Any, Any], provider: str, exc: Refused) -> Response[bytes]:
    metrics.AUTH_REFUSALS.labels("webhook", exc.reason).inc()
    try:
        await refusals.record_refusal(transport="webhook", reason=exc.reason, message=exc.message,
                                      meta=request_meta(request),
                                      detail={"provider": provider, "path": request.url.path[:200]})
    except Exception:  # an audit outage must not turn a refusal into a 500
        log.exception("could not audit a refused webhook")
    return problem(_CODES.get(exc.status, "invalid"), exc.message, status=exc.status,
                   request=request)


async def receive_with(request: Request[Any, Any, Any], provider: str,
                       take: Intake) -> Response[Any]:
    """Hand the raw body and lower-cased headers to `take`; its Receipt, or a counted refusal."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        receipt = await take(body, headers)
    except Refused as exc:
        return await refuse(request, provider, exc)
    return Response(receipt, status_code=200)


@post("/communication/ses", permission=PUBLIC, self_audited=True, status_code=200,
      summary="SES bounces, complaints and deliveries through SNS (signature-verified)")
async def ses_events(
    request: Request[Any, Any, Any],
    message_type: Annotated[Literal["Notification", "SubscriptionConfirmation",
                                    "UnsubscribeConfirmation"] | None,
                            HeaderParameter(name="x-amz-sns-message-type")] = None,
) -> Response[Any]:
    """The body is SNS's JSON (sent as text/plain), its signature inside it."""
    return await receive_with(request, "ses", intake.sns)


@post("/communication/zeptomail", permission=PUBLIC, self_audited=True, status_code=200,
      summary="ZeptoMail bounce webhooks (producer-signature verified)")
async def zeptomail_events(
    request: Request[Any, Any, Any],
    signature: Annotated[str | None, HeaderParameter(name="producer-signature",
                                                     max_length=1000)] = None,
) -> Response[Any]:
    """`producer-signature: ts=<ms>;s=<base64 HMAC-SHA256 of the body>;s-algorithm=HmacSHA256`."""
    return await receive_with(request, "zeptomail", intake.zeptomail)


@post("/communication/whatsapp", permission=PUBLIC, self_audited=True, status_code=200,
      summary="WhatsApp status webhooks (X-Hub-Signature-256 verified)")
async def whatsapp_events(
    request: Request[Any, Any, Any],
    signature: Annotated[str | None, HeaderParameter(name="x-hub-signature-256",
                                                     max_length=200)] = None,
) -> Response[Any]:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body under the app secret>`."""
    return await receive_with(request, "whatsapp", intake.whatsapp)


@get("/communication/whatsapp", permission=PUBLIC, self_audited=True,
     summary="Meta's webhook verification handshake: echoes hub.challenge")
async def whatsapp_handshake(
    request: Request[Any, Any, Any],
    mode: Annotated[str | None, QueryParameter(name="hub.mode", max_length=20)] = None,
    token: Annotated[str | None, QueryParameter(name="hub.verify_token", max_length=200)] = None,
    challenge: Annotated[str | None, QueryParameter(name="hub.challenge", max_length=200)] = None,
) -> Response[Any]:
    answer = intake.handshake(mode, token, challenge)
    if answer is None:
        return await refuse(request, "whatsapp", Refused(
            403, "bad_verify_token", "hub.mode must be subscribe with the right hub.verify_token"))
    return Response(answer, media_type="text/plain", status_code=200)


router = Router(path="/webhooks", tags=["webhooks"], security=[{}],
                route_handlers=[ses_events, zeptomail_events, whatsapp_events,
                                whatsapp_handshake])
