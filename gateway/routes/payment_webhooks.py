"""Payment providers' webhooks, one address per clinic and provider (the clinic's webhook
secret verifies it). Verified on the raw body, stored in the one inbox, answered at once; a job
applies them (domain/billing/webhooks.py). Refusals are problem+json, counted and sampled into
the audit log like every webhook refusal (gateway/routes/webhooks.py)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response, Router, post
from litestar.params import FromPath

from domain.billing import webhooks
from domain.billing.models import OnlineProvider
from domain.inbox.signatures import Refused
from gateway.routes import PUBLIC
from gateway.routes.webhooks import refuse


@post("/{provider:str}/{clinic_id:str}", permission=PUBLIC, self_audited=True, status_code=200,
      summary="A payment provider's webhook for one clinic (verified with its secret)")
async def payment_events(request: Request[Any, Any, Any], provider: FromPath[OnlineProvider],
                         clinic_id: FromPath[uuid.UUID]) -> Response[Any]:
    """Stripe (Stripe-Signature), Razorpay (X-Razorpay-Signature), PhonePe (Authorization:
    SHA256 of the dashboard's username:password) or PayPal (verify-webhook-signature).
    200 `{stored, duplicates}`; 400 malformed or stale, 401 forged or not set up here."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        receipt = await webhooks.intake(provider, clinic_id, body, headers)
    except Refused as exc:
        return await refuse(request, provider, exc)
    return Response(receipt, status_code=200)


router = Router(path="/webhooks/payments", tags=["webhooks"], security=[{}],
                route_handlers=[payment_events])
