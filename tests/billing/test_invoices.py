"""Invoices: open_invoice (create + finalise, gapless numbers), record_payment (guarded),
voiding on expiry, and the REST routes. Real PostgreSQL and a live server; nothing patched."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain.billing.commands import invoices
from domain.billing.models import InvoiceStatus, LineInput
from domain.billing.queries.invoices import load_invoice
from domain.errors import Conflict, Invalid
from domain.tenancy.queries import load_clinic

BILLING = {"currency": "INR", "tax_rate_bp": 1800, "tax_label": "GST",
           "legal_name": "Asha Clinics Pvt Ltd", "address": "12 MG Road, Pune",
           "tax_id": "27AAACA1234A1Z5", "invoice_due_days": 7, "fees": {"video": 50000}}


@pytest.fixture(scope="module")
def house(clinic_factory: Any, member_factory: Any, domain_layer: Any) -> dict[str, Any]:
    c = clinic_factory(billing=BILLING)
    c["cid"] = uuid.UUID(c["id"])
    c["accountant"] = member_factory(c["id"], "ACCOUNTANT", tag="acct")
    c["desk"] = member_factory(c["id"], "RECEPTIONIST", location_id=c["locations"][0]["id"],
                               tag="desk")
    c["patients"] = [member_factory(c["id"], "PATIENT", tag=f"ipat{i}") for i in range(2)]
    c["clinic"] = domain_layer.run(load_clinic(c["cid"]))
    return c


def _open(layer: Any, c: dict[str, Any], *, patient: int = 0, lines: list[LineInput] | None = None,
          discount: int = 0) -> Any:
    from domain import db

    async def go() -> Any:
        async with db.transaction():
            return await invoices.open_invoice(
                None, c["clinic"], patient_id=uuid.UUID(c["patients"][patient]["user_id"]),
                lines=[LineInput("Consultation", 1, 50000)] if lines is None else lines, discount=discount)

    return layer.run(go())


def _pay(layer: Any, invoice_id: uuid.UUID, amount: int, currency: str = "INR") -> Any:
    from domain import db

    async def go() -> Any:
        async with db.transaction():
            return await invoices.record_payment(invoice_id, amount, currency)

    result, _ = layer.count(go())
    return result


def test_open_invoice_numbers_and_totals(domain_layer: Any, house: dict[str, Any]) -> None:
    a = _open(domain_layer, house, lines=[LineInput("Consultation", 1, 50000),
                                          LineInput("Dressing", 3, 3333)], discount=999)
    b = _open(domain_layer, house)
    assert a.status is InvoiceStatus.OPEN and a.currency == "INR"
    assert a.subtotal == 59999 and a.discount == 999
    assert a.tax == (59000 * 1800 + 5000) // 10000 == 10620
    assert a.total == 59000 + 10620 and a.tax_label == "GST"
    year = a.finalized_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Kolkata")).year
    assert a.number == f"INV-{year}-000001" and b.number == f"INV-{year}-000002"
    assert a.due_at is not None and (a.due_at - a.finalized_at).days == 7
    assert [x.amount for x in a.lines] == [50000, 9999]
    stored = domain_layer.run(load_invoice(a.id))
    assert stored == a


def test_bad_lines_name_the_field(domain_layer: Any, house: dict[str, Any]) -> None:
    for lines, discount, field in [
        ([LineInput("x", 0, 100)], 0, "lines[0].quantity"),
        ([LineInput("", 1, 100)], 0, "lines[0].description"),
        ([LineInput("ok", 1, 100), LineInput("x", 1, -5)], 0, "lines[1].unit_amount"),
        ([LineInput("x", 1, 10**12)], 0, "lines[0].unit_amount"),
        ([LineInput("x", 1, 100)], 101, "discount"),
        ([LineInput("x", 1, 100)], -1, "discount"),
        ([], 0, "lines"),
    ]:
        with pytest.raises(Invalid) as err:
            _open(domain_layer, house, lines=lines, discount=discount)
        assert err.value.errors[0].field == field


def test_record_payment_partial_then_paid(domain_layer: Any, house: dict[str, Any]) -> None:
    inv = _open(domain_layer, house, lines=[LineInput("Visit", 1, 10000)])
    assert inv.total == 11800
    part = _pay(domain_layer, inv.id, 8000)
    assert part.status is InvoiceStatus.OPEN and part.amount_paid == 8000
    over = _pay(domain_layer, inv.id, 3801)
    assert isinstance(over, Invalid) and over.errors[0].field == "amount"
    other = _pay(domain_layer, inv.id, 100, "USD")
    assert isinstance(other, Invalid) and other.errors[0].field == "currency"
    for bad in (0, -5):
        refused = _pay(domain_layer, inv.id, bad)
        assert isinstance(refused, Invalid) and refused.errors[0].field == "amount"
    paid = _pay(domain_layer, inv.id, 3800)
    assert paid.status is InvoiceStatus.PAID and paid.amount_paid == 11800
    assert paid.paid_at is not None
    again = _pay(domain_layer, inv.id, 1)
    assert isinstance(again, Conflict)
