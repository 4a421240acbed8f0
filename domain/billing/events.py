"""Billing events: ids, statuses and amounts only (never line descriptions or reasons), to the
patient's own room and to the clinic's roles that may read the clinic's billing."""

from __future__ import annotations

import uuid
from functools import lru_cache

from domain.access import rooms
from domain.access.matrix import Scope, scope_of
from domain.access.roles import Role
from domain.events.envelope import Category, DomainEvent


@lru_cache(maxsize=1)
def _billing_roles() -> tuple[Role, ...]:
    """Roles that read a clinic's payments beyond their own (the permission file decides)."""
    return tuple(r for r in Role if r is not Role.PATIENT
                 and scope_of("payments:read", r) not in (Scope.DENY, Scope.OWN))


def audience(clinic_id: uuid.UUID, patient_id: uuid.UUID) -> list[str]:
    return [rooms.user(patient_id), *(rooms.clinic_role(clinic_id, r) for r in _billing_roles())]


class InvoiceEvent(DomainEvent, frozen=True):
    CATEGORY = Category.BILLING
    invoice_id: uuid.UUID
    patient_id: uuid.UUID
    appointment_id: uuid.UUID | None
    number: str | None
    status: str
    currency: str
    total: int
    amount_paid: int


class InvoiceOpened(InvoiceEvent, frozen=True):
    TYPE = "invoice.opened"


class InvoicePaid(InvoiceEvent, frozen=True):
    TYPE = "invoice.paid"


class InvoiceVoided(InvoiceEvent, frozen=True):
    TYPE = "invoice.voided"


class PaymentEvent(DomainEvent, frozen=True):
    CATEGORY = Category.BILLING
    payment_id: uuid.UUID
    invoice_id: uuid.UUID
    patient_id: uuid.UUID
    provider: str
    status: str
    currency: str
    amount: int
    refunded: int


class PaymentCreated(PaymentEvent, frozen=True):
    TYPE = "payment.created"


class PaymentSucceeded(PaymentEvent, frozen=True):
    TYPE = "payment.succeeded"


class PaymentFailed(PaymentEvent, frozen=True):
    TYPE = "payment.failed"


class RefundEvent(DomainEvent, frozen=True):
    CATEGORY = Category.BILLING
    refund_id: uuid.UUID
    payment_id: uuid.UUID
    patient_id: uuid.UUID
    status: str
    currency: str
    amount: int


class RefundCreated(RefundEvent, frozen=True):
    TYPE = "refund.created"


class RefundSucceeded(RefundEvent, frozen=True):
    TYPE = "refund.succeeded"


class RefundFailed(RefundEvent, frozen=True):
    TYPE = "refund.failed"


class SubscriptionEvent(DomainEvent, frozen=True):
    CATEGORY = Category.BILLING
    subscription_id: uuid.UUID
    plan_id: uuid.UUID
    patient_id: uuid.UUID
    status: str


class SubscriptionCreated(SubscriptionEvent, frozen=True):
    TYPE = "subscription.created"


class SubscriptionRenewed(SubscriptionEvent, frozen=True):
    TYPE = "subscription.renewed"


class SubscriptionStatusChanged(SubscriptionEvent, frozen=True):
    TYPE = "subscription.status_changed"
    previous_status: str
