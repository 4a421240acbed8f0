"""The Razorpay adapter (httpx) against the local Razorpay.

Each call runs in its own event loop (`run`). What the
fake received (Basic auth, JSON body, receipt, X-Refund-Idempotency) and how every failure is
classified (ProviderError / ProviderRejected / Refused) are asserted; nothing of ours is patched.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest

from domain.billing.providers import adapter
from domain.billing.providers import razorpay as razorpay_adapter
from domain.billing.providers.base import Order, ProviderError, ProviderRejected, WebhookFact
from domain.inbox.signatures import Refused
from tests import servers
from tests.billing.fakes.razorpay import FakeRazorpay
from tests.communication.test_email_providers import settings_env

T = TypeVar("T")
TIMEOUT = 1.0
ADAPTER = razorpay_adapter.ADAPTER


def run(coro: Awaitable[T]) -> T:
    async def go() -> T:
        return await coro

    return asyncio.run(go())


def fails(exc_type: type[Exception], coro: Awaitable[Any]) -> Any:
    with pytest.raises(exc_type) as caught:
        run(coro)
    return caught.value


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRazorpay]:
    server = FakeRazorpay().start()
    with settings_env(CAREWIRE_RAZORPAY_URL=server.url,
                      CAREWIRE_PAYMENT_TIMEOUT_SECONDS=str(TIMEOUT)):
        yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_faults_left(fake: FakeRazorpay) -> Iterator[None]:
    yield
    fake.clear_faults()


def order(fake: FakeRazorpay, amount: int = 50_000, currency: str = "INR",
          reference: str | None = None, creds: dict[str, str] | None = None) -> Order:
    return run(ADAPTER.create_order(creds or fake.credentials(),
                                    reference=reference or str(uuid.uuid4()), amount=amount,
                                    currency=currency, description="Video consultation",
                                    return_url="https://app.carewire.test/paid"))


def posts(fake: FakeRazorpay, path: str) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == path]


def test_registered_under_its_name() -> None:
    assert adapter("razorpay") is ADAPTER
    assert ADAPTER.required_fields == ("key_id", "key_secret", "webhook_secret")


def test_create_order_sends_what_razorpay_takes(fake: FakeRazorpay) -> None:
    reference = str(uuid.uuid4())
    made = order(fake, 50_000, "INR", reference)
    assert made.order_id.startswith("order_")
    assert made.checkout == {"order_id": made.order_id, "key_id": fake.key_id}
    sent = posts(fake, "/v1/orders")[-1]
    body = json.loads(sent["body"])
    assert (body["amount"], body["currency"], body["receipt"]) == (50_000, "INR", reference)
    assert body["notes"]["reference"] == reference
    auth = base64.b64decode(sent["headers"]["authorization"].removeprefix("Basic ")).decode()
    assert auth == f"{fake.key_id}:{fake.key_secret}"
    assert fake.orders[made.order_id]["receipt"] == reference


def test_same_reference_is_the_same_order(fake: FakeRazorpay) -> None:
    reference = str(uuid.uuid4())
    first = order(fake, 1200, "INR", reference)
    creates = len(posts(fake, "/v1/orders"))
    again = order(fake, 1200, "INR", reference)
    assert again == first
    assert len(posts(fake, "/v1/orders")) == creates
    assert sum(o["receipt"] == reference for o in fake.orders.values()) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 429, 409])
def test_server_errors_are_provider_errors(fake: FakeRazorpay, status: int) -> None:
    before = len(fake.orders)
    fake.fail_next(1, status)
    err = fails(ProviderError, ADAPTER.create_order(
        fake.credentials(), reference=str(uuid.uuid4()), amount=1000, currency="INR",
        description="x", return_url="https://app.carewire.test/paid"))
    assert err.status == 503 and err.retry_after > 0
    assert len(fake.orders) == before


def test_a_failed_create_retried_makes_one_order(fake: FakeRazorpay) -> None:
    reference = str(uuid.uuid4())
    fake.lose_next(1)  # the order is made, its answer lost
    fails(ProviderError, ADAPTER.create_order(
        fake.credentials(), reference=reference, amount=1000, currency="INR", description="x",
        return_url="https://app.carewire.test/paid"))
    assert sum(o["receipt"] == reference for o in fake.orders.values()) == 1
    made = order(fake, 1000, "INR", reference)
    assert [o["id"] for o in fake.orders.values() if o["receipt"] == reference] == [made.order_id]


def test_timeout_is_a_provider_error_within_the_bound(fake: FakeRazorpay) -> None:
    fake.hang_next(1)
    started = time.monotonic()
    err = fails(ProviderError, ADAPTER.order_status(fake.credentials(), "order_hangs"))
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert "no answer within" in str(err)


def test_unreachable_razorpay_is_a_provider_error(fake: FakeRazorpay) -> None:
    with settings_env(CAREWIRE_RAZORPAY_URL=f"http://127.0.0.1:{servers.free_port()}",
                      CAREWIRE_PAYMENT_TIMEOUT_SECONDS=str(TIMEOUT)):
        err = fails(ProviderError, ADAPTER.order_status(fake.credentials(), "order_x"))
    assert "cannot reach" in str(err)


def test_garbled_answer_is_a_502(fake: FakeRazorpay) -> None:
    fake.garble_next(1)
    err = fails(ProviderError, ADAPTER.order_status(fake.credentials(), "order_x"))
    assert err.status == 502


def test_wrong_address_is_refused_not_retried(fake: FakeRazorpay) -> None:
    with settings_env(CAREWIRE_RAZORPAY_URL=fake.url + "/elsewhere",
                      CAREWIRE_PAYMENT_TIMEOUT_SECONDS=str(TIMEOUT)):
        err = fails(ProviderRejected, ADAPTER.order_status(fake.credentials(), "order_x"))
    assert "404" in str(err)


def test_refusals_name_the_field(fake: FakeRazorpay) -> None:
    bad = {**fake.credentials(), "key_secret": "wrong-secret"}
    err = fails(ProviderRejected, ADAPTER.create_order(
        bad, reference=str(uuid.uuid4()), amount=1000, currency="INR", description="x",
        return_url="https://app.carewire.test/paid"))
    assert err.field == "credentials" and "wrong-secret" not in str(err)
    err = fails(ProviderRejected, ADAPTER.create_order(
        fake.credentials(), reference=str(uuid.uuid4()), amount=99, currency="INR",
        description="x", return_url="https://app.carewire.test/paid"))
    assert err.field == "amount"
    err = fails(ProviderRejected, ADAPTER.create_order(
        fake.credentials(), reference=str(uuid.uuid4()), amount=1000, currency="XTS",
        description="x", return_url="https://app.carewire.test/paid"))
    assert err.field == "currency"
    err = fails(ProviderRejected, ADAPTER.create_order(
        fake.credentials(), reference="r" * 41, amount=1000, currency="INR",
        description="x", return_url="https://app.carewire.test/paid"))
    assert err.field == "reference"
    err = fails(ProviderRejected, ADAPTER.create_order(
        {"key_id": fake.key_id}, reference=str(uuid.uuid4()), amount=1000, currency="INR",
        description="x", return_url="https://app.carewire.test/paid"))
    assert err.field == "credentials"
    err = fails(ProviderRejected, ADAPTER.order_status(fake.credentials(), "order/../../x"))
    assert err.field == "order_id"


def test_status_pending_then_paid(fake: FakeRazorpay) -> None:
    made = order(fake, 70_000)
    status = run(ADAPTER.order_status(fake.credentials(), made.order_id))
    assert status.state == "pending" and status.payment_id is None
    fake.pay(made.order_id)
    status = run(ADAPTER.order_status(fake.credentials(), made.order_id))
    assert (status.state, status.amount, status.currency) == ("succeeded", 70_000, "INR")
    assert status.payment_id and fake.payments[status.payment_id]["status"] == "captured"


def test_status_after_decline_is_failed_and_a_retry_can_still_succeed(fake: FakeRazorpay) -> None:
    made = order(fake)
    fake.decline(made.order_id)
    status = run(ADAPTER.order_status(fake.credentials(), made.order_id))
    assert (status.state, status.failure_reason) == ("failed", "payment_failed")
    fake.pay(made.order_id)
    status = run(ADAPTER.order_status(fake.credentials(), made.order_id))
    assert status.state == "succeeded"


def test_refund_partial_idempotent_and_bounded(fake: FakeRazorpay) -> None:
    made = order(fake, 10_000)
    fake.pay(made.order_id)
    creds = fake.credentials()
    ref = str(uuid.uuid4())
    first = run(ADAPTER.refund(creds, order_id=made.order_id, payment_id=None, amount=4_000,
                               currency="INR", reference=ref))
    assert first.refund_id.startswith("rfnd_") and first.state == "pending"
    sent = [r for r in fake.requests if r["path"].endswith("/refund")][-1]
    assert sent["headers"]["x-refund-idempotency"] == ref
    assert json.loads(sent["body"])["amount"] == 4_000
    payment_id = fake.refunds[first.refund_id]["payment_id"]
    again = run(ADAPTER.refund(creds, order_id=made.order_id, payment_id=payment_id,
                               amount=4_000, currency="INR", reference=ref))
    assert again == first
    assert sum(r["payment_id"] == payment_id for r in fake.refunds.values()) == 1
    err = fails(ProviderRejected, ADAPTER.refund(
        creds, order_id=made.order_id, payment_id=payment_id, amount=5_000, currency="INR",
        reference=ref))
    assert err.field == "reference" and "idempotency key reused" in str(err)
    err = fails(ProviderRejected, ADAPTER.refund(
        creds, order_id=made.order_id, payment_id=payment_id, amount=6_001, currency="INR",
        reference=str(uuid.uuid4())))
    assert err.field == "amount"
    fake.refund_status = "processed"
    try:
        rest = run(ADAPTER.refund(creds, order_id=made.order_id, payment_id=payment_id,
                                  amount=6_000, currency="INR", reference=str(uuid.uuid4())))
    finally:
        fake.refund_status = "pending"
    assert rest.state == "succeeded"


def test_refund_of_an_unpaid_order_or_with_a_short_key_is_rejected(fake: FakeRazorpay) -> None:
    made = order(fake)
    err = fails(ProviderRejected, ADAPTER.refund(
        fake.credentials(), order_id=made.order_id, payment_id=None, amount=100,
        currency="INR", reference=str(uuid.uuid4())))
    assert err.field == "order_id"
    fake.pay(made.order_id)
    err = fails(ProviderRejected, ADAPTER.refund(
        fake.credentials(), order_id=made.order_id, payment_id=None, amount=100,
        currency="INR", reference="short"))
    assert err.field == "reference"


# --- webhooks -----------------------------------------------------------------------------------

def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def verify(fake: FakeRazorpay, body: bytes, headers: dict[str, str],
           creds: dict[str, str] | None = None) -> None:
    run(ADAPTER.verify_webhook(creds or fake.credentials(), body, lower(headers)))


def refused(fake: FakeRazorpay, body: bytes, headers: dict[str, str],
            creds: dict[str, str] | None = None) -> Refused:
    with pytest.raises(Refused) as caught:
        verify(fake, body, headers, creds)
    return caught.value


def test_good_webhook_passes_and_names_its_event(fake: FakeRazorpay) -> None:
    made = order(fake)
    body, headers = fake.webhook("payment.succeeded", made.order_id, event_id="JMgkwvqUfwCQ2x")
    verify(fake, body, headers)
    assert ADAPTER.webhook_event_id(body, lower(headers)) == "JMgkwvqUfwCQ2x"
    with pytest.raises(Refused) as caught:
        ADAPTER.webhook_event_id(body, {})
    assert caught.value.status == 400


def test_forged_tampered_reserialized_are_refused(fake: FakeRazorpay) -> None:
    made = order(fake, 5_000)
    body, headers = fake.webhook("payment.succeeded", made.order_id)
    # signed with the key secret instead of the webhook secret: a common mistake, and forged
    assert refused(fake, body, {**headers, **fake.sign(body, secret=fake.key_secret)}).status == 401
    tampered = body.replace(b'"amount": 5000', b'"amount": 5')
    assert tampered != body
    assert refused(fake, tampered, headers).reason == "bad_signature"
    reserialized = json.dumps(json.loads(body), indent=1).encode()
    assert reserialized != body
    assert refused(fake, reserialized, headers).status == 401
    no_signature = {k: v for k, v in headers.items() if k != "X-Razorpay-Signature"}
    assert refused(fake, body, no_signature).status == 401
    not_configured = refused(fake, body, headers, {"key_id": fake.key_id, "key_secret": "s"})
    assert (not_configured.status, not_configured.reason) == (401, "not_configured")


def test_signed_garbage_is_malformed(fake: FakeRazorpay) -> None:
    for body in (b"not json", b"[1, 2]", b'{"entity": "event"}'):
        assert refused(fake, body, fake.sign(body)).status == 400


def facts(fake: FakeRazorpay, delivery: tuple[bytes, dict[str, str]]) -> list[WebhookFact]:
    body, headers = delivery
    verify(fake, body, headers)
    return ADAPTER.webhook_facts(body, lower(headers))


def test_payment_facts(fake: FakeRazorpay) -> None:
    made = order(fake, 25_000)
    [bad] = facts(fake, fake.webhook("payment.failed", made.order_id))
    assert (bad.kind, bad.event_type, bad.state) == ("payment", "payment.failed", "failed")
    assert (bad.order_id, bad.failure_reason) == (made.order_id, "payment_failed")
    [ok] = facts(fake, fake.webhook("payment.succeeded", made.order_id))
    assert (ok.kind, ok.event_type, ok.state) == ("payment", "payment.captured", "succeeded")
    assert (ok.order_id, ok.amount, ok.currency) == (made.order_id, 25_000, "INR")
    assert ok.payment_id and fake.payments[ok.payment_id]["captured"]
    assert ok.payment_id != bad.payment_id
    # the delivery moved the fake: its status API agrees
    assert run(ADAPTER.order_status(fake.credentials(), made.order_id)).state == "succeeded"
    payment = fake.payments[ok.payment_id]
    [authorized] = facts(fake, fake.event("payment.authorized",
                                          payment=dict(payment, status="authorized")))
    assert (authorized.kind, authorized.state, authorized.payment_id) == (
        "payment", "pending", ok.payment_id)
    [paid] = facts(fake, fake.event("order.paid", payment=payment, order=fake.orders[made.order_id]))
    assert (paid.kind, paid.state, paid.order_id, paid.amount) == (
        "payment", "succeeded", made.order_id, 25_000)
    [other] = facts(fake, fake.event("payment.dispute.created", payment=payment))
    assert (other.kind, other.event_type) == ("other", "payment.dispute.created")


def test_refund_facts(fake: FakeRazorpay) -> None:
    made = order(fake, 9_000)
    fake.pay(made.order_id)
    result = run(ADAPTER.refund(fake.credentials(), order_id=made.order_id, payment_id=None,
                                amount=3_000, currency="INR", reference=str(uuid.uuid4())))
    [done] = facts(fake, fake.webhook("refund.succeeded", made.order_id, refund_id=result.refund_id))
    assert (done.kind, done.event_type, done.state) == ("refund", "refund.processed", "succeeded")
    assert (done.refund_id, done.order_id, done.amount, done.currency) == (
        result.refund_id, made.order_id, 3_000, "INR")
    assert done.payment_id == fake.refunds[result.refund_id]["payment_id"]
    [failed] = facts(fake, fake.webhook("refund.failed", made.order_id, refund_id=result.refund_id))
    assert (failed.kind, failed.state, failed.refund_id) == ("refund", "failed", result.refund_id)


def test_concurrent_refunds_never_exceed_the_payment(fake: FakeRazorpay) -> None:
    made = order(fake, 10_000)
    fake.pay(made.order_id)

    async def many() -> list[Any]:
        return list(await asyncio.gather(*(ADAPTER.refund(
            fake.credentials(), order_id=made.order_id, payment_id=None, amount=1_000,
            currency="INR", reference=str(uuid.uuid4())) for _ in range(20)),
            return_exceptions=True))

    # providers/http.py builds a client (and its TLS context) per call: 20 at once on this
    # shared 2-core machine can take longer than the 1 s bound the other tests use
    with settings_env(CAREWIRE_RAZORPAY_URL=fake.url, CAREWIRE_PAYMENT_TIMEOUT_SECONDS="10"):
        results = run(many())
    refunded = [r for r in results if not isinstance(r, BaseException)]
    rejected = [r for r in results if isinstance(r, ProviderRejected)]
    assert (len(refunded), len(rejected)) == (10, 10), results
    assert all(r.field == "amount" for r in rejected)
    assert sum(r["amount"] for r in fake.refunds.values()
               if r["payment_id"] in {
                   p["id"] for p in fake.payments.values() if p["order_id"] == made.order_id}
               ) == 10_000
