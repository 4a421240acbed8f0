"""Paying an invoice: at the desk (cash, card terminal) and online through the clinic's provider
(a local server speaking its API), against the live server. What is asserted is what a clinic
relies on: the invoice and the visit move only when money arrived, never above what is owed,
nothing is paid when the provider is away, and one pending payment per invoice however often
the app asks."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.billing.conftest import FEES, World

PROBLEM = "application/problem+json"


def desk_pay(w: World, invoice_id: str, amount: int, *, method: str = "cash",
             who: str = "desk") -> httpx.Response:
    return w.api.as_(w[who]["token"], "POST", "/billing/payments",
                     json={"invoice_id": invoice_id, "method": method, "amount": amount})


def fields(r: httpx.Response) -> list[str]:
    assert r.headers["content-type"].startswith(PROBLEM), r.text
    return [e["field"] for e in r.json().get("errors", [])]


# --- the desk ---------------------------------------------------------------------------------

def test_a_video_booking_opens_an_invoice_for_the_fee(desk_world: World) -> None:
    a = desk_world.book("video")
    assert a["status"] == "pending_payment" and a["invoice_id"]
    invoice = desk_world.invoice(a["invoice_id"])
    assert (invoice["status"], invoice["total"], invoice["amount_paid"]) == \
        ("open", FEES["video"], 0)


def test_desk_payments_pay_the_invoice_and_schedule_the_visit(desk_world: World) -> None:
    w = desk_world
    a = w.book("video")
    r = desk_pay(w, a["invoice_id"], 20_000, method="card_terminal")
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["status"], first["provider"], first["amount"], first["currency"]) == \
        ("succeeded", "card_terminal", 20_000, "INR")
    assert w.invoice(a["invoice_id"])["status"] == "open"
    assert w.appointment_status(a["id"]) == "pending_payment"  # not paid in full yet
    r = desk_pay(w, a["invoice_id"], FEES["video"] - 20_000)
    assert r.status_code == 201, r.text
    invoice = w.invoice(a["invoice_id"])
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", FEES["video"])
    assert w.appointment_status(a["id"]) == "scheduled"
    audited = w.db.fetch("SELECT count(*) AS n FROM audit_log WHERE action = 'payments:create' "
                         "AND resource_id = $1", first["id"])
    assert audited[0]["n"] == 1


def test_desk_payment_above_what_is_owed_is_refused_naming_amount(desk_world: World) -> None:
    w = desk_world
    a = w.book("video")
    r = desk_pay(w, a["invoice_id"], FEES["video"] + 1)
    assert r.status_code == 400 and "amount" in fields(r), r.text
    for bad in (0, -5, 10**12, 1.5, "x"):
        r = desk_pay(w, a["invoice_id"], bad)  # type: ignore[arg-type]
        assert r.status_code == 400 and "amount" in fields(r), (bad, r.text)
    r = w.api.as_(w["desk"]["token"], "POST", "/billing/payments",
                  json={"invoice_id": a["invoice_id"], "method": "cheque", "amount": 10})
    assert r.status_code == 400 and "method" in fields(r), r.text
    r = w.api.as_(w["desk"]["token"], "POST", "/billing/payments",
                  json={"invoice_id": a["invoice_id"], "method": "cash"})
    assert r.status_code == 400 and "amount" in fields(r), r.text
    assert w.invoice(a["invoice_id"])["amount_paid"] == 0  # nothing half done
    assert not w.db.fetch("SELECT 1 FROM billing_payments WHERE invoice_id = $1",
                          uuid.UUID(a["invoice_id"]))


def test_patients_do_not_record_desk_payments_and_strangers_see_404(desk_world: World,
                                                                     clinic_factory,
                                                                     member_factory) -> None:
    w = desk_world
    a = w.book("video")
    assert desk_pay(w, a["invoice_id"], 100, who="patient").status_code == 403
    assert desk_pay(w, a["invoice_id"], 100, who="other_patient").status_code == 404
    assert desk_pay(w, a["invoice_id"], 100, who="doctor").status_code == 403
    other = clinic_factory()
    stranger = member_factory(other["id"], "RECEPTIONIST", tag="stranger")
    r = w.api.as_(stranger["token"], "POST", "/billing/payments",
                  json={"invoice_id": a["invoice_id"], "method": "cash", "amount": 100})
    assert r.status_code == 404, r.text
    assert w.invoice(a["invoice_id"])["amount_paid"] == 0


def test_concurrent_desk_payments_never_exceed_the_invoice(billing_server, desk_world: World
                                                           ) -> None:
    w = desk_world
    a = w.book("video")
    part = FEES["video"] // 4  # 20 tries of a quarter: exactly 4 may succeed

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=billing_server.base_url + "/api/v1",
                                     timeout=60) as client:
            return await asyncio.gather(*(client.post(
                "/billing/payments", json={"invoice_id": a["invoice_id"], "method": "cash",
                                           "amount": part},
                headers={"Authorization": f"Bearer {w['desk']['token']}"}) for _ in range(20)))

    answers = asyncio.run(storm())
    codes = [r.status_code for r in answers]
    assert not [c for c in codes if c >= 500], codes
    assert codes.count(201) == 4, codes
    invoice = w.invoice(a["invoice_id"])
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", FEES["video"])
    assert w.appointment_status(a["id"]) == "scheduled"


def test_payment_lists_are_scoped(desk_world: World) -> None:
    w = desk_world
    a = w.book("video")
    mine = desk_pay(w, a["invoice_id"], 1_000).json()
    b = w.book("video", patient="other_patient")
    theirs = desk_pay(w, b["invoice_id"], 1_000).json()
    r = w.api.as_(w["patient"]["token"], "GET", "/billing/payments", params={"clinic_id": w.id})
    assert r.status_code == 200, r.text
    ids = {p["id"] for p in r.json()["items"]}
    assert mine["id"] in ids and theirs["id"] not in ids
    r = w.api.as_(w["accountant"]["token"], "GET", "/billing/payments",
                  params={"clinic_id": w.id, "limit": 200})
    ids = {p["id"] for p in r.json()["items"]}
    assert {mine["id"], theirs["id"]} <= ids
    assert w.api.as_(w["patient"]["token"], "GET",
                     f"/billing/payments/{theirs['id']}").status_code == 404
    got = w.api.as_(w["patient"]["token"], "GET", f"/billing/payments/{mine['id']}")
    assert got.status_code == 200 and got.json()["amount"] == 1_000
    r = w.api.as_(w["accountant"]["token"], "GET", "/billing/payments",
                  params={"clinic_id": w.id, "limit": 1})
    assert r.json()["next_cursor"]
    r2 = w.api.as_(w["accountant"]["token"], "GET", "/billing/payments",
                   params={"clinic_id": w.id, "limit": 1, "cursor": r.json()["next_cursor"]})
    assert r2.json()["items"][0]["id"] != r.json()["items"][0]["id"]
    assert w.api.as_(w["doctor"]["token"], "GET", "/billing/payments",
                     params={"clinic_id": w.id}).status_code == 403


def test_online_checkout_without_a_provider_is_a_conflict(desk_world: World) -> None:
    a = desk_world.book("video")
    r = desk_world.checkout(a["invoice_id"])
    assert r.status_code == 409, r.text
    assert desk_world.invoice(a["invoice_id"])["amount_paid"] == 0




# --- online, through each provider's fake ----------------------------------------------------

CHECKOUT_KEYS = {"stripe": {"client_secret"}, "razorpay": {"order_id", "key_id"},
                 "phonepe": {"redirect_url"}, "paypal": {"approve_url", "order_id"}}


def clear_faults(fake: object) -> None:
    """Faults a retrying client did not use up (the Stripe SDK retries twice) are dropped."""
    clear = getattr(fake, "clear_faults", None)
    if clear is not None:
        clear()


def test_checkout_opens_one_order_per_invoice(provider_world: World) -> None:
    w = provider_world
    a = w.book("video")
    r = w.checkout(a["invoice_id"])
    assert r.status_code == 201, r.text
    payment = r.json()
    assert (payment["status"], payment["provider"], payment["amount"]) == \
        ("pending", w.provider, FEES["video"])
    assert set(payment["checkout"]) >= CHECKOUT_KEYS[w.provider] and payment["provider_order_id"]
    again = w.checkout(a["invoice_id"])
    assert again.status_code == 200 and again.json()["id"] == payment["id"]
    assert again.json()["checkout"] == payment["checkout"]
    assert w.invoice(a["invoice_id"])["amount_paid"] == 0  # nothing paid by opening an order
    # the app is no place to ask for another amount
    r = w.api.as_(w["patient"]["token"], "POST", "/billing/payments",
                  json={"invoice_id": a["invoice_id"], "amount": 1})
    assert r.status_code == 400 and "amount" in fields(r)


def test_concurrent_checkouts_share_one_payment(billing_server, provider_world: World) -> None:
    w = provider_world
    a = w.book("video")

    async def storm() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=billing_server.base_url + "/api/v1",
                                     timeout=60) as client:
            return await asyncio.gather(*(client.post(
                "/billing/payments", json={"invoice_id": a["invoice_id"]},
                headers={"Authorization": f"Bearer {w['patient']['token']}"})
                for _ in range(10)))

    answers = asyncio.run(storm())
    assert not [r.text for r in answers if r.status_code >= 500]
    assert {r.status_code for r in answers} <= {200, 201}
    assert len({r.json()["id"] for r in answers}) == 1
    rows = w.db.fetch("SELECT status, provider_order_id FROM billing_payments "
                      "WHERE invoice_id = $1", uuid.UUID(a["invoice_id"]))
    assert len(rows) == 1 and rows[0]["provider_order_id"]


def test_provider_down_or_slow_is_503_with_retry_after_and_nothing_paid(
        provider_world: World) -> None:
    w = provider_world
    for fault in ("fail", "hang"):
        a = w.book("video")
        # a fake that cannot drop unused faults gets one: what a non-retrying client uses
        n = 10 if hasattr(w.fake, "clear_faults") else 1
        if fault == "fail":
            w.fake.fail_next(n, 500)
        else:
            w.fake.hang_next(n)
        try:
            r = w.checkout(a["invoice_id"])
        finally:
            clear_faults(w.fake)
        assert r.status_code in (502, 503), r.text
        assert int(r.headers["retry-after"]) > 0 and fields(r) == []
        [row] = w.db.fetch("SELECT status FROM billing_payments WHERE invoice_id = $1",
                           uuid.UUID(a["invoice_id"]))
        assert row["status"] == "failed"
        assert w.invoice(a["invoice_id"])["amount_paid"] == 0
        assert w.appointment_status(a["id"]) == "pending_payment"
        r = w.checkout(a["invoice_id"])  # the provider is back: a new attempt opens
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text


def test_credentials_go_in_and_come_back_masked(provider_world: World, clinic_factory,
                                                member_factory) -> None:
    w = provider_world
    path = f"/clinics/{w.id}/billing/credentials/{w.provider}"
    r = w.api.as_(w["admin"]["token"], "GET", path)
    assert r.status_code == 200, r.text
    shown = r.json()["credentials"]
    assert set(shown) == set(w.fake.credentials())
    for name, value in w.fake.credentials().items():
        assert shown[name] in ("****", "****" + value[-4:]) and shown[name] != value
        if len(value) >= 8:  # (a short one, PhonePe's client_version "1", is masked whole)
            assert value not in r.text
    assert w.api.as_(w["accountant"]["token"], "GET", path).status_code == 200
    assert w.api.as_(w["accountant"]["token"], "PUT", path,
                     json={"credentials": w.fake.credentials()}).status_code == 403
    assert w.api.as_(w["desk"]["token"], "GET", path).status_code == 403
    r = w.api.as_(w["admin"]["token"], "PUT", path, json={"credentials": {"nope": "x" * 10}})
    assert r.status_code == 400 and "credentials.nope" in fields(r)
    r = w.api.as_(w["admin"]["token"], "PUT", f"/clinics/{w.id}/billing/credentials/venmo",
                  json={"credentials": {"a": "b"}})
    assert r.status_code == 400
    other = clinic_factory()
    boss = member_factory(other["id"], "CLINIC_ADMIN", tag="boss")
    assert w.api.as_(boss["token"], "GET", path).status_code == 404
    assert w.api.as_(boss["token"], "PUT", path,
                     json={"credentials": w.fake.credentials()}).status_code == 404


def test_a_return_url_off_our_origins_is_refused(stripe_world: World) -> None:
    w = stripe_world
    a = w.book("video")
    r = w.api.as_(w["patient"]["token"], "POST", "/billing/payments",
                  json={"invoice_id": a["invoice_id"], "return_url": "https://evil.example/x"})
    assert r.status_code == 400 and "return_url" in fields(r), r.text
    assert not w.db.fetch("SELECT 1 FROM billing_payments WHERE invoice_id = $1",
                          uuid.UUID(a["invoice_id"]))
    r = w.api.as_(w["patient"]["token"], "POST", "/billing/payments",
                  json={"invoice_id": a["invoice_id"],
                        "return_url": "http://localhost:8000/paid"})
    assert r.status_code == 201, r.text
