"""The paid video visit end to end, once per provider fake: the patient books (pending_payment,
an invoice opens), pays through the clinic's provider (the fake), the provider's signed webhook
arrives, a real worker processes it: the visit is scheduled, the invoice paid, the receipt goes
through the delivery pipeline into the delivery log, and `payment.succeeded` reaches the
patient's socket."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.billing.conftest import FEES, World
from tests.realtime_client import Recorder
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # a worker of its own


def test_book_pay_webhook_scheduled_receipt_and_socket(billing_env, billing_server,
                                                       provider_world: World) -> None:
    w = provider_world
    a = w.book("video")
    assert a["status"] == "pending_payment" and a["invoice_id"]
    r = w.checkout(a["invoice_id"])
    assert r.status_code == 201, r.text
    payment = r.json()
    order = payment["provider_order_id"]

    async def flow() -> Recorder:
        patient = Recorder(billing_server.base_url)
        await patient.connect(w["patient"]["token"])
        try:
            w.fake.pay(order)  # the patient pays at the provider
            body, headers = w.fake.webhook("payment.succeeded", order)
            answer = await asyncio.to_thread(w.post_webhook, body, headers)
            assert answer.status_code == 200 and answer.json()["stored"] == 1, answer.text
            await patient.wait_for(lambda: any(
                d["data"]["payment_id"] == payment["id"]
                for d in patient.named("payment.succeeded")), timeout=60)
        finally:
            await patient.close()
        return patient

    log = Path(tempfile.mkstemp(prefix="carewire-billing-worker-", suffix=".log")[1])
    with workers(billing_env, 1, output=log):
        patient = asyncio.run(flow())
        eventually(lambda: w.appointment_status(a["id"]) == "scheduled", timeout=60)
        receipt = eventually(lambda: w.db.fetch(
            """SELECT channel, status FROM communication_messages
               WHERE clinic_id = $1 AND user_id = $2 AND kind = 'billing.receipt'""",
            uuid.UUID(w.id), uuid.UUID(w["patient"]["user_id"])), timeout=60)
    [event] = [d for d in patient.named("payment.succeeded")
               if d["data"]["payment_id"] == payment["id"]]
    assert (event["data"]["status"], event["data"]["amount"], event["data"]["currency"]) == \
        ("succeeded", FEES["video"], "INR")
    assert "description" not in event["data"]  # ids, statuses and amounts only
    assert {r["channel"] for r in receipt} == {"email"}
    invoice = w.invoice(a["invoice_id"])
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", FEES["video"])
    assert w.payment(payment["id"])["status"] == "succeeded"
    inbox = w.db.fetch("SELECT result FROM webhook_inbox WHERE clinic_id = $1 AND "
                       "provider = $2", uuid.UUID(w.id), w.provider)
    assert [row["result"] for row in inbox].count("succeeded") == 1
