"""Payments: an online checkout through the clinic's provider, a desk payment, the lists; and a
clinic's payment provider credentials (they go in and come back masked)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response, Router, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from domain.billing.commands import credentials, payments
from domain.billing.models import OnlineProvider, Payment, PaymentStatus
from domain.billing.queries import payments as queries
from domain.errors import invalid_field
from domain.paging import Page
from gateway.context import CurrentPrincipal
from gateway.routes import NO_NUL, Body

Url = Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^https?://[^\x00\s]+$")]
FieldName = Annotated[str, msgspec.Meta(max_length=64, pattern=NO_NUL)]
FieldValue = Annotated[str, msgspec.Meta(max_length=16_384, pattern=NO_NUL)]


class PaymentCreate(Body):
    """`{invoice_id}`: pay online through the clinic's provider (the answer's `checkout` is
    what the app needs); `{invoice_id, method, amount}`: staff record a desk payment."""

    invoice_id: uuid.UUID
    method: Literal["cash", "card_terminal"] | None = None
    #: Minor units; desk payments only (an online payment is for what the invoice owes).
    amount: int | None = None
    #: Where the provider sends the patient back (PhonePe, PayPal); default: carewire's page.
    return_url: Url | None = None


class CredentialsPut(Body):
    credentials: Annotated[dict[FieldName, FieldValue], msgspec.Meta(max_length=20)]


@post("/", permission="payments:create", responses={
    200: ResponseSpec(data_container=Payment,
                      description="The invoice's live pending payment, asked for again")})
async def create_payment(principal: CurrentPrincipal,
                         data: JSONBody[PaymentCreate]) -> Response[Payment]:
    """201 with the new payment; 200 with the invoice's pending one when it exists already
    (checkout is idempotent per invoice). 409: the invoice is not open, or the clinic has no
    online provider set up. 503 with Retry-After: the provider is away (the payment is
    `failed`, nothing was charged)."""
    if data.method is None:
        if data.amount is not None:
            raise invalid_field("amount", "online payments are for what the invoice owes; "
                                          "give amount only with a desk method")
        payment, created = await payments.open_checkout(principal, invoice_id=data.invoice_id,
                                                        return_url=data.return_url)
        return Response(payment, status_code=201 if created else 200)
    if data.amount is None:
        raise invalid_field("amount", "required for a desk payment (minor units)")
    payment = await payments.record_desk_payment(principal, invoice_id=data.invoice_id,
                                                 method=data.method, amount=data.amount)
    return Response(payment, status_code=201)


@get("/", permission="payments:read")
async def list_payments(
    principal: CurrentPrincipal, clinic_id: FromQuery[uuid.UUID],
    patient_id: FromQuery[uuid.UUID | None] = None,
    invoice_id: FromQuery[uuid.UUID | None] = None,
    status: FromQuery[PaymentStatus | None] = None, limit: FromQuery[int] = 50,
    cursor: FromQuery[Annotated[str, msgspec.Meta(max_length=200)] | None] = None,
) -> Page[Payment]:
    """Oldest first; patients see their own."""
    return await queries.list_payments(principal, clinic_id=clinic_id, patient_id=patient_id,
                                       invoice_id=invoice_id,
                                       status=status.value if status else None, limit=limit,
                                       cursor=cursor)


@get("/{payment_id:str}", permission="payments:read")
async def get_payment(principal: CurrentPrincipal, payment_id: FromPath[uuid.UUID]) -> Payment:
    return await queries.get_payment(principal, payment_id)


@put("/{provider:str}", permission="billing_settings:manage")
async def put_provider_credentials(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                                   provider: FromPath[OnlineProvider],
                                   data: JSONBody[CredentialsPut]) -> dict[str, Any]:
    """Replace the provider's credentials (exactly its fields: stripe secret_key,
    webhook_secret; razorpay key_id, key_secret, webhook_secret; phonepe client_id,
    client_secret, client_version, webhook_username, webhook_password; paypal client_id,
    client_secret, webhook_id). Answers them masked. Audited (field names only)."""
    masked = await credentials.put_provider_credentials(principal, clinic_id, provider,
                                                        dict(data.credentials))
    return {"provider": provider, "credentials": masked}


@get("/{provider:str}", permission="billing_settings:read")
async def get_provider_credentials(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                                   provider: FromPath[OnlineProvider]) -> dict[str, Any]:
    """The stored fields as `****` + their last 4 characters ({} when none)."""
    masked = await credentials.provider_credentials(principal, clinic_id, provider)
    return {"provider": provider, "credentials": masked}


router = Router(path="/billing/payments", route_handlers=[create_payment, list_payments,
                                                           get_payment], tags=["billing"])
credentials_router = Router(path="/clinics/{clinic_id:str}/billing/credentials",
                            route_handlers=[put_provider_credentials, get_provider_credentials],
                            tags=["billing"])
