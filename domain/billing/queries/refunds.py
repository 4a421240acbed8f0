"""Reading refunds: a payment's, a clinic's (keyset pages, newest last), one by id.

Who sees what follows `refunds:read`: `*` the clinic's, `L` those of visits at the caller's
location, `O` the patient's own (a refund belongs to the patient of its payment). Another
clinic's, or one out of reach, is 404."""

from __future__ import annotations

import uuid
from typing import Any

from domain import db
from domain.access.matrix import Scope
from domain.access.policies import Grant, require
from domain.billing.models import Refund, RefundStatus
from domain.errors import NotFound, invalid_field
from domain.paging import Page, check_limit, decode_cursor, encode_cursor
from domain.principal import Principal
from domain.scheduling.queries import load_appointment

#: A refund with what its reach is decided by: the payment's patient and the visit it paid for.
_SELECT = """
SELECT r.*, p.patient_id, i.appointment_id
FROM billing_refunds r
JOIN billing_payments p ON p.id = r.payment_id
JOIN billing_invoices i ON i.id = p.invoice_id
"""


def refund_from_row(row: dict[str, Any]) -> Refund:
    return Refund(id=row["id"], clinic_id=row["clinic_id"], payment_id=row["payment_id"],
                  amount=row["amount"], currency=row["currency"],
                  status=RefundStatus(row["status"]), reason=row["reason"],
                  automatic=row["automatic"], provider_refund_id=row["provider_refund_id"],
                  requested_by=row["requested_by"], created_at=row["created_at"])


def _page(rows: list[dict[str, Any]], limit: int) -> Page[Refund]:
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return Page(items=[refund_from_row(r) for r in rows[:limit]],
                next_cursor=encode_cursor(last["created_at"], last["id"]) if last else None)


async def _check_reach(grant: Grant, *, patient_id: uuid.UUID,
                       appointment_id: uuid.UUID | None, object_id: uuid.UUID) -> None:
    """The object check of a payment (or its refund): its patient is its owner; its place is
    the visit's location, read through scheduling only for a location-bound caller."""
    location_id = None
    if grant.scope is Scope.LOCATION and appointment_id is not None:
        location_id = (await load_appointment(appointment_id)).location_id
    grant.check_object(owner_id=patient_id, location_id=location_id, object_id=object_id)


async def list_payment_refunds(principal: Principal, payment_id: uuid.UUID, *, limit: int = 50,
                               cursor: str | None = None) -> Page[Refund]:
    """A payment's refunds, oldest first (one statement: the payment and the page)."""
    check_limit(limit)
    after = decode_cursor(cursor)
    rows = await db.fetch(
        """SELECT p.clinic_id AS payment_clinic_id, p.patient_id AS payment_patient_id,
                  i.appointment_id AS payment_appointment_id, r.*
           FROM billing_payments p
           JOIN billing_invoices i ON i.id = p.invoice_id
           LEFT JOIN LATERAL (
               SELECT * FROM billing_refunds r WHERE r.payment_id = p.id
                 AND ($2::timestamptz IS NULL OR (r.created_at, r.id) > ($2, $3))
               ORDER BY r.created_at, r.id LIMIT $4) r ON true
           WHERE p.id = $1
           ORDER BY r.created_at, r.id""",
        payment_id, after[0] if after else None, after[1] if after else None, limit + 1,
    )
    if not rows:
        raise NotFound("payment not found", resource_type="payment", resource_id=payment_id)
    head = rows[0]
    grant = require(principal, "refunds:read", head["payment_clinic_id"], resource_type="payment",
                    resource_id=payment_id)
    await _check_reach(grant, patient_id=head["payment_patient_id"],
                       appointment_id=head["payment_appointment_id"], object_id=payment_id)
    return _page([r for r in rows if r["id"] is not None], limit)


async def get_refund(principal: Principal, refund_id: uuid.UUID) -> Refund:
    rows = await db.fetch(_SELECT + "WHERE r.id = $1", refund_id)
    if not rows:
        raise NotFound("refund not found", resource_type="refund", resource_id=refund_id)
    row = rows[0]
    grant = require(principal, "refunds:read", row["clinic_id"], resource_type="refund",
                    resource_id=refund_id)
    await _check_reach(grant, patient_id=row["patient_id"], appointment_id=row["appointment_id"],
                       object_id=refund_id)
    return refund_from_row(row)


async def list_refunds(principal: Principal, clinic_id: uuid.UUID, *,
                       status: str | None = None, limit: int = 50,
                       cursor: str | None = None) -> Page[Refund]:
    """A clinic's refunds, oldest first; a patient gets their own. A location head's list is
    their own too, as for invoices and payments (billing rows carry no location, and the
    visit's place is scheduling's to read); one refund is checked against its visit's place."""
    grant = require(principal, "refunds:read", clinic_id, resource_type="refund")
    check_limit(limit)
    after = decode_cursor(cursor)
    if status is not None and status not in {s.value for s in RefundStatus}:
        raise invalid_field("status", "pending, succeeded or failed")
    owner = grant.user_id if grant.scope in (Scope.OWN, Scope.LOCATION) else None
    rows = await db.fetch(
        _SELECT + """WHERE r.clinic_id = $1 AND ($2::text IS NULL OR r.status = $2)
             AND ($3::uuid IS NULL OR p.patient_id = $3)
             AND ($4::timestamptz IS NULL OR (r.created_at, r.id) > ($4, $5))
           ORDER BY r.created_at, r.id LIMIT $6""",
        clinic_id, status, owner, after[0] if after else None,
        after[1] if after else None, limit + 1,
    )
    return _page(rows, limit)
