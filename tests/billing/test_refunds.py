"""Refunds: partial with a reason (audited), never above what was paid (also with 20 requests at
once), by the roles the permission file names, automatically on a cancellation inside the
clinic's policy and not outside it; webhook facts applied once per provider refund id."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.billing.payment_rows import paid
from tests.queue_fixtures import TZ, fresh_day, make_clinic
from tests.servers import eventually, workers

NOTICE = 10080  # a week: a visit two days out is inside it, one a month out is not
FEE = 10_000  # a video visit, paid before it (payment_required_types)


@pytest.fixture(scope="module")
def house(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=1, patients=2,
                    payment_required_types=["video"], patient_max_future_appointments=500,
                    billing={"currency": "INR", "refund_notice_minutes": NOTICE,
                             "fees": {"video": FEE}})
    c["accountant"] = member_factory(c["id"], "ACCOUNTANT", tag="refund-acc")
    c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="refund-admin")
    other = clinic_factory()
    c["other_admin"] = member_factory(other["id"], "CLINIC_ADMIN", tag="refund-other")
    return c


def _at(day: Any, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=TZ)


def desk_paid(api, db, house: dict[str, Any], start: datetime | None = None,
              patient: int = 0) -> tuple[str, str]:
    """A video visit booked by the desk (pending_payment, its invoice opened by billing) and
    paid in full in cash at the desk, over REST: (payment id, visit id)."""
    r = api.as_(house["desk"]["token"], "POST", "/appointments", json={
        "clinic_id": house["id"], "doctor_id": house["doctors"][0]["user_id"],
        "patient_id": house["patients"][patient]["user_id"], "type": "video",
        "start": (start or _at(fresh_day(), 9)).isoformat(), "duration_minutes": 15})
    assert r.status_code == 201 and r.json()["status"] == "pending_payment", r.text
    visit = r.json()["id"]
    [invoice] = db.fetch("SELECT id FROM billing_invoices WHERE appointment_id = $1::uuid", visit)
    r = api.as_(house["desk"]["token"], "POST", "/billing/payments",
                json={"invoice_id": str(invoice["id"]), "method": "cash", "amount": FEE})
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    return str(r.json()["id"]), visit


def refund(api, token: str, payment_id: str, **body: Any) -> httpx.Response:
    return api.as_(token, "POST", f"/billing/payments/{payment_id}/refunds",
                   json={"reason": "patient asked", **body})


def refunded(db, payment_id: str) -> int:
    return int(db.fetch("SELECT refunded FROM billing_payments WHERE id = $1::uuid",
                        payment_id)[0]["refunded"])


def test_a_partial_refund_is_audited_with_its_reason_and_listed(api, db, house) -> None:
    patient = house["patients"][0]
    payment, _ = desk_paid(api, db, house)
    r = refund(api, house["accountant"]["token"], payment, amount=300,
               reason="double charge at the desk")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["amount"], body["status"], body["currency"], body["automatic"]) == \
        (300, "succeeded", "INR", False)
    assert body["requested_by"] == house["accountant"]["user_id"]
    assert refunded(db, payment) == 300
    audit = db.fetch("SELECT actor_id, detail FROM audit_log WHERE action = 'refunds:create' "
                     "AND resource_id = $1", body["id"])
    assert len(audit) == 1 and str(audit[0]["actor_id"]) == house["accountant"]["user_id"]
    assert '"reason": "double charge at the desk"' in audit[0]["detail"]
    events = db.fetch("SELECT type, data::text AS data FROM events WHERE type LIKE 'refund.%' "
                      "AND data->>'refund_id' = $1", body["id"])
    assert [e["type"] for e in events] == ["refund.succeeded"]
    assert "double charge" not in events[0]["data"]  # reasons stay off the wire
    listed = api.as_(house["admin"]["token"], "GET", f"/billing/payments/{payment}/refunds")
    assert listed.status_code == 200 and [x["id"] for x in listed.json()["items"]] == [body["id"]]
    mine = api.as_(patient["token"], "GET", f"/billing/refunds/{body['id']}")
    assert mine.status_code == 200 and mine.json()["amount"] == 300
    theirs = api.as_(house["patients"][1]["token"], "GET", f"/billing/refunds/{body['id']}")
    assert theirs.status_code == 404
    page = api.as_(house["accountant"]["token"], "GET", "/billing/refunds",
                   params={"clinic_id": house["id"], "limit": 200})
    assert page.status_code == 200 and body["id"] in {x["id"] for x in page.json()["items"]}
    own = api.as_(house["patients"][1]["token"], "GET", "/billing/refunds",
                  params={"clinic_id": house["id"]})
    assert own.status_code == 200 and body["id"] not in own.text


def test_above_the_remainder_is_refused_naming_amount_and_changes_nothing(api, db, house) -> None:
    payment, _ = desk_paid(api, db, house)
    assert refund(api, house["admin"]["token"], payment, amount=7000).status_code == 201
    before = db.fetch("SELECT count(*) AS n FROM billing_refunds WHERE payment_id = $1::uuid",
                      payment)
    r = refund(api, house["admin"]["token"], payment, amount=3001)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == ["amount"]
    assert refunded(db, payment) == 7000
    assert db.fetch("SELECT count(*) AS n FROM billing_refunds WHERE payment_id = $1::uuid",
                    payment) == before
    rest = refund(api, house["admin"]["token"], payment)  # no amount: all that is left
    assert rest.status_code == 201 and rest.json()["amount"] == 3000, rest.text
    again = refund(api, house["admin"]["token"], payment)
    assert again.status_code == 409, again.text
    assert refunded(db, payment) == FEE


@pytest.mark.parametrize(("amount", "field"), [(0, "amount"), (-5, "amount"), (10**12, "amount"),
                                               ("twelve", "amount"), (1.5, "amount"), ([12], "amount")])
def test_bad_amounts_are_named(api, db, house, amount: Any, field: str) -> None:
    payment = paid(db, house["id"], house["patients"][0]["user_id"], 1000)  # rows: 5 at once
    r = refund(api, house["admin"]["token"], payment, amount=amount)
    assert r.status_code == 400, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert refunded(db, payment) == 0


def test_who_may_refund(api, db, house) -> None:
    payment, _ = desk_paid(api, db, house)
    assert refund(api, house["desk"]["token"], payment, amount=1).status_code == 403
    assert refund(api, house["patients"][0]["token"], payment, amount=1).status_code == 403
    other = refund(api, house["other_admin"]["token"], payment, amount=1)
    assert other.status_code == 404 and house["id"] not in other.text
    assert refund(api, None, payment, amount=1).status_code == 401
    assert refunded(db, payment) == 0


def test_a_payment_that_did_not_succeed_is_not_refunded(api, db, house) -> None:
    payment = paid(db, house["id"], house["patients"][0]["user_id"], 1000, status="failed")
    r = refund(api, house["admin"]["token"], payment, amount=100)
    assert r.status_code == 409, r.text
    assert refunded(db, payment) == 0


def test_20_concurrent_refunds_never_exceed_the_paid_amount(server, api, db, house) -> None:
    """10,000 paid, 20 requests of 700 at once: exactly 14 fit (9,800), the other 6 are told
    the remainder (400 naming amount); no 5xx."""
    payment, _ = desk_paid(api, db, house)
    token = house["accountant"]["token"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=60) as client:
            return list(await asyncio.gather(*(
                client.post(f"/billing/payments/{payment}/refunds",
                            json={"amount": 700, "reason": f"burst {i}"},
                            headers={"Authorization": f"Bearer {token}"}) for i in range(20))))

    answers = asyncio.run(burst())
    codes = sorted(r.status_code for r in answers)
    assert not [c for c in codes if c >= 500], [r.text for r in answers if r.status_code >= 500]
    assert codes.count(201) == 14 and codes.count(400) == 6, codes
    for r in answers:
        if r.status_code == 400:
            assert [e["field"] for e in r.json()["errors"]] == ["amount"]
    rows = db.fetch("SELECT sum(amount) AS total, count(*) AS n FROM billing_refunds "
                    "WHERE payment_id = $1::uuid AND status <> 'failed'", payment)
    assert (rows[0]["total"], rows[0]["n"]) == (9800, 14)
    assert refunded(db, payment) == 9800


# --- automatic refunds on cancellation --------------------------------------------------------

def _visit(api, house: dict[str, Any], start: datetime) -> dict[str, Any]:
    patient = house["patients"][1]
    r = api.as_(house["desk"]["token"], "POST", "/appointments", json={
        "clinic_id": house["id"], "doctor_id": house["doctors"][0]["user_id"],
        "patient_id": patient["user_id"], "type": "in_person", "start": start.isoformat(),
        "duration_minutes": 15, "location_id": house["locations"][0]["id"]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _jobs(db, payment_id: str) -> list[dict[str, Any]]:
    return db.fetch("SELECT task FROM scheduled_jobs WHERE job_key = $1",
                    f"billing.refunds.automatic:{payment_id}")


def test_a_cancellation_inside_the_policy_refunds_in_full_automatically(env, api, db,
                                                                        house) -> None:
    # a month out: well before the week's notice
    payment, visit = desk_paid(api, db, house, _at(fresh_day(), 9), patient=1)
    assert refund(api, house["admin"]["token"], payment, amount=500).status_code == 201
    r = api.as_(house["patients"][1]["token"], "POST", f"/appointments/{visit}/cancel")
    assert r.status_code == 200, r.text
    assert [j["task"] for j in _jobs(db, payment)] == ["billing.refunds.automatic"]
    # first in line: jobs other tests of this process left due (invoice PDFs by the thousand
    # after the cross-route suites) are claimed oldest first, and would come before it
    db.fetch("UPDATE scheduled_jobs SET run_at = run_at - interval '1 year' WHERE job_key = $1",
             f"billing.refunds.automatic:{payment}")
    with workers(env, 1):
        eventually(lambda: refunded(db, payment) == FEE)
    rows = db.fetch("SELECT amount, status, automatic, requested_by FROM billing_refunds "
                    "WHERE payment_id = $1::uuid ORDER BY created_at", payment)
    assert [(x["amount"], x["status"], x["automatic"]) for x in rows] == [
        (500, "succeeded", False), (FEE - 500, "succeeded", True)]
    assert rows[1]["requested_by"] is None  # the system's
    audit = db.fetch("SELECT actor_id FROM audit_log WHERE action = 'refunds:create' "
                     "AND detail->>'payment_id' = $1 AND detail->>'automatic' = 'true'", payment)
    assert len(audit) == 1 and audit[0]["actor_id"] is None


def test_a_cancellation_outside_the_policy_is_not_refunded(api, db, house) -> None:
    day = (datetime.now(TZ) + timedelta(days=2)).date()  # two days out: inside the week
    payment, visit = desk_paid(api, db, house, _at(day, 11), patient=1)
    r = api.as_(house["desk"]["token"], "POST", f"/appointments/{visit}/cancel")
    assert r.status_code == 200, r.text
    assert _jobs(db, payment) == []
    assert refunded(db, payment) == 0


def test_an_unpaid_cancellation_schedules_nothing(api, db, house) -> None:
    day = fresh_day()
    visit = _visit(api, house, datetime(day.year, day.month, day.day, 10, 0, tzinfo=TZ))
    r = api.as_(house["desk"]["token"], "POST", f"/appointments/{visit['id']}/cancel")
    assert r.status_code == 200, r.text
    assert db.fetch("SELECT 1 FROM scheduled_jobs WHERE task = 'billing.refunds.automatic' "
                    "AND payload->>'payment_id' IN (SELECT p.id::text FROM billing_payments p "
                    "JOIN billing_invoices i ON i.id = p.invoice_id "
                    "WHERE i.appointment_id = $1::uuid)", visit["id"]) == []


# --- online payments: the provider's answer and its webhook facts (in process) -----------------

@pytest.fixture
def in_process(env, domain_layer) -> Iterator[Any]:
    """The domain layer, reading credentials with the server's key."""
    from tests.tenancy.test_credentials import keys_in_process

    with keys_in_process(env["CAREWIRE_CREDENTIALS_KEY"]):
        yield domain_layer


