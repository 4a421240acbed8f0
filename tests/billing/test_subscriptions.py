"""Subscriptions: subscribe (trial or an open invoice for the first period), cancel (now or at
the period's end), and the renewal job: a paid period renews with a new invoice, an unpaid one
turns past_due, is retried on each run, and expires after MAX_RETRIES; concurrent subscribes
and renewal runs change each subscription once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from domain import db as domain_db
from domain.billing.commands.invoices import record_payment
from domain.billing.commands.subscriptions import MAX_RETRIES, advance, renew_due
from domain.billing.models import Interval
from tests.billing.plan_fixtures import make_plan, plan_clinic, subscribe
from tests.test_bad_input import assert_problem


@pytest.fixture(scope="module")
def clinic(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    return plan_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=8,
                       tax_rate_bp=1800)


@pytest.fixture(scope="module")
def other(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    return plan_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=1)


def invoices(db: Any, sub: dict[str, Any]) -> list[dict[str, Any]]:
    return db.fetch("SELECT * FROM billing_invoices WHERE subscription_id = $1 "
                    "ORDER BY created_at, id", uuid.UUID(sub["id"]))


def row(db: Any, sub: dict[str, Any]) -> dict[str, Any]:
    return db.fetch("SELECT * FROM billing_subscriptions WHERE id = $1", uuid.UUID(sub["id"]))[0]


def period_ends_now(db: Any, sub: dict[str, Any]) -> datetime:
    """The subscription's period is over (as if a year had passed)."""
    rows = db.fetch("""UPDATE billing_subscriptions
                       SET current_period_start = now() - interval '1 day',
                           current_period_end = now() - interval '1 second'
                       WHERE id = $1 RETURNING current_period_end""", uuid.UUID(sub["id"]))
    return rows[0]["current_period_end"]  # type: ignore[no-any-return]


def pay(domain_layer: Any, invoice: dict[str, Any]) -> None:
    async def go() -> None:
        async with domain_db.transaction():
            await record_payment(invoice["id"], invoice["total"], invoice["currency"])

    domain_layer.run(go())


def event_types(db: Any, sub: dict[str, Any]) -> list[str]:
    return [r["type"] for r in db.fetch(
        "SELECT type FROM events WHERE data->>'subscription_id' = $1 ORDER BY seq", sub["id"])]


def test_paid_plan_starts_active_with_an_open_invoice(api, db, clinic) -> None:
    plan = make_plan(api, clinic, price=120000, interval="year", quotas={"in_person": 4})
    sub = subscribe(api, clinic, plan, clinic["patients"][0])
    assert sub["status"] == "active" and sub["cancel_at_period_end"] is False
    start = datetime.fromisoformat(sub["current_period_start"])
    assert datetime.fromisoformat(sub["current_period_end"]) == advance(
        start, Interval.YEAR, "Asia/Kolkata")
    assert sub["usage"] == [{"appointment_type": "in_person", "quota": 4, "used": 0}]
    [invoice] = invoices(db, sub)
    assert (invoice["status"], invoice["subtotal"], invoice["tax"], invoice["total"]) == (
        "open", 120000, 21600, 141600)
    assert invoice["patient_id"] == uuid.UUID(clinic["patients"][0]["user_id"])
    assert row(db, sub)["period_invoice_id"] == invoice["id"]
    assert event_types(db, sub) == ["subscription.created"]


def test_months_keep_the_local_day() -> None:
    tz = ZoneInfo("Asia/Kolkata")
    jan31 = datetime(2027, 1, 31, 9, 0, tzinfo=tz)
    assert advance(jan31, Interval.MONTH, "Asia/Kolkata") == datetime(2027, 2, 28, 9, 0, tzinfo=tz)
    dec = datetime(2027, 12, 15, 23, 30, tzinfo=tz)
    assert advance(dec, Interval.MONTH, "Asia/Kolkata") == datetime(2028, 1, 15, 23, 30, tzinfo=tz)
    assert advance(dec, Interval.YEAR, "Asia/Kolkata") == datetime(2028, 12, 15, 23, 30, tzinfo=tz)


