"""A paid invoice and its payment as rows: the same rows the desk route leaves behind (invoice
paid in full, payment succeeded), for what REST cannot set up cheaply: a payment that failed,
an online payment of a clinic with no credentials stored, and the shared suites (authorization
matrix, bad input) whose clinics take no payments. Refund tests otherwise pay over REST."""

from __future__ import annotations

import random
import uuid
from typing import Any


def paid(db: Any, clinic_id: str, patient_id: str, amount: int, *, provider: str = "cash",
         currency: str = "INR", appointment_id: str | None = None,
         status: str = "succeeded") -> str:
    """A payment of `amount` minor units for a paid invoice; its id."""
    invoice_id, payment_id = uuid.uuid4(), uuid.uuid4()
    number = f"INV-2026-{random.randrange(10**8, 10**9)}"
    db.fetch(
        """INSERT INTO billing_invoices (id, clinic_id, patient_id, appointment_id, number, status,
               currency, subtotal, total, amount_paid, finalized_at, paid_at)
           VALUES ($1, $2::uuid, $3::uuid, $4::uuid, $5, 'paid', $6, $7, $7, $7, now(), now())""",
        invoice_id, clinic_id, patient_id, appointment_id, number, currency, amount)
    online = provider not in ("cash", "card_terminal")
    db.fetch(
        """INSERT INTO billing_payments (id, clinic_id, invoice_id, patient_id, provider,
               provider_order_id, provider_payment_id, amount, currency, status, succeeded_at)
           VALUES ($1, $2::uuid, $3, $4::uuid, $5, $6, $7, $8, $9, $10,
                   CASE WHEN $10 = 'succeeded' THEN now() END)""",
        payment_id, clinic_id, invoice_id, patient_id, provider,
        f"order_{payment_id.hex[:12]}" if online else None,
        f"pay_{payment_id.hex[:12]}" if online else None, amount, currency, status)
    return str(payment_id)