async def _in_tx(coro_fn: Any) -> Any:
    from domain import db as domain_db

    async with domain_db.transaction():
        return await coro_fn()


def test_an_unreachable_provider_leaves_the_refund_pending_and_reserved(api, db, house,
                                                                        in_process) -> None:
    """No credentials stored: the provider cannot be asked. The refund stays pending with its
    amount reserved, and the send job (same idempotency key) is planned; the job itself
    reports the provider unavailable, so the runner retries."""
    from domain.billing.commands import refunds
    from domain.errors import Unavailable

    payment = paid(db, house["id"], house["patients"][0]["user_id"], 5000, provider="stripe")
    r = refund(api, house["accountant"]["token"], payment, amount=1200)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["provider_refund_id"]) == ("pending", None)
    assert refunded(db, payment) == 1200
    assert db.fetch("SELECT task FROM scheduled_jobs WHERE job_key = $1",
                    f"billing.refunds.send:{body['id']}") == [{"task": "billing.refunds.send"}]
    with pytest.raises(Unavailable):
        in_process.run(refunds.send_refund(uuid.UUID(body["id"])))
    assert refund(api, house["accountant"]["token"], payment, amount=3801).status_code == 400


def test_webhook_facts_settle_a_refund_once_and_a_failure_gives_it_back(api, db, house,
                                                                        domain_layer) -> None:
    from domain.billing.commands import refunds

    payment = paid(db, house["id"], house["patients"][0]["user_id"], 5000, provider="stripe")
    pid = uuid.UUID(payment)
    first = refund(api, house["admin"]["token"], payment, amount=1000).json()
    second = refund(api, house["admin"]["token"], payment, amount=2000).json()
    assert refunded(db, payment) == 3000

    def apply(rid: str, state: str, amount: int | None) -> Any:
        return domain_layer.run(_in_tx(lambda: refunds.apply_refund_fact(pid, rid, state,
                                                                         amount)))

    # the webhook overtook our call's answer: matched by amount, given the provider's id
    done = apply("re_1", "succeeded", 1000)
    assert done is not None and str(done.id) == first["id"] and done.status == "succeeded"
    assert apply("re_1", "succeeded", 1000) is None  # the same fact again: nothing changes
    failed = apply("re_2", "failed", 2000)
    assert failed is not None and str(failed.id) == second["id"] and failed.status == "failed"
    assert apply("re_2", "failed", 2000) is None
    assert refunded(db, payment) == 1000  # the failed one gave its 2000 back, once
    # a refund made in the provider's dashboard: recorded once, within the remainder
    outside = apply("re_3", "succeeded", 1500)
    assert outside is not None and outside.reason == "refunded at the provider"
    assert apply("re_3", "succeeded", 1500) is None
    assert apply("re_4", "succeeded", 2501) is None  # above the remainder: not recorded
    assert refunded(db, payment) == 2500
    rows = db.fetch("SELECT provider_refund_id, status, amount FROM billing_refunds "
                    "WHERE payment_id = $1::uuid ORDER BY created_at", payment)
    assert [(x["provider_refund_id"], x["status"], x["amount"]) for x in rows] == [
        ("re_1", "succeeded", 1000), ("re_2", "failed", 2000), ("re_3", "succeeded", 1500)]
    types = db.fetch("SELECT type FROM events WHERE data->>'payment_id' = $1 ORDER BY seq",
                     payment)
    assert [t["type"] for t in types] == ["refund.created", "refund.created", "refund.succeeded",
                                          "refund.failed", "refund.succeeded"]