def test_trial_then_first_paid_period(api, db, domain_layer, clinic) -> None:
    plan = make_plan(api, clinic, price=50000, interval="month", trial_days=7)
    sub = subscribe(api, clinic, plan, clinic["patients"][1])
    assert sub["status"] == "trialing" and invoices(db, sub) == []
    ended = period_ends_now(db, sub)
    domain_layer.run(renew_due())
    after = row(db, sub)
    assert after["status"] == "active" and after["current_period_start"] == ended
    assert after["current_period_end"] == advance(ended, Interval.MONTH, "Asia/Kolkata")
    [invoice] = invoices(db, sub)
    assert invoice["status"] == "open" and invoice["subtotal"] == 50000
    assert after["period_invoice_id"] == invoice["id"]
    assert event_types(db, sub) == ["subscription.created", "subscription.renewed"]


def test_paid_period_renews_with_a_new_invoice(api, db, domain_layer, clinic) -> None:
    plan = make_plan(api, clinic, price=30000, interval="month")
    sub = subscribe(api, clinic, plan, clinic["patients"][2])
    [first] = invoices(db, sub)
    pay(domain_layer, first)
    ended = period_ends_now(db, sub)
    domain_layer.run(renew_due())
    after = row(db, sub)
    assert (after["status"], after["renewal_failures"]) == ("active", 0)
    assert after["current_period_start"] == ended
    old, new = invoices(db, sub)
    assert (old["status"], new["status"]) == ("paid", "open")
    assert after["period_invoice_id"] == new["id"]
    # nothing is due any more: another run leaves it alone
    domain_layer.run(renew_due())
    assert len(invoices(db, sub)) == 2 and row(db, sub)["current_period_start"] == ended


def test_unpaid_period_is_past_due_retried_then_expired(api, db, domain_layer, clinic) -> None:
    plan = make_plan(api, clinic, price=30000, interval="month")
    sub = subscribe(api, clinic, plan, clinic["patients"][3])
    period_ends_now(db, sub)
    seen = []
    for _ in range(MAX_RETRIES + 1):
        domain_layer.run(renew_due())
        r = row(db, sub)
        seen.append((r["status"], r["renewal_failures"]))
    assert seen == [("past_due", 1), ("past_due", 2), ("past_due", 3), ("expired", 4)]
    assert len(invoices(db, sub)) == 1  # a failed renewal opens no second invoice
    assert event_types(db, sub) == ["subscription.created", "subscription.status_changed",
                                    "subscription.status_changed"]
    statuses = db.fetch("SELECT data->>'status' AS s, data->>'previous_status' AS p FROM events "
                        "WHERE data->>'subscription_id' = $1 AND type = $2 ORDER BY seq",
                        sub["id"], "subscription.status_changed")
    assert [(s["p"], s["s"]) for s in statuses] == [("active", "past_due"), ("past_due", "expired")]
    domain_layer.run(renew_due())
    assert row(db, sub)["status"] == "expired"
    # expired is not live: the patient may subscribe again
    again = subscribe(api, clinic, plan, clinic["patients"][3])
    assert again["status"] == "active"


def test_past_due_recovers_once_paid(api, db, domain_layer, clinic) -> None:
    plan = make_plan(api, clinic, price=30000, interval="month")
    sub = subscribe(api, clinic, plan, clinic["patients"][4])
    ended = period_ends_now(db, sub)
    domain_layer.run(renew_due())
    assert row(db, sub)["status"] == "past_due"
    pay(domain_layer, invoices(db, sub)[0])
    domain_layer.run(renew_due())
    after = row(db, sub)
    assert (after["status"], after["renewal_failures"]) == ("active", 0)
    assert after["current_period_start"] == ended and len(invoices(db, sub)) == 2


