"""Invoices: open_invoice (create + finalise, gapless numbers), record_payment (guarded),
voiding on expiry, and the REST routes. Real PostgreSQL and a live server; nothing patched."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
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
    c: dict[str, Any] = clinic_factory(billing=BILLING)
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


def test_invoice_events_go_to_the_patient_and_billing_roles(domain_layer: Any, db: Any,
                                                            house: dict[str, Any]) -> None:
    from domain.access import rooms
    from domain.access.roles import Role

    inv = _open(domain_layer, house)
    rows = db.fetch("SELECT type, data, audience FROM events WHERE data->>'invoice_id' = $1",
                    str(inv.id))
    assert [r["type"] for r in rows] == ["invoice.opened"]
    audience = set(rows[0]["audience"])
    assert rooms.user(inv.patient_id) in audience
    assert rooms.clinic_role(inv.clinic_id, Role.ACCOUNTANT) in audience
    assert rooms.clinic_role(inv.clinic_id, Role.DOCTOR) not in audience
    data = rows[0]["data"]
    data = __import__("json").loads(data) if isinstance(data, str) else data
    assert data["total"] == inv.total and data["status"] == "open"
    assert "Consultation" not in str(data)  # no line descriptions on the wire


def test_bad_lines_name_the_field(domain_layer: Any, house: dict[str, Any]) -> None:
    for lines, discount, field in [
        ([LineInput("x", 0, 100)], 0, "lines.0.quantity"),
        ([LineInput("", 1, 100)], 0, "lines.0.description"),
        ([LineInput("ok", 1, 100), LineInput("x", 1, -5)], 0, "lines.1.unit_amount"),
        ([LineInput("x", 1, 10**12)], 0, "lines.0.unit_amount"),
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


def test_a_rolled_back_finalisation_gives_its_number_back(domain_layer: Any,
                                                           house: dict[str, Any]) -> None:
    from domain import db

    first = _open(domain_layer, house)

    async def opened_then_failed() -> None:
        async with db.transaction():
            await invoices.open_invoice(None, house["clinic"],
                                        patient_id=uuid.UUID(house["patients"][0]["user_id"]),
                                        lines=[LineInput("Consultation", 1, 100)])
            raise RuntimeError("the caller's transaction fails after the invoice")

    with pytest.raises(RuntimeError):
        domain_layer.run(opened_then_failed())
    after = _open(domain_layer, house)
    assert int(after.number[-6:]) == int(first.number[-6:]) + 1


# --- REST, at the live server ------------------------------------------------------------------

def _draft(api: Any, c: dict[str, Any], token: str | None = None, **body: Any) -> Any:
    return api.as_(token or c["accountant"]["token"], "POST", "/billing/invoices", json={
        "clinic_id": c["id"], "patient_id": c["patients"][0]["user_id"],
        "lines": [{"description": "Consultation", "quantity": 1, "unit_amount": 50000}],
        **body})


async def _storm(base_url: str, token: str, paths: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url + "/api/v1", timeout=60) as client:
        return list(await asyncio.gather(*(
            client.post(p, headers={"Authorization": f"Bearer {token}"}) for p in paths)))


def test_50_concurrent_finalisations_are_gapless_and_unique(
        server: Any, api: Any, db: Any, clinic_factory: Any, member_factory: Any) -> None:
    c = clinic_factory(billing=BILLING)
    c["accountant"] = member_factory(c["id"], "ACCOUNTANT", tag="acct50")
    c["patients"] = [member_factory(c["id"], "PATIENT", tag="p50")]
    drafts = []
    for _ in range(50):
        r = _draft(api, c)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "draft" and r.json()["number"] is None
        drafts.append(r.json()["id"])
    answers = asyncio.run(_storm(server.base_url, c["accountant"]["token"],
                                 [f"/billing/invoices/{d}/finalize" for d in drafts]))
    assert [r.status_code for r in answers] == [200] * 50, [r.text for r in answers if
                                                             r.status_code != 200][:3]
    numbers = sorted(r.json()["number"] for r in answers)
    year = numbers[0][4:8]
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 51)]
    stored = db.fetch("SELECT number FROM billing_invoices WHERE clinic_id = $1 ORDER BY number",
                      uuid.UUID(c["id"]))
    assert [r["number"] for r in stored] == numbers
    # finalising again is a conflict, not a second number
    again = asyncio.run(_storm(server.base_url, c["accountant"]["token"],
                               [f"/billing/invoices/{drafts[0]}/finalize"] * 5))
    assert [r.status_code for r in again] == [409] * 5
    counter = db.fetch("SELECT last_number FROM billing_invoice_counters WHERE clinic_id = $1",
                       uuid.UUID(c["id"]))
    assert [r["last_number"] for r in counter] == [50]


def test_patients_see_their_own_and_no_one_sees_across_clinics(
        api: Any, house: dict[str, Any], clinic_factory: Any, member_factory: Any) -> None:
    mine = _draft(api, house).json()
    r = api.as_(house["accountant"]["token"], "POST", f"/billing/invoices/{mine['id']}/finalize")
    assert r.status_code == 200 and r.json()["status"] == "open"
    me, other = house["patients"]
    assert api.as_(me["token"], "GET", f"/billing/invoices/{mine['id']}").status_code == 200
    assert api.as_(other["token"], "GET", f"/billing/invoices/{mine['id']}").status_code == 404
    assert api.as_(other["token"], "GET",
                   f"/billing/invoices/{mine['id']}/pdf").status_code == 404
    elsewhere = clinic_factory()
    stranger = member_factory(elsewhere["id"], "ACCOUNTANT", tag="stranger")
    assert api.as_(stranger["token"], "GET", f"/billing/invoices/{mine['id']}").status_code == 404
    r = api.as_(stranger["token"], "POST", f"/billing/invoices/{mine['id']}/void",
                json={"reason": "x"})
    assert r.status_code == 404
    # the other patient's list is empty even when asking for me; mine holds it
    r = api.as_(other["token"], "GET", "/billing/invoices",
                params={"clinic_id": house["id"], "patient_id": me["user_id"]})
    assert r.status_code == 200 and r.json()["items"] == []
    r = api.as_(me["token"], "GET", "/billing/invoices", params={"clinic_id": house["id"]})
    assert mine["id"] in {i["id"] for i in r.json()["items"]}
    assert all(i["patient_id"] == me["user_id"] for i in r.json()["items"])
    # a patient cannot write
    assert _draft(api, house, me["token"]).status_code == 403


def test_list_pages_by_keyset(api: Any, house: dict[str, Any]) -> None:
    made = [_draft(api, house, patient_id=house["patients"][1]["user_id"]).json()["id"]
            for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"clinic_id": house["id"], "patient_id": house["patients"][1]["user_id"],
                  "status": "draft", "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = api.as_(house["accountant"]["token"], "GET", "/billing/invoices", params=params)
        assert r.status_code == 200, r.text
        seen += [i["id"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert seen[-5:] == made and len(seen) == len(set(seen))


def test_void_and_its_refusals(api: Any, domain_layer: Any, house: dict[str, Any]) -> None:
    token = house["accountant"]["token"]
    draft = _draft(api, house).json()
    r = api.as_(token, "POST", f"/billing/invoices/{draft['id']}/void", json={"reason": "typo"})
    assert r.status_code == 409  # a draft has no number to void
    opened = _open(domain_layer, house)
    r = api.as_(token, "POST", f"/billing/invoices/{opened.id}/void", json={"reason": ""})
    assert r.status_code in (400, 422) and "reason" in r.text
    r = api.as_(token, "POST", f"/billing/invoices/{opened.id}/void",
                json={"reason": "issued twice"})
    assert r.status_code == 200 and r.json()["status"] == "void"
    assert r.json()["number"] == opened.number  # the number stays used
    assert isinstance(_pay(domain_layer, opened.id, 100), Conflict)  # paying a void invoice
    paid = _open(domain_layer, house, lines=[LineInput("Visit", 1, 1000)])
    _pay(domain_layer, paid.id, paid.total)
    r = api.as_(token, "POST", f"/billing/invoices/{paid.id}/void", json={"reason": "x"})
    assert r.status_code == 409
    r = api.as_(house["desk"]["token"], "POST", f"/billing/invoices/{paid.id}/finalize")
    assert r.status_code == 409


def test_bad_drafts_name_the_field(api: Any, house: dict[str, Any]) -> None:
    cases = [
        ({"lines": [{"description": "x", "quantity": 0, "unit_amount": 1}]}, "lines.0.quantity"),
        ({"lines": [{"description": "x", "quantity": 1, "unit_amount": -1}]},
         "lines.0.unit_amount"),
        ({"lines": [{"description": "x", "quantity": 1, "unit_amount": 10**13}]},
         "lines.0.unit_amount"),
        ({"lines": [{"description": "x", "quantity": 1, "unit_amount": "1.5"}]}, "unit_amount"),
        ({"lines": []}, "lines"),
        ({"discount": 50001}, "discount"),
        ({"discount": -1}, "discount"),
        ({"patient_id": house["accountant"]["user_id"]}, "patient_id"),
        ({"patient_id": "nope"}, "patient_id"),
    ]
    for body, field in cases:
        r = _draft(api, house, **body)
        assert r.status_code in (400, 422), (body, r.status_code, r.text)
        assert field in r.text, (body, r.text)


def test_expiry_voids_the_unpaid_invoice(api: Any, db: Any, domain_layer: Any,
                                         sa_token: str, clinic_factory: Any,
                                         member_factory: Any) -> None:
    from domain import db as domain_db
    from domain.scheduling.commands import expire_unpaid
    from domain.scheduling.queries import load_appointment
    from tests.queue_fixtures import fresh_day, make_clinic

    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=2,
                    payment_required_types=["video"], billing=BILLING)
    day = fresh_day()
    booked = []
    for i in range(2):
        r = api.as_(c["desk"]["token"], "POST", "/appointments", json={
            "clinic_id": c["id"], "doctor_id": c["doctors"][0]["user_id"],
            "patient_id": c["patients"][i]["user_id"], "type": "video",
            "start": f"{day.isoformat()}T1{i}:00:00+05:30", "duration_minutes": 15})
        assert r.status_code == 201 and r.json()["status"] == "pending_payment", r.text
        booked.append(r.json())
    clinic = domain_layer.run(load_clinic(uuid.UUID(c["id"])))

    async def invoice_for(appointment: dict[str, Any]) -> Any:
        async with domain_db.transaction():
            return await invoices.open_invoice(
                None, clinic, patient_id=uuid.UUID(appointment["patient_id"]),
                lines=[LineInput("Video consultation", 1, 50000)],
                appointment_id=uuid.UUID(appointment["id"]))

    def opened(a: dict[str, Any]) -> Any:
        """The invoice the booking opened (billing's charge on booking), else one opened here."""
        rows = db.fetch("SELECT id FROM billing_invoices WHERE appointment_id = $1",
                        uuid.UUID(a["id"]))
        return (domain_layer.run(load_invoice(rows[0]["id"])) if rows
                else domain_layer.run(invoice_for(a)))

    unpaid, paid = (opened(a) for a in booked)
    _pay(domain_layer, paid.id, paid.total)
    db.fetch("UPDATE appointments SET payment_due_at = now() - interval '1 second' "
             "WHERE id = ANY($1::uuid[])", [uuid.UUID(a["id"]) for a in booked])
    domain_layer.run(expire_unpaid())
    assert domain_layer.run(load_appointment(unpaid.appointment_id)).status == "expired"
    assert domain_layer.run(load_invoice(unpaid.id)).status is InvoiceStatus.VOID
    assert domain_layer.run(load_invoice(paid.id)).status is InvoiceStatus.PAID
    voided = db.fetch("SELECT data FROM events WHERE type = 'invoice.voided' "
                      "AND data->>'invoice_id' = $1", str(unpaid.id))
    assert len(voided) == 1


def test_20_concurrent_payments_never_pay_more_than_the_total(domain_layer: Any,
                                                              house: dict[str, Any]) -> None:
    """Each of 20 transactions pays 3000 against a total of 11800: exactly 3 land, the 4th
    would pass the total; the rest are refused by rule, none by a server error."""
    from domain import db

    inv = _open(domain_layer, house, lines=[LineInput("Visit", 1, 10000)])
    assert inv.total == 11800

    async def one() -> Any:
        try:
            async with db.transaction():
                return await invoices.record_payment(inv.id, 3000, "INR")
        except (Invalid, Conflict) as exc:
            return exc

    async def storm() -> list[Any]:
        return list(await asyncio.gather(*(one() for _ in range(20))))

    results = domain_layer.run(storm())
    landed = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(landed) == 3 and len(refused) == 17
    assert all(isinstance(r, Invalid) and r.errors[0].field == "amount" for r in refused)
    final = domain_layer.run(load_invoice(inv.id))
    assert final.amount_paid == 9000 and final.status is InvoiceStatus.OPEN
    assert sorted(r.amount_paid for r in landed) == [3000, 6000, 9000]


def test_one_live_invoice_per_appointment(api: Any, domain_layer: Any, sa_token: str,
                                          clinic_factory: Any, member_factory: Any) -> None:
    from domain import db
    from tests.queue_fixtures import fresh_day, make_clinic

    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=1,
                    billing=BILLING)
    day = fresh_day()
    r = api.as_(c["desk"]["token"], "POST", "/appointments", json={
        "clinic_id": c["id"], "doctor_id": c["doctors"][0]["user_id"],
        "patient_id": c["patients"][0]["user_id"], "type": "in_person",
        "start": f"{day.isoformat()}T10:00:00+05:30", "duration_minutes": 15,
        "location_id": c["locations"][0]["id"]})
    assert r.status_code == 201, r.text
    clinic = domain_layer.run(load_clinic(uuid.UUID(c["id"])))

    async def invoice() -> Any:
        async with db.transaction():
            return await invoices.open_invoice(
                None, clinic, patient_id=uuid.UUID(c["patients"][0]["user_id"]),
                lines=[LineInput("Visit", 1, 100)], appointment_id=uuid.UUID(r.json()["id"]))

    first = domain_layer.run(invoice())
    with pytest.raises(Conflict):
        domain_layer.run(invoice())
    assert domain_layer.run(load_invoice(first.id)).status is InvoiceStatus.OPEN


def test_a_zero_total_is_paid_at_once(domain_layer: Any, house: dict[str, Any], db: Any) -> None:
    free = _open(domain_layer, house, lines=[LineInput("Covered follow-up", 1, 0)])
    assert (free.status, free.total, free.amount_paid) == (InvoiceStatus.PAID, 0, 0)
    assert free.number and free.paid_at == free.finalized_at
    kinds = db.fetch("SELECT type FROM events WHERE data->>'invoice_id' = $1", str(free.id))
    assert [k["type"] for k in kinds] == ["invoice.paid"]