# --- online payments at each provider fake, end to end -----------------------------------------

def _process_webhooks(w: Any, domain_layer: Any) -> list[str]:
    """Run the inbox job (in this process) on the clinic's unprocessed deliveries."""
    from domain.inbox.commands import process

    rows = w.db.fetch("SELECT event_id FROM webhook_inbox WHERE provider = $1 "
                      "AND processed_at IS NULL AND headers::jsonb->>'x-carewire-clinic' = $2 "
                      "ORDER BY id", w.provider, w.id)
    results = [domain_layer.run(process(w.provider, r["event_id"])) for r in rows]
    return [h.result for h in results if h is not None]


def _paid_online(w: Any, domain_layer: Any) -> dict[str, Any]:
    """A video visit paid at the provider, its webhook processed: the payment, succeeded."""
    visit = w.book("video")
    r = w.checkout(visit["invoice_id"])
    assert r.status_code == 201, r.text
    payment = r.json()
    w.fake.pay(payment["provider_order_id"])
    body, headers = w.fake.webhook("payment.succeeded", payment["provider_order_id"])
    assert w.post_webhook(body, headers).status_code == 200
    assert "succeeded" in _process_webhooks(w, domain_layer)
    assert w.payment(payment["id"])["status"] == "succeeded"
    return payment