def test_cancel_now_and_at_period_end(api, db, domain_layer, clinic) -> None:
    patient = clinic["patients"][5]
    now_plan = make_plan(api, clinic, price=0, interval="month")
    later_plan = make_plan(api, clinic, price=0, interval="month")
    a = subscribe(api, clinic, now_plan, patient)
    b = subscribe(api, clinic, later_plan, patient)
    assert invoices(db, a) == []  # a free plan has no invoices
    r = api.as_(patient["token"], "POST", f"/billing/subscriptions/{a['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    again = api.as_(patient["token"], "POST", f"/billing/subscriptions/{a['id']}/cancel")
    assert_problem(again, 409, "conflict")
    r = api.as_(clinic["desk"]["token"], "POST", f"/billing/subscriptions/{b['id']}/cancel",
                json={"at_period_end": True})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["cancel_at_period_end"]) == ("active", True)
    domain_layer.run(renew_due())
    assert row(db, b)["status"] == "active"  # until the period ends
    period_ends_now(db, b)
    domain_layer.run(renew_due())
    assert row(db, b)["status"] == "cancelled"
    audit = db.fetch("SELECT action FROM audit_log WHERE resource_id = $1 ORDER BY id", b["id"])
    assert [x["action"] for x in audit] == ["subscriptions:manage", "subscriptions:manage",
                                            "subscriptions:renew"]


def test_who_may_subscribe_and_see(api, db, clinic, other) -> None:
    plan = make_plan(api, clinic, price=1000, interval="month")
    me, them = clinic["patients"][6], clinic["patients"][7]
    body = {"clinic_id": clinic["id"], "plan_id": plan["id"], "patient_id": them["user_id"]}
    assert_problem(api.as_(me["token"], "POST", "/billing/subscriptions", json=body), 403,
                   "forbidden")
    theirs = subscribe(api, clinic, plan, them, token=clinic["desk"]["token"])
    assert_problem(api.as_(clinic["desk"]["token"], "POST", "/billing/subscriptions", json=body),
                   409, "conflict")
    doctor = {**body, "patient_id": clinic["doctors"][0]["user_id"]}
    assert_problem(api.as_(clinic["desk"]["token"], "POST", "/billing/subscriptions",
                           json=doctor), 400, field="patient_id")
    foreign = make_plan(api, other, price=1000, interval="month")
    assert_problem(api.as_(me["token"], "POST", "/billing/subscriptions",
                           json={**body, "patient_id": me["user_id"], "plan_id": foreign["id"]}),
                   400, field="plan_id")
    retired = make_plan(api, clinic, price=1000, interval="month", active=False)
    assert_problem(api.as_(me["token"], "POST", "/billing/subscriptions",
                           json={**body, "patient_id": me["user_id"], "plan_id": retired["id"]}),
                   400, field="plan_id")
    mine = subscribe(api, clinic, plan, me)
    assert_problem(api.as_(me["token"], "GET", f"/billing/subscriptions/{theirs['id']}"), 404,
                   "not_found")
    assert_problem(api.as_(me["token"], "POST", f"/billing/subscriptions/{theirs['id']}/cancel"),
                   404, "not_found")
    assert_problem(api.as_(other["admin"]["token"], "GET",
                           f"/billing/subscriptions/{mine['id']}"), 404, "not_found")
    listed = api.as_(me["token"], "GET", "/billing/subscriptions",
                     params={"clinic_id": clinic["id"]}).json()["items"]
    assert [s["id"] for s in listed] == [mine["id"]]
    staff = api.as_(clinic["accountant"]["token"], "GET", "/billing/subscriptions",
                    params={"clinic_id": clinic["id"], "patient_id": them["user_id"]})
    assert [s["id"] for s in staff.json()["items"]] == [theirs["id"]]
    assert_problem(api.as_(clinic["doctors"][0]["token"], "GET", "/billing/subscriptions",
                           params={"clinic_id": clinic["id"]}), 403, "forbidden")


def test_20_concurrent_subscribes_make_one(server, api, db, clinic, member_factory) -> None:
    patient = member_factory(clinic["id"], "PATIENT", tag="racer")
    plan = make_plan(api, clinic, price=20000, interval="month")
    body = {"clinic_id": clinic["id"], "plan_id": plan["id"], "patient_id": patient["user_id"]}

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                     limits=httpx.Limits(max_connections=20)) as client:
            return await asyncio.gather(*(client.post(
                "/api/v1/billing/subscriptions", json=body,
                headers={"Authorization": f"Bearer {patient['token']}"}) for _ in range(20)))

    codes = sorted(r.status_code for r in asyncio.run(race()))
    assert codes == [201] + [409] * 19, codes
    subs = db.fetch("SELECT id FROM billing_subscriptions WHERE plan_id = $1", uuid.UUID(plan["id"]))
    assert len(subs) == 1
    assert len(invoices(db, {"id": str(subs[0]["id"])})) == 1


