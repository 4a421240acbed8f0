"""What billing returns, and its vocabulary. Amounts are integer minor units of `currency`."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Literal

import msgspec


class Interval(enum.StrEnum):
    MONTH = "month"
    YEAR = "year"


class SubscriptionStatus(enum.StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


#: A subscription in one of these holds its quota and counts as the patient's plan.
LIVE_SUBSCRIPTION = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE,
                     SubscriptionStatus.PAST_DUE)


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


#: Online providers (a clinic's `settings.billing.provider`) and desk methods.
ONLINE_PROVIDERS = ("stripe", "razorpay", "phonepe", "paypal")
DESK_METHODS = ("cash", "card_terminal")
OnlineProvider = Literal["stripe", "razorpay", "phonepe", "paypal"]
DeskMethod = Literal["cash", "card_terminal"]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    price: int
    currency: str
    interval: Interval
    trial_days: int
    #: appointment type -> visits per period; None: unlimited. A type left out is not covered.
    quotas: dict[str, int | None]
    active: bool
    created_at: datetime


class QuotaUse(msgspec.Struct, frozen=True, kw_only=True):
    appointment_type: str
    #: None: unlimited.
    quota: int | None
    used: int


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    plan_id: uuid.UUID
    patient_id: uuid.UUID
    status: SubscriptionStatus
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    usage: list[QuotaUse] = []
    created_at: datetime


class LineInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One line of a new invoice, as callers (and POST /billing/invoices) give it; the amount
    is computed (quantity x unit_amount), never taken from the caller."""

    description: str
    quantity: int
    unit_amount: int


class InvoiceLine(msgspec.Struct, frozen=True, kw_only=True):
    description: str
    quantity: int
    unit_amount: int
    amount: int


class Invoice(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    appointment_id: uuid.UUID | None
    subscription_id: uuid.UUID | None
    #: INV-2026-000042 once finalised; None while a draft.
    number: str | None
    status: InvoiceStatus
    currency: str
    subtotal: int
    discount: int
    tax_rate_bp: int
    tax_label: str
    tax: int
    total: int
    amount_paid: int
    due_at: datetime | None
    finalized_at: datetime | None
    paid_at: datetime | None
    lines: list[InvoiceLine] = []
    created_at: datetime


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    invoice_id: uuid.UUID
    patient_id: uuid.UUID
    provider: str
    amount: int
    currency: str
    status: PaymentStatus
    refunded: int
    #: What the patient's app needs to pay: {"client_secret"} (Stripe), {"order_id", "key_id"}
    #: (Razorpay), {"redirect_url"} (PhonePe), {"approve_url", "order_id"} (PayPal); {} at the desk.
    checkout: dict[str, str]
    provider_order_id: str | None
    provider_payment_id: str | None
    failure_reason: str | None
    succeeded_at: datetime | None
    created_at: datetime


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    currency: str
    status: RefundStatus
    reason: str
    automatic: bool
    provider_refund_id: str | None
    requested_by: uuid.UUID | None
    created_at: datetime
