"""Reads of invoices, scoped by what the caller may see: a patient their own, the clinic's
billing roles the clinic's; another clinic's invoice is 404."""

from __future__ import annotations

import json
import uuid
from typing import Any

from domain import db
from domain.access.matrix import Scope
from domain.access.policies import require
from domain.audit.commands import record
from domain.billing.models import Invoice, InvoiceLine, InvoiceStatus
from domain.errors import NotFound
from domain.paging import Page, check_limit, decode_cursor, encode_cursor
from domain.principal import Principal

#: An invoice and its lines in one statement (the lines as a JSON array, in position order).
SELECT = """
SELECT i.*, COALESCE((SELECT json_agg(json_build_object('description', l.description,
        'quantity', l.quantity, 'unit_amount', l.unit_amount, 'amount', l.amount)
        ORDER BY l.position) FROM billing_invoice_lines l WHERE l.invoice_id = i.id), '[]')
    AS lines
FROM billing_invoices i
"""

#: The same columns for rows a CTE named `i` returns (after an INSERT or UPDATE).
LINES_OF_I = """COALESCE((SELECT json_agg(json_build_object('description', l.description,
        'quantity', l.quantity, 'unit_amount', l.unit_amount, 'amount', l.amount)
        ORDER BY l.position) FROM billing_invoice_lines l WHERE l.invoice_id = i.id), '[]')"""


def invoice_from_row(row: dict[str, Any], lines: list[InvoiceLine] | None = None) -> Invoice:
    raw = row.get("lines")
    if lines is None:
        items = json.loads(raw) if isinstance(raw, str) else (raw or [])
        lines = [InvoiceLine(**item) for item in items]
    return Invoice(
        id=row["id"], clinic_id=row["clinic_id"], patient_id=row["patient_id"],
        appointment_id=row["appointment_id"], subscription_id=row["subscription_id"],
        number=row["number"], status=InvoiceStatus(row["status"]), currency=row["currency"],
        subtotal=row["subtotal"], discount=row["discount"], tax_rate_bp=row["tax_rate_bp"],
        tax_label=row["tax_label"], tax=row["tax"], total=row["total"],
        amount_paid=row["amount_paid"], due_at=row["due_at"], finalized_at=row["finalized_at"],
        paid_at=row["paid_at"], lines=lines, created_at=row["created_at"],
    )


async def load_invoice(invoice_id: uuid.UUID, *, lock: bool = False) -> Invoice:
    """`lock`: FOR NO KEY UPDATE (writers of the invoice wait; payments referencing it do
    not)."""
    rows = await db.fetch(SELECT + "WHERE i.id = $1" + (" FOR NO KEY UPDATE OF i" if lock else ""),
                          invoice_id)
    if not rows:
        raise NotFound("invoice not found", resource_type="invoice", resource_id=invoice_id)
    return invoice_from_row(rows[0])


async def pdf_key_of(invoice_id: uuid.UUID) -> str | None:
    rows = await db.fetch("SELECT pdf_key FROM billing_invoices WHERE id = $1", invoice_id)
    return rows[0]["pdf_key"] if rows else None


async def visible_invoice(principal: Principal, invoice_id: uuid.UUID, permission: str, *,
                          lock: bool = False) -> Invoice:
    """Another clinic's invoice, and a patient's who is not its patient, are 404 alike.
    Invoices have no location: a location-scoped role sees only invoices that are its own."""
    try:
        invoice = await load_invoice(invoice_id, lock=lock)
    except NotFound:
        raise NotFound("invoice not found", resource_type="invoice",
                       resource_id=invoice_id) from None
    grant = require(principal, permission, invoice.clinic_id, resource_type="invoice",
                    resource_id=invoice_id)
    grant.check_object(owner_id=invoice.patient_id, location_id=None, object_id=invoice_id)
    return invoice


async def list_invoices(
    principal: Principal, *, clinic_id: uuid.UUID, patient_id: uuid.UUID | None = None,
    status: InvoiceStatus | None = None, limit: int = 50, cursor: str | None = None,
) -> Page[Invoice]:
    """Keyset page by (created_at, id). A patient (own scope) sees only their own, whatever
    `patient_id` says."""
    grant = require(principal, "invoices:read", clinic_id, resource_type="invoice")
    check_limit(limit)
    after = decode_cursor(cursor)
    own = grant.scope in (Scope.OWN, Scope.LOCATION)
    rows = await db.fetch(
        SELECT + """WHERE i.clinic_id = $1
          AND ($2::uuid IS NULL OR i.patient_id = $2)
          AND ($3::text IS NULL OR i.status = $3)
          AND (NOT $4 OR i.patient_id = $5)
          AND ($6::timestamptz IS NULL OR (i.created_at, i.id) > ($6, $7))
        ORDER BY i.created_at, i.id LIMIT $8""",
        clinic_id, patient_id, status.value if status else None, own, principal.user_id,
        after[0] if after else None, after[1] if after else None, limit + 1)
    items = [invoice_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(rows[limit - 1]["created_at"],
                                                       rows[limit - 1]["id"]) if more else None)


async def get_invoice(principal: Principal, invoice_id: uuid.UUID) -> Invoice:
    """One invoice with its lines; the read is audited (it names a patient and what they were
    billed for)."""
    invoice = await visible_invoice(principal, invoice_id, "invoices:read")
    await record(principal, action="invoices:read", resource_type="invoice",
                 resource_id=invoice_id, clinic_id=invoice.clinic_id)
    return invoice
