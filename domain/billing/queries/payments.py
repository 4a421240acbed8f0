"""Reads of payments, scoped by who asks: a patient their own, ACCOUNTANT / CLINIC_ADMIN /
RECEPTIONIST / SYSTEM_AUDITOR the clinic's (payments:read). A payment carries no location, so a
LOCATION_HEAD's `L` reaches only payments of their own. Lists are keyset pages."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from domain import db
from domain.access.matrix import Scope
from domain.access.policies import Grant, require
from domain.billing.models import Payment, PaymentStatus
from domain.errors import NotFound, invalid_field
from domain.paging import Page, check_limit, decode_cursor, encode_cursor
from domain.principal import Principal


def payment_from_row(row: dict[str, Any]) -> Payment:
    checkout = row["checkout"]
    return Payment(
        id=row["id"], clinic_id=row["clinic_id"], invoice_id=row["invoice_id"],
        patient_id=row["patient_id"], provider=row["provider"], amount=int(row["amount"]),
        currency=row["currency"], status=PaymentStatus(row["status"]),
        refunded=int(row["refunded"]),
        checkout=msgspec.json.decode(checkout, type=dict[str, str])
        if isinstance(checkout, str | bytes) else dict(checkout or {}),
        provider_order_id=row["provider_order_id"], provider_payment_id=row["provider_payment_id"],
        failure_reason=row["failure_reason"], succeeded_at=row["succeeded_at"],
        created_at=row["created_at"])


async def load_payment(payment_id: uuid.UUID, *, lock: bool = False) -> Payment:
    """A payment by id, whoever asks (callers check access); `lock`: FOR UPDATE."""
    rows = await db.fetch("SELECT * FROM billing_payments WHERE id = $1"
                          + (" FOR UPDATE" if lock else ""), payment_id)
    if not rows:
        raise NotFound("payment not found", resource_type="payment", resource_id=payment_id)
    return payment_from_row(rows[0])


def _covers(grant: Grant, payment: Payment) -> bool:
    return grant.scope is Scope.ANY or payment.patient_id == grant.user_id


async def visible_payment(principal: Principal, payment_id: uuid.UUID,
                          permission: str = "payments:read", *, lock: bool = False) -> Payment:
    """The payment when `principal` may see it with `permission`; 404 otherwise (another
    clinic's, another patient's)."""
    try:
        payment = await load_payment(payment_id, lock=lock)
    except NotFound:
        raise NotFound("payment not found", resource_type="payment",
                       resource_id=payment_id) from None
    grant = require(principal, permission, payment.clinic_id, resource_type="payment",
                    resource_id=payment_id)
    if not _covers(grant, payment):
        raise NotFound("payment not found", hidden=True, resource_type="payment",
                       resource_id=payment_id)
    return payment


async def get_payment(principal: Principal, payment_id: uuid.UUID) -> Payment:
    return await visible_payment(principal, payment_id)


async def list_payments(principal: Principal, *, clinic_id: uuid.UUID,
                        patient_id: uuid.UUID | None = None, invoice_id: uuid.UUID | None = None,
                        status: str | None = None, limit: int = 50,
                        cursor: str | None = None) -> Page[Payment]:
    """Oldest first (created_at, id). Patients (and anyone whose grant is their own) see their
    own payments whatever `patient_id` says."""
    grant = require(principal, "payments:read", clinic_id, resource_type="payment")
    check_limit(limit)
    after = decode_cursor(cursor)
    if status is not None and status not in {s.value for s in PaymentStatus}:
        raise invalid_field("status", "pending, succeeded, failed or cancelled")
    owner = patient_id if grant.scope is Scope.ANY else grant.user_id
    rows = await db.fetch(
        """SELECT * FROM billing_payments
           WHERE clinic_id = $1 AND ($2::uuid IS NULL OR patient_id = $2)
             AND ($3::uuid IS NULL OR invoice_id = $3) AND ($4::text IS NULL OR status = $4)
             AND ($5::timestamptz IS NULL OR (created_at, id) > ($5, $6))
           ORDER BY created_at, id LIMIT $7""",
        clinic_id, owner, invoice_id, status, after[0] if after else None,
        after[1] if after else None, limit + 1)
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return Page(items=[payment_from_row(r) for r in rows[:limit]],
                next_cursor=encode_cursor(last["created_at"], last["id"]) if last else None)
