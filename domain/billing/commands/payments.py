"""Payments against invoices: online checkout through the clinic's provider, payments recorded
at the desk, and `settle`, the one way a provider's word (webhook or reconciliation) moves a
payment.

Checkout: the payment row is written `pending` in one transaction (one pending payment per
invoice: a second ask finds the first), the provider's order is opened OUTSIDE any transaction
(a slow provider holds no lock), then the order id and what the patient's app needs are
stored. The order is opened with our payment id as its idempotency key, so asking again after a
crash or a timeout reaches the same order. A provider that is away leaves the payment `failed`
(nothing paid) and answers 503 with Retry-After.

Lifecycle (converges whatever order the provider's news arrives in): pending -> failed |
succeeded, failed -> succeeded (a retry at the provider still succeeds), never back from
succeeded; each move is a guarded UPDATE, so a fact applied twice moves nothing the second time.

Lock order, as scheduling's expiry takes it: the appointment, then the invoice (invoices'
`record_payment`), then the payment."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal

import msgspec

from domain import db, money
from domain.access.policies import acting_role
from domain.access.roles import Role
from domain.audit.commands import record
from domain.billing import events
from domain.billing.commands import refunds
from domain.billing.commands.invoices import record_payment
from domain.billing.models import DESK_METHODS, InvoiceStatus, Payment, PaymentStatus
from domain.billing.providers import adapter
from domain.billing.providers.base import ProviderError, ProviderRejected, State
from domain.billing.queries.invoices import load_invoice, visible_invoice
from domain.billing.queries.payments import payment_from_row
from domain.errors import Conflict, DomainError, Forbidden, NotFound, Unavailable, invalid_field
from domain.events.commands import record as record_event
from domain.principal import Principal
from domain.scheduling.commands.transitions import apply_transition
from domain.scheduling.models import Status
from domain.scheduling.queries import load_appointment
from domain.settings import get as app_settings
from domain.tenancy.credentials import get_credentials
from domain.tenancy.queries import load_clinic

log = logging.getLogger("carewire.billing")


class ProviderUnavailable(Unavailable):
    """The clinic's payment provider could not be reached: 503 with Retry-After."""

    def __init__(self, message: str, *, retry_after: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


async def events_record(kind: type[events.PaymentEvent], payment: Payment) -> None:
    """A payment event (ids, status, amounts) to the patient and the clinic's billing roles."""
    await record_event(None, clinic_id=payment.clinic_id, event=kind(
        payment_id=payment.id, invoice_id=payment.invoice_id, patient_id=payment.patient_id,
        provider=payment.provider, status=payment.status.value, currency=payment.currency,
        amount=payment.amount, refunded=payment.refunded),
        audience=events.audience(payment.clinic_id, payment.patient_id))


def _owed(total: int, paid: int) -> int:
    return total - paid


# --- desk -------------------------------------------------------------------------------------

async def record_desk_payment(principal: Principal, *, invoice_id: uuid.UUID,
                              method: Literal["cash", "card_terminal"], amount: int) -> Payment:
    """Reception takes cash or a card-terminal payment against an open invoice: succeeded at
    once; the invoice's amount paid grows (never above its total: invoices refuses, naming
    `amount`); a visit waiting for its payment is scheduled when the invoice is paid."""
    if method not in DESK_METHODS:
        raise invalid_field("method", "cash or card_terminal")
    money.check_amount(amount)
    async with db.transaction():
        invoice = await visible_invoice(principal, invoice_id, "payments:create")
        if acting_role(principal, invoice.clinic_id) is Role.PATIENT:
            raise Forbidden("patients pay online; desk payments are recorded by staff",
                            resource_type="payment")
        appointment = (await load_appointment(invoice.appointment_id, lock=True)
                       if invoice.appointment_id else None)
        invoice = await record_payment(invoice.id, amount, invoice.currency)
        rows = await db.fetch(
            """INSERT INTO billing_payments (id, clinic_id, invoice_id, patient_id, provider,
                   amount, currency, status, recorded_by, succeeded_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, 'succeeded', $8, now()) RETURNING *""",
            uuid.uuid4(), invoice.clinic_id, invoice.id, invoice.patient_id, method, amount,
            invoice.currency, principal.user_id)
        payment = payment_from_row(rows[0])
        await events_record(events.PaymentCreated, payment)  # recorded, and (at once) received
        await events_record(events.PaymentSucceeded, payment)
        await record(principal, action="payments:create", resource_type="payment",
                     resource_id=payment.id, clinic_id=payment.clinic_id,
                     detail={"invoice_id": str(invoice.id), "method": method, "amount": amount,
                             "currency": payment.currency})
        if (appointment is not None and appointment.status is Status.PENDING_PAYMENT
                and invoice.status is InvoiceStatus.PAID):
            await apply_transition(None, appointment, Status.SCHEDULED, reason="paid",
                                   permission=None)
    return payment


# --- online checkout --------------------------------------------------------------------------

_INSERT_PENDING = """
INSERT INTO billing_payments (id, clinic_id, invoice_id, patient_id, provider, amount, currency,
    status, recorded_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)
ON CONFLICT (invoice_id) WHERE status = 'pending' DO NOTHING
RETURNING *
"""


async def open_checkout(principal: Principal, *, invoice_id: uuid.UUID,
                        return_url: str | None = None) -> tuple[Payment, bool]:
    """The invoice's pending online payment with what the patient's app needs to pay, and
    whether this call created it (a live one is returned again). 409 for an invoice that is not
    open or a clinic without an online provider or its credentials; 503 + Retry-After when the
    provider is away (the payment is then `failed`, nothing paid)."""
    _check_return_url(return_url)
    async with db.transaction():
        invoice = await visible_invoice(principal, invoice_id, "payments:create")
        if invoice.status is not InvoiceStatus.OPEN:
            raise Conflict(f"invoice is {invoice.status.value}; only an open invoice is paid",
                           resource_type="invoice", resource_id=invoice_id)
        owed = _owed(invoice.total, invoice.amount_paid)
        if owed <= 0:
            raise Conflict("nothing is owed on this invoice", resource_type="invoice",
                           resource_id=invoice_id)
        clinic = await load_clinic(invoice.clinic_id)
        provider = clinic.settings.billing.provider
        if provider is None:
            raise Conflict("this clinic takes no online payments; pay at the desk",
                           resource_type="payment")
        try:
            adapter(provider)
            creds = await get_credentials(clinic.id, provider)
        except ImportError:  # its adapter is not part of this build
            raise Conflict(f"{provider} payments are not available here",
                           resource_type="payment") from None
        except NotFound:
            raise Conflict(f"this clinic's {provider} account is not set up",
                           resource_type="payment") from None
        rows = await db.fetch(_INSERT_PENDING, uuid.uuid4(), invoice.clinic_id, invoice.id,
                              invoice.patient_id, provider, owed, invoice.currency,
                              principal.user_id)
        created = bool(rows)
        if not rows:
            rows = await db.fetch(
                "SELECT * FROM billing_payments WHERE invoice_id = $1 AND status = 'pending'",
                invoice.id)
        if not rows:  # settled between the two statements: ask again
            raise Conflict("the invoice's payment just changed; try again",
                           resource_type="payment")
        payment = payment_from_row(rows[0])
        if not created:
            await record(principal, action="payments:create", resource_type="payment",
                         resource_id=payment.id, clinic_id=payment.clinic_id,
                         detail={"invoice_id": str(invoice.id), "again": True})
    if payment.provider_order_id is not None:
        return payment, False
    number = invoice.number or str(invoice.id)
    try:
        order = await adapter(payment.provider).create_order(
            creds, reference=str(payment.id), amount=payment.amount, currency=payment.currency,
            description=f"Invoice {number}",
            return_url=return_url or f"{app_settings().public_url}/payments/{payment.id}")
    except ProviderError as exc:
        await _fail(principal, payment, f"provider unavailable: {exc}"[:300])
        raise ProviderUnavailable(f"{payment.provider} could not be reached; nothing was charged",
                                  retry_after=exc.retry_after, resource_type="payment",
                                  resource_id=payment.id) from None
    except ProviderRejected as exc:
        await _fail(principal, payment, f"provider refused: {exc}"[:300])
        raise invalid_field(exc.field or "invoice_id", f"{payment.provider} refused: {exc}") \
            from None
    async with db.transaction():
        rows = await db.fetch(
            """UPDATE billing_payments SET provider_order_id = $2, checkout = $3::jsonb,
                   updated_at = now()
               WHERE id = $1 AND provider_order_id IS NULL RETURNING *""",
            payment.id, order.order_id, msgspec.json.encode(order.checkout).decode())
        if not rows:  # a concurrent ask stored its order first: that one stands
            rows = await db.fetch("SELECT * FROM billing_payments WHERE id = $1", payment.id)
            return payment_from_row(rows[0]), False
        payment = payment_from_row(rows[0])
        await events_record(events.PaymentCreated, payment)
        await record(principal, action="payments:create", resource_type="payment",
                     resource_id=payment.id, clinic_id=payment.clinic_id,
                     detail={"invoice_id": str(payment.invoice_id), "provider": payment.provider,
                             "amount": payment.amount, "currency": payment.currency})
    return payment, created


def _check_return_url(url: str | None) -> None:
    """The provider sends the patient back only to carewire or an allowed app origin: a
    checkout link must not become a redirect to anywhere."""
    if url is None:
        return
    allowed = (app_settings().public_url, *app_settings().allowed_origins)
    if not any(url == base or url.startswith(base.rstrip("/") + "/") for base in allowed):
        raise invalid_field("return_url", "must be on carewire's address or an allowed origin")


async def _fail(actor: Principal | None, payment: Payment, reason: str) -> None:
    async with db.transaction():
        rows = await db.fetch(
            """UPDATE billing_payments SET status = 'failed', failure_reason = $2,
                   updated_at = now()
               WHERE id = $1 AND status = 'pending' RETURNING *""", payment.id, reason)
        if rows:
            failed = payment_from_row(rows[0])
            await events_record(events.PaymentFailed, failed)
            await record(actor, action="payments:failed", resource_type="payment",
                         resource_id=payment.id, clinic_id=payment.clinic_id,
                         detail={"reason": reason[:200]})


# --- the provider's word ----------------------------------------------------------------------

async def settle(payment: Payment, state: State, *, provider_payment_id: str | None = None,
                 failure_reason: str | None = None) -> str:
    """Apply what the provider says about `payment` (inside the caller's transaction), once:
    a short word for the inbox row. A success pays the invoice and schedules the visit waiting
    for it; a success for an invoice that can no longer take it (voided when the payment window
    expired, or paid another way meanwhile) is refunded automatically."""
    if state == "pending":
        return "pending"
    if state == "failed":
        rows = await db.fetch(
            """UPDATE billing_payments SET status = 'failed', failure_reason = $2,
                   updated_at = now()
               WHERE id = $1 AND status = 'pending' RETURNING *""",
            payment.id, (failure_reason or "declined at the provider")[:300])
        if not rows:
            return f"already_{payment.status.value}"
        failed = payment_from_row(rows[0])
        await events_record(events.PaymentFailed, failed)
        await record(None, action="payments:failed", resource_type="payment",
                     resource_id=payment.id, clinic_id=payment.clinic_id,
                     detail={"reason": (failure_reason or "declined")[:200]})
        return "failed"
    if payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELLED):
        return f"already_{payment.status.value}"  # as read: the guard below stands all the same
    invoice = await load_invoice(payment.invoice_id)
    appointment = (await load_appointment(invoice.appointment_id, lock=True)
                   if invoice.appointment_id else None)
    rows = await db.fetch(
        """UPDATE billing_payments SET status = 'succeeded', succeeded_at = now(),
               provider_payment_id = coalesce($2, provider_payment_id), failure_reason = NULL,
               updated_at = now()
           WHERE id = $1 AND status IN ('pending', 'failed') RETURNING *""",
        payment.id, provider_payment_id)
    if not rows:
        return f"already_{payment.status.value}"
    paid = payment_from_row(rows[0])
    await events_record(events.PaymentSucceeded, paid)
    await record(None, action="payments:succeeded", resource_type="payment",
                 resource_id=paid.id, clinic_id=paid.clinic_id,
                 detail={"provider": paid.provider, "amount": paid.amount,
                         "currency": paid.currency})
    try:
        invoice = await record_payment(invoice.id, paid.amount, paid.currency)
    except DomainError as exc:
        log.warning("payment %s succeeded but invoice %s cannot take it (%s): refunding",
                    paid.id, invoice.id, exc.message)
        await refunds.schedule_automatic_refund(
            paid.id, reason="paid after the invoice closed (payment window expired or paid "
                            "another way)")
        return "late_payment"
    if (appointment is not None and appointment.status is Status.PENDING_PAYMENT
            and invoice.status is InvoiceStatus.PAID):
        await apply_transition(None, appointment, Status.SCHEDULED, reason="paid",
                               permission=None)
    return "succeeded"

