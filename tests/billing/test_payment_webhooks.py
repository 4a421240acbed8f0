"""Payment webhooks at /api/v1/webhooks/payments/{provider}/{clinic_id}: verified with the
clinic's own secret on the raw body, stored once in the inbox, processed once, converging on the
same final state in any arrival order. Bodies are signed by the provider fakes as the providers
sign them; processing runs the inbox's own `process` (what the job runs) in this process."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.inbox.commands import process
from tests.billing.conftest import FEES, World

PROBLEM = "application/problem+json"


def opened(w: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """A booked video visit and its pending online payment (the order at the fake)."""
    a = w.book("video")
    r = w.checkout(a["invoice_id"])
    assert r.status_code == 201, r.text
    return a, r.json()


def event_id(body: bytes, w: World) -> str:
    return f"{w.id}:{json.loads(body)['id']}"


def inbox(w: World, key: str) -> list[dict[str, Any]]:
    return w.db.fetch("SELECT * FROM webhook_inbox WHERE provider = $1 AND event_id = $2",
                      w.provider, key)


def audited(w: World, reason: str, since: float) -> bool:
    return bool(w.db.fetch(
        """SELECT 1 FROM audit_log WHERE action = 'auth:refused'
           AND detail->>'transport' = 'webhook' AND detail->>'reason' = $1
           AND occurred_at >= to_timestamp($2)""", reason, since - 1))


def succeeded_events(w: World, payment_id: str) -> int:
    return int(w.db.fetch("SELECT count(*) AS n FROM events WHERE type = 'payment.succeeded' "
                          "AND data->>'payment_id' = $1", payment_id)[0]["n"])


def test_a_verified_payment_webhook_pays_once(stripe_world: World, domain_layer) -> None:
    w = stripe_world
    a, payment = opened(w)
    w.fake.pay(payment["provider_order_id"])
    body, headers = w.fake.webhook("payment.succeeded", payment["provider_order_id"])
    r = w.post_webhook(body, headers)
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    key = event_id(body, w)
    [row] = inbox(w, key)
    assert row["processed_at"] is None and bytes(row["body"]) == body
    assert "x-carewire-clinic" in json.loads(row["headers"])
    assert w.appointment_status(a["id"]) == "pending_payment"  # nothing until processed
    handled = domain_layer.run(process(w.provider, key))
    assert handled is not None and handled.result == "succeeded"
    assert str(handled.clinic_id) == w.id
    assert domain_layer.run(process(w.provider, key)) is None
    paid = w.payment(payment["id"])
    assert paid["status"] == "succeeded" and paid["provider_payment_id"]
    assert w.invoice(a["invoice_id"])["status"] == "paid"
    assert w.appointment_status(a["id"]) == "scheduled"
    assert succeeded_events(w, payment["id"]) == 1


def test_forged_tampered_stale_and_reserialized_webhooks_change_nothing(stripe_world: World
                                                                        ) -> None:
    w = stripe_world
    a, payment = opened(w)
    order = payment["provider_order_id"]
    body, headers = w.fake.webhook("payment.succeeded", order)
    since = time.time()
    forged = w.fake.sign(body, secret="whsec_" + "0" * 32)
    tampered = body.replace(str(FEES["video"]).encode(), b"1")
    stale_body, stale = w.fake.event("payment_intent.succeeded", json.loads(body)["data"]["object"],
                                     timestamp=int(time.time()) - 3600)
    reserialized = json.dumps(json.loads(body), separators=(",", ":")).encode()
    cases = [(body, forged), (tampered, headers), (stale_body, stale), (reserialized, headers),
             (body, {"Content-Type": "application/json"}), (b"not json", headers)]
    for raw, hdrs in cases:
        r = w.post_webhook(raw, hdrs)
        assert r.status_code in (400, 401), r.text
        assert r.headers["content-type"].startswith(PROBLEM)
    # another clinic's address, an unknown clinic, an unknown provider
    assert w.api.http.post(w.webhook_path(clinic_id=str(uuid.uuid4())), content=body,
                           headers=headers).status_code == 401
    assert w.api.http.post(w.webhook_path(provider="venmo"), content=body,
                           headers=headers).status_code == 400
    assert not w.db.fetch("SELECT 1 FROM webhook_inbox WHERE body = $1", body)
    assert w.payment(payment["id"])["status"] == "pending"
    assert w.invoice(a["invoice_id"])["amount_paid"] == 0
    assert w.appointment_status(a["id"]) == "pending_payment"
    assert audited(w, "bad_signature", since) or audited(w, "stale", since)
    assert audited(w, "not_configured", since)


def test_the_same_event_10_times_then_20_at_once_is_processed_once(
        billing_server, stripe_world: World, domain_layer) -> None:
    w = stripe_world
    a, payment = opened(w)
    w.fake.pay(payment["provider_order_id"])
    body, headers = w.fake.webhook("payment.succeeded", payment["provider_order_id"])
    answers = [w.post_webhook(body, headers) for _ in range(10)]
    assert [r.status_code for r in answers] == [200] * 10
    assert [r.json()["stored"] for r in answers] == [1] + [0] * 9
    other, other_headers = w.fake.webhook("payment.succeeded", payment["provider_order_id"])

    def once(_: int) -> int:
        with httpx.Client(base_url=billing_server.base_url + "/api/v1", timeout=30) as client:
            return w.post_webhook(other, other_headers, client).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(once, range(20)))
    assert codes == [200] * 20
    for raw in (body, other):
        assert len(inbox(w, event_id(raw, w))) == 1
        assert w.db.fetch("SELECT count(*) AS n FROM scheduled_jobs WHERE job_key = $1",
                          f"webhook:{w.provider}:{event_id(raw, w)}")[0]["n"] == 1

    async def five(key: str) -> list[Any]:
        return await asyncio.gather(*(process(w.provider, key) for _ in range(5)))

    results = [domain_layer.run(five(event_id(raw, w))) for raw in (body, other)]
    assert [sum(r is not None for r in rs) for rs in results] == [1, 1]
    handled = [r.result for rs in results for r in rs if r is not None]
    assert sorted(handled) == ["already_succeeded", "succeeded"]
    assert succeeded_events(w, payment["id"]) == 1
    assert w.invoice(a["invoice_id"])["amount_paid"] == FEES["video"]


def test_an_event_for_an_unknown_payment_is_parked(stripe_world: World, domain_layer) -> None:
    w = stripe_world
    obj = {"id": "pi_unknown_" + uuid.uuid4().hex, "object": "payment_intent", "status":
           "succeeded", "amount": 100, "amount_received": 100, "currency": "inr",
           "latest_charge": "ch_x", "last_payment_error": None}
    body, headers = w.fake.event("payment_intent.succeeded", obj)
    assert w.post_webhook(body, headers).status_code == 200
    handled = domain_layer.run(process(w.provider, event_id(body, w)))
    assert handled is not None and handled.result == "unknown_payment"
    [row] = inbox(w, event_id(body, w))
    assert row["processed_at"] is not None and row["error"] is None


def test_a_decline_then_a_success_ends_paid_and_never_goes_back(stripe_world: World,
                                                               domain_layer) -> None:
    w = stripe_world
    a, payment = opened(w)
    order = payment["provider_order_id"]
    declined, dh = w.fake.webhook("payment.failed", order)
    ok, oh = w.fake.webhook("payment.succeeded", order)
    late_decline, lh = w.fake.webhook("payment.failed", order)
    for raw, hdrs, expected in ((declined, dh, "failed"), (ok, oh, "succeeded"),
                                (late_decline, lh, "already_succeeded")):
        assert w.post_webhook(raw, hdrs).status_code == 200
        assert domain_layer.run(process(w.provider, event_id(raw, w))).result == expected
    assert w.payment(payment["id"])["status"] == "succeeded"
    assert w.appointment_status(a["id"]) == "scheduled"


def test_money_after_the_window_expired_is_not_booked_against_the_void_invoice(
        stripe_world: World, domain_layer) -> None:
    from domain.scheduling.commands import expire_unpaid

    w = stripe_world
    a, payment = opened(w)
    w.db.fetch("UPDATE appointments SET payment_due_at = now() - interval '1 second' "
               "WHERE id = $1", uuid.UUID(a["id"]))
    domain_layer.run(expire_unpaid())
    assert w.appointment_status(a["id"]) == "expired"
    assert w.invoice(a["invoice_id"])["status"] == "void"
    body, headers = w.fake.webhook("payment.succeeded", payment["provider_order_id"])
    assert w.post_webhook(body, headers).status_code == 200
    if importlib.util.find_spec("domain.billing.commands.refunds") is None:
        return  # the automatic refund belongs to refunds (merged separately)
    handled = domain_layer.run(process(w.provider, event_id(body, w)))
    assert handled is not None and handled.result == "late_payment"
    assert w.payment(payment["id"])["status"] == "succeeded"
    assert w.invoice(a["invoice_id"])["amount_paid"] == 0
    assert w.appointment_status(a["id"]) == "expired"


# --- any order --------------------------------------------------------------------------------

LIFECYCLE = ["authorized", "captured", "failed", "duplicated"]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(order=st.permutations(LIFECYCLE))
def test_every_ordering_of_a_payments_events_ends_in_the_same_state(
        stripe_world: World, domain_layer, order: list[str]) -> None:
    w = stripe_world
    a, payment = opened(w)
    pi = payment["provider_order_id"]
    authorized = w.fake.event("payment_intent.amount_capturable_updated",
                              {**w.fake.intents[pi], "status": "requires_capture"})
    captured = w.fake.webhook("payment.succeeded", pi)
    bodies = {"authorized": authorized, "captured": captured,
              "failed": w.fake.webhook("payment.failed", pi), "duplicated": captured}
    for name in order:
        raw, hdrs = bodies[name]
        assert w.post_webhook(raw, hdrs).status_code == 200
        domain_layer.run(process(w.provider, event_id(raw, w)))
    final = w.payment(payment["id"])
    assert (final["status"], final["amount"]) == ("succeeded", FEES["video"])
    invoice = w.invoice(a["invoice_id"])
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", FEES["video"])
    assert w.appointment_status(a["id"]) == "scheduled"
    assert succeeded_events(w, payment["id"]) == 1
    for raw, _ in bodies.values():
        [row] = inbox(w, event_id(raw, w))
        assert row["processed_at"] is not None and row["error"] is None


# --- missed webhooks: reconciliation ------------------------------------------------------------

def test_reconciliation_asks_the_provider_about_old_pending_payments(
        env, stripe_world: World, domain_layer) -> None:
    from domain.billing.commands.reconcile import reconcile
    from tests.communication.test_email_providers import settings_env

    w = stripe_world
    paid_a, paid = opened(w)
    declined_a, declined = opened(w)
    lost_a, lost = opened(w)
    _, fresh = opened(w)
    w.fake.pay(paid["provider_order_id"])
    w.fake.decline(declined["provider_order_id"])
    w.fake.pay(fresh["provider_order_id"])  # paid, but too recent to ask about yet
    w.db.fetch("UPDATE billing_payments SET provider_order_id = NULL WHERE id = $1",
               uuid.UUID(lost["id"]))  # the process died before the order was stored
    w.db.fetch("UPDATE billing_payments SET created_at = now() - interval '1 hour', "
               "updated_at = now() - interval '1 hour' "
               "WHERE id = ANY($1::uuid[])",
               [uuid.UUID(p["id"]) for p in (paid, declined, lost)])
    with settings_env(CAREWIRE_STRIPE_URL=w.fake.url,
                      CAREWIRE_CREDENTIALS_KEY=env["CAREWIRE_CREDENTIALS_KEY"]):
        counts = domain_layer.run(reconcile())
        assert counts.get("succeeded", 0) >= 1 and counts.get("failed", 0) >= 2, counts
        assert domain_layer.run(reconcile()).get("succeeded", 0) == 0  # nothing twice
    assert w.payment(paid["id"])["status"] == "succeeded"
    assert w.invoice(paid_a["invoice_id"])["status"] == "paid"
    assert w.appointment_status(paid_a["id"]) == "scheduled"
    assert succeeded_events(w, paid["id"]) == 1
    for payment, appointment in ((declined, declined_a), (lost, lost_a)):
        row = w.payment(payment["id"])
        assert row["status"] == "failed" and row["failure_reason"], row
        assert w.appointment_status(appointment["id"]) == "pending_payment"
    assert w.payment(lost["id"])["failure_reason"] == "checkout was never opened"
    assert w.payment(fresh["id"])["status"] == "pending"
    # the webhook that was missed arrives after all: nothing moves twice
    body, headers = w.fake.webhook("payment.succeeded", paid["provider_order_id"])
    assert w.post_webhook(body, headers).status_code == 200
    assert domain_layer.run(process(w.provider, event_id(body, w))).result == \
        "already_succeeded"
    assert w.invoice(paid_a["invoice_id"])["amount_paid"] == FEES["video"]
    # a declined card retried at the provider still pays (failed -> succeeded)
    retry, rh = w.fake.webhook("payment.succeeded", declined["provider_order_id"])
    assert w.post_webhook(retry, rh).status_code == 200
    assert domain_layer.run(process(w.provider, event_id(retry, w))).result == "succeeded"
    assert w.appointment_status(declined_a["id"]) == "scheduled"