def test_an_online_refund_reaches_the_provider_and_its_webhook_settles_it_once(
        provider_world, domain_layer) -> None:
    w = provider_world
    payment = _paid_online(w, domain_layer)
    r = w.api.as_(w["accountant"]["token"], "POST", f"/billing/payments/{payment['id']}/refunds",
                  json={"amount": 10_000, "reason": "visit shortened"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["status"] in ("pending", "succeeded") and made["provider_refund_id"], made
    assert w.payment(payment["id"])["refunded"] == 10_000
    for _ in range(2):  # the provider says so (twice: delivered again)
        body, headers = w.fake.webhook("refund.succeeded", payment["provider_order_id"],
                                       refund_id=made["provider_refund_id"])
        assert w.post_webhook(body, headers).status_code == 200
        _process_webhooks(w, domain_layer)
    rows = w.db.fetch("SELECT status, amount, provider_refund_id FROM billing_refunds "
                      "WHERE payment_id = $1", uuid.UUID(payment["id"]))
    assert [(x["status"], x["amount"], x["provider_refund_id"]) for x in rows] == [
        ("succeeded", 10_000, made["provider_refund_id"])]
    assert w.payment(payment["id"])["refunded"] == 10_000
    settled = w.db.fetch("SELECT count(*) AS n FROM events WHERE type = 'refund.succeeded' "
                         "AND data->>'refund_id' = $1", made["id"])
    assert settled[0]["n"] == 1


def test_20_concurrent_online_refunds_never_exceed_the_payment(provider_world,
                                                               domain_layer) -> None:
    """50,000 paid online, 20 requests of 6,000 at once: 8 fit (48,000), each sent to the
    provider once outside any transaction; the other 12 are told the remainder; no 5xx."""
    w = provider_world
    payment = _paid_online(w, domain_layer)
    token = w["admin"]["token"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(w.api.http.base_url), timeout=60) as client:
            return list(await asyncio.gather(*(
                client.post(f"/billing/payments/{payment['id']}/refunds",
                            json={"amount": 6_000, "reason": f"burst {i}"},
                            headers={"Authorization": f"Bearer {token}"}) for i in range(20))))

    answers = asyncio.run(burst())
    codes = sorted(r.status_code for r in answers)
    assert not [c for c in codes if c >= 500], [r.text for r in answers if r.status_code >= 500]
    assert codes.count(201) == 8 and codes.count(400) == 12, codes
    made = [r.json() for r in answers if r.status_code == 201]
    assert all(m["provider_refund_id"] for m in made)
    assert len({m["provider_refund_id"] for m in made}) == 8  # eight refunds at the provider
    assert w.payment(payment["id"])["refunded"] == 48_000


def test_a_provider_outage_leaves_the_refund_pending_and_the_job_sends_it(
        stripe_world, billing_env, domain_layer) -> None:
    """Stripe answers 500 (the SDK retries twice): the refund stays pending with its amount
    reserved; the send job asks again with the same idempotency key once Stripe is back."""
    w = stripe_world
    payment = _paid_online(w, domain_layer)
    w.fake.fail_next(3)
    r = w.api.as_(w["accountant"]["token"], "POST", f"/billing/payments/{payment['id']}/refunds",
                  json={"amount": 20_000, "reason": "outage"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["status"], made["provider_refund_id"]) == ("pending", None)
    assert w.payment(payment["id"])["refunded"] == 20_000

    def sent() -> dict[str, Any] | None:
        rows = w.db.fetch("SELECT status, provider_refund_id FROM billing_refunds WHERE id = $1",
                          uuid.UUID(made["id"]))
        return rows[0] if rows[0]["provider_refund_id"] is not None else None

    with workers(billing_env, 1):
        row = eventually(sent, timeout=40)
    assert row["status"] in ("pending", "succeeded")  # at Stripe now: its webhook settles it
    assert w.payment(payment["id"])["refunded"] == 20_000


def test_the_provider_refusing_a_refund_gives_the_amount_back(stripe_world, domain_layer) -> None:
    w = stripe_world
    payment = _paid_online(w, domain_layer)
    w.fake.fail_next(1, 400)
    r = w.api.as_(w["admin"]["token"], "POST", f"/billing/payments/{payment['id']}/refunds",
                  json={"amount": 5_000, "reason": "refused"})
    assert r.status_code == 400, r.text
    assert r.json()["errors"]
    rows = w.db.fetch("SELECT status FROM billing_refunds WHERE payment_id = $1",
                      uuid.UUID(payment["id"]))
    assert [x["status"] for x in rows] == ["failed"]
    assert w.payment(payment["id"])["refunded"] == 0


# --- any order, refunds included -----------------------------------------------------------------

LIFECYCLE = ["authorized", "captured", "failed", "refunded", "duplicated", "refund_again"]


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(order=st.permutations(LIFECYCLE))
def test_every_ordering_of_payment_and_refund_events_ends_in_the_same_state(
        stripe_world, domain_layer, order: list[str]) -> None:
    """A refund made at Stripe (its dashboard) in full, with the payment's authorization,
    capture, a stale failure, and repeats, in any order: the payment ends succeeded and
    refunded in full, one refund row, the invoice paid and the visit scheduled."""
    from domain.inbox.commands import process
    from tests.billing.conftest import FEES

    w = stripe_world
    visit = w.book("video")
    r = w.checkout(visit["invoice_id"])
    assert r.status_code == 201, r.text
    payment = r.json()
    pi = payment["provider_order_id"]
    authorized = w.fake.event("payment_intent.amount_capturable_updated",
                              {**w.fake.intents[pi], "status": "requires_capture"})
    captured = w.fake.webhook("payment.succeeded", pi)
    refunded = w.fake.webhook("refund.succeeded", pi)
    refund_id = json.loads(refunded[0])["data"]["object"]["id"]
    bodies = {"authorized": authorized, "captured": captured,
              "failed": w.fake.webhook("payment.failed", pi), "refunded": refunded,
              "duplicated": w.fake.webhook("payment.succeeded", pi),
              "refund_again": w.fake.webhook("refund.succeeded", pi, refund_id=refund_id)}
    for name in order:
        raw, headers = bodies[name]
        assert w.post_webhook(raw, headers).status_code == 200
        domain_layer.run(process(w.provider, f"{w.id}:{json.loads(raw)['id']}"))
    final = w.payment(payment["id"])
    assert (final["status"], final["refunded"]) == ("succeeded", FEES["video"])
    rows = w.db.fetch("SELECT status, amount, provider_refund_id FROM billing_refunds "
                      "WHERE payment_id = $1", uuid.UUID(payment["id"]))
    assert [(x["status"], x["amount"], x["provider_refund_id"]) for x in rows] == [
        ("succeeded", FEES["video"], refund_id)]
    assert w.invoice(visit["invoice_id"])["status"] == "paid"
    assert w.appointment_status(visit["id"]) == "scheduled"
    for raw, _ in bodies.values():
        [row] = w.db.fetch("SELECT processed_at, error FROM webhook_inbox WHERE provider = $1 "
                           "AND event_id = $2", w.provider, f"{w.id}:{json.loads(raw)['id']}")
        assert row["processed_at"] is not None and row["error"] is None


def test_the_patient_hears_of_their_refund_on_their_socket(server, api, db, house) -> None:
    """refund.created / refund.succeeded reach the patient's own room: ids, status, amounts,
    never the reason; another patient hears nothing."""
    from tests.realtime_client import Recorder

    payment, _ = desk_paid(api, db, house)

    async def scenario() -> tuple[list[Any], list[Any]]:
        mine, theirs = Recorder(server.base_url), Recorder(server.base_url)
        await mine.connect(house["patients"][0]["token"])
        await theirs.connect(house["patients"][1]["token"])
        r = await asyncio.to_thread(refund, api, house["accountant"]["token"], payment,
                                    amount=1234, reason="secret reason")
        assert r.status_code == 201, r.text
        await mine.wait_for(lambda: any(d["data"]["payment_id"] == payment
                                        for d in mine.named("refund.succeeded")))
        heard = mine.named("refund.succeeded")
        await mine.close()
        await theirs.close()
        return heard, theirs.named("refund.succeeded")

    heard, others = asyncio.run(scenario())
    [event] = [d for d in heard if d["data"]["payment_id"] == payment]
    assert (event["data"]["amount"], event["data"]["status"]) == (1234, "succeeded")
    assert "secret reason" not in json.dumps(event)
    assert not [d for d in others if d["data"]["payment_id"] == payment]


def test_money_that_came_after_the_window_is_refunded_automatically_at_the_provider(
        stripe_world, billing_env, domain_layer) -> None:
    """The visit expired unpaid, then the payment succeeded at Stripe: payments plans an
    automatic refund (the invoice is void); the job refunds all of it at Stripe."""
    from domain.scheduling.commands import expire_unpaid

    w = stripe_world
    visit = w.book("video")
    r = w.checkout(visit["invoice_id"])
    assert r.status_code == 201, r.text
    payment = r.json()
    w.db.fetch("UPDATE appointments SET payment_due_at = now() - interval '1 second' "
               "WHERE id = $1", uuid.UUID(visit["id"]))
    domain_layer.run(expire_unpaid())
    w.fake.pay(payment["provider_order_id"])
    body, headers = w.fake.webhook("payment.succeeded", payment["provider_order_id"])
    assert w.post_webhook(body, headers).status_code == 200
    assert "late_payment" in _process_webhooks(w, domain_layer)

    def refunded_at_stripe() -> list[dict[str, Any]]:
        return w.db.fetch("SELECT amount, automatic, provider_refund_id FROM billing_refunds "
                          "WHERE payment_id = $1 AND provider_refund_id IS NOT NULL",
                          uuid.UUID(payment["id"]))

    with workers(billing_env, 1):
        [row] = eventually(refunded_at_stripe, timeout=40)
    assert (row["amount"], row["automatic"]) == (payment["amount"], True)
    assert w.payment(payment["id"])["refunded"] == payment["amount"]
    assert w.appointment_status(visit["id"]) == "expired"