def test_concurrent_renewal_runs_renew_once(api, db, domain_layer, clinic, member_factory) -> None:
    patient = member_factory(clinic["id"], "PATIENT", tag="renew")
    plan = make_plan(api, clinic, price=20000, interval="month")
    sub = subscribe(api, clinic, plan, patient)
    pay(domain_layer, invoices(db, sub)[0])
    period_ends_now(db, sub)

    async def both() -> list[int]:
        return list(await asyncio.gather(renew_due(), renew_due(), renew_due()))

    domain_layer.run(both())
    assert len(invoices(db, sub)) == 2
    assert event_types(db, sub).count("subscription.renewed") == 1


def test_subscription_events_reach_the_patient_and_billing_roles_only(server, api, clinic,
                                                                      member_factory) -> None:
    from tests.realtime_client import Recorder

    me = member_factory(clinic["id"], "PATIENT", tag="live-me")
    them = member_factory(clinic["id"], "PATIENT", tag="live-them")
    plan = make_plan(api, clinic, price=15000, interval="month")

    def created(rec: Any, sub_id: str) -> bool:
        return any(d["data"]["subscription_id"] == sub_id for d in rec.named("subscription.created"))

    async def scenario() -> None:
        mine, theirs, accountant = (Recorder(server.base_url) for _ in range(3))
        await mine.connect(me["token"])
        await theirs.connect(them["token"])
        await accountant.connect(clinic["accountant"]["token"])
        sub = await asyncio.to_thread(subscribe, api, clinic, plan, me)
        for rec in (mine, accountant):
            await rec.wait_for(lambda rec=rec: created(rec, sub["id"]))
        event = next(d for d in mine.named("subscription.created")
                     if d["data"]["subscription_id"] == sub["id"])
        assert event["category"] == "BILLING"
        assert event["data"] == {"subscription_id": sub["id"], "plan_id": plan["id"],
                                 "patient_id": me["user_id"], "status": "active"}
        marker = await asyncio.to_thread(subscribe, api, clinic, plan, them)
        await theirs.wait_for(lambda: created(theirs, marker["id"]))
        assert not created(theirs, sub["id"])
        r = await asyncio.to_thread(api.as_, me["token"], "POST",
                                    f"/billing/subscriptions/{sub['id']}/cancel")
        assert r.status_code == 200, r.text
        await mine.wait_for(lambda: any(
            d["data"]["subscription_id"] == sub["id"] and d["data"]["status"] == "cancelled"
            and d["data"]["previous_status"] == "active"
            for d in mine.named("subscription.status_changed")))
        for rec in (mine, theirs, accountant):
            await rec.close()

    asyncio.run(scenario())


def test_a_refused_renewal_leaves_the_others_alone(api, db, domain_layer, clinic, sa_token,
                                                    clinic_factory, member_factory) -> None:
    """A clinic that now bills in another currency than its plan's: that renewal is refused
    (nothing half done) and the run renews the rest."""
    odd = plan_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=1)
    odd_plan = make_plan(api, odd, price=10000, interval="month")
    stuck = subscribe(api, odd, odd_plan, odd["patients"][0])
    pay(domain_layer, invoices(db, stuck)[0])
    r = api.as_(sa_token, "PATCH", f"/clinics/{odd['id']}",
                json={"settings": {"billing": {"currency": "USD"}}})
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["billing"]["currency"] == "USD"
    fine_plan = make_plan(api, clinic, price=10000, interval="month")
    fine = subscribe(api, clinic, fine_plan, member_factory(clinic["id"], "PATIENT", tag="fine"))
    pay(domain_layer, invoices(db, fine)[0])
    stuck_end, fine_end = period_ends_now(db, stuck), period_ends_now(db, fine)
    domain_layer.run(renew_due())
    assert row(db, fine)["current_period_start"] == fine_end and len(invoices(db, fine)) == 2
    after = row(db, stuck)
    assert (after["status"], after["current_period_end"]) == ("active", stuck_end)
    assert len(invoices(db, stuck)) == 1
    # left live it would stay due for every later run of this session's database
    r = api.as_(odd["patients"][0]["token"], "POST", f"/billing/subscriptions/{stuck['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
