"""Refunds: a payment's (create, list), a clinic's (list), one by id."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Router, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from domain.billing.commands import refunds
from domain.billing.models import Refund, RefundStatus
from domain.billing.queries import refunds as queries
from domain.money import MAX_MINOR
from domain.paging import Page
from gateway.context import CurrentPrincipal
from gateway.routes import NO_NUL, Body


class RefundCreate(Body):
    #: Why; kept in the audit log (never sent on the event stream).
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=NO_NUL)]
    #: Minor units (paise, cents); left out: all that is left to refund.
    amount: Annotated[int, msgspec.Meta(gt=0, lt=MAX_MINOR)] | None = None


@post("/payments/{payment_id:str}/refunds", permission="refunds:create")
async def create_refund(principal: CurrentPrincipal, payment_id: FromPath[uuid.UUID],
                        data: JSONBody[RefundCreate]) -> Refund:
    """201 and the refund: `succeeded` at once for a desk payment; for an online one the
    provider's answer (`pending` while the provider has not finished, or cannot be reached:
    it is asked again with the same idempotency key). Never more than what is left: above it
    is 400 naming `amount`, also under concurrent requests. Audited with the reason."""
    return await refunds.refund(principal, payment_id, amount=data.amount, reason=data.reason)


@get("/payments/{payment_id:str}/refunds", permission="refunds:read")
async def list_payment_refunds(principal: CurrentPrincipal, payment_id: FromPath[uuid.UUID],
                               limit: FromQuery[int] = 50,
                               cursor: FromQuery[str | None] = None) -> Page[Refund]:
    return await queries.list_payment_refunds(principal, payment_id, limit=limit, cursor=cursor)


@get("/refunds", permission="refunds:read")
async def list_refunds(principal: CurrentPrincipal, clinic_id: FromQuery[uuid.UUID],
                       status: FromQuery[RefundStatus | None] = None, limit: FromQuery[int] = 50,
                       cursor: FromQuery[str | None] = None) -> Page[Refund]:
    """The clinic's refunds, oldest first (keyset); a patient sees their own."""
    return await queries.list_refunds(principal, clinic_id,
                                      status=status.value if status else None, limit=limit,
                                      cursor=cursor)


@get("/refunds/{refund_id:str}", permission="refunds:read")
async def get_refund(principal: CurrentPrincipal, refund_id: FromPath[uuid.UUID]) -> Refund:
    return await queries.get_refund(principal, refund_id)


router = Router(path="/billing",
                route_handlers=[create_refund, list_payment_refunds, list_refunds, get_refund],
                tags=["billing"])
