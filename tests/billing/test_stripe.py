"""The Stripe adapter (the official SDK, its async HTTPX client) against the local Stripe.

Each call runs in its own event loop (`run`), the adapter's HTTP client closed with it. What the
fake received (form params, Idempotency-Key, Stripe-Version) and how every failure is classified
(ProviderError / ProviderRejected / Refused) are asserted; nothing of ours is patched.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest

from domain.billing.providers import adapter
from domain.billing.providers import stripe as stripe_adapter
from domain.billing.providers.base import ProviderError, ProviderRejected, WebhookFact
from domain.inbox.signatures import Refused
from tests import servers
from tests.billing.fakes.stripe import API_VERSION, FakeStripe
from tests.communication.test_email_providers import settings_env

T = TypeVar("T")
TIMEOUT = 1.0
ADAPTER = stripe_adapter.ADAPTER


def run(coro: Awaitable[T]) -> T:
    async def go() -> T:
        try:
            return await coro
        finally:
            await stripe_adapter.close()

    return asyncio.run(go())


def fails(exc_type: type[Exception], coro: Awaitable[Any]) -> Any:
    with pytest.raises(exc_type) as caught:
        run(coro)
    return caught.value


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe().start()
    with settings_env(CAREWIRE_STRIPE_URL=server.url,
                      CAREWIRE_PAYMENT_TIMEOUT_SECONDS=str(TIMEOUT)):
        yield server
    server.stop()


def order(fake: FakeStripe, amount: int = 50_000, currency: str = "INR",
          reference: str | None = None) -> Any:
    return run(ADAPTER.create_order(fake.credentials(), reference=reference or str(uuid.uuid4()),
                                    amount=amount, currency=currency,
                                    description="Video consultation",
                                    return_url="https://app.carewire.test/paid"))


def creates(fake: FakeStripe) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == "/v1/payment_intents"]


def test_registered_under_its_name() -> None:
    assert adapter("stripe") is ADAPTER
    assert ADAPTER.required_fields == ("secret_key", "webhook_secret")


def test_create_order_sends_what_stripe_takes(fake: FakeStripe) -> None:
    reference = str(uuid.uuid4())
    made = order(fake, 50_000, "INR", reference)
    assert made.order_id.startswith("pi_")
    assert made.checkout == {"client_secret": fake.intents[made.order_id]["client_secret"]}
    assert made.checkout["client_secret"].startswith(made.order_id + "_secret_")
    sent = creates(fake)[-1]
    assert sent["params"]["amount"] == "50000"
    assert sent["params"]["currency"] == "inr"
    assert sent["params"]["metadata"] == {"reference": reference}
    assert sent["params"]["automatic_payment_methods"] == {"enabled": "true"}
    assert sent["headers"]["idempotency-key"] == reference
    assert sent["headers"]["stripe-version"] == API_VERSION
    assert sent["headers"]["authorization"] == f"Bearer {fake.secret_key}"


def test_same_reference_is_the_same_intent(fake: FakeStripe) -> None:
    reference = str(uuid.uuid4())
    before = len(fake.intents)
    first = order(fake, 1200, "USD", reference)
    again = order(fake, 1200, "USD", reference)
    assert again == first
    assert len(fake.intents) == before + 1


def test_reference_reused_for_another_amount_is_rejected(fake: FakeStripe) -> None:
    reference = str(uuid.uuid4())
    order(fake, 1200, "USD", reference)
    err = fails(ProviderRejected, ADAPTER.create_order(
        fake.credentials(), reference=reference, amount=1300, currency="USD", description="x",
        return_url="https://app.carewire.test/paid"))
    assert err.field == "reference"


def test_one_5xx_is_retried_by_the_sdk_with_the_same_key(fake: FakeStripe) -> None:
    before = len(fake.intents)
    fake.fail_next(1, 500)
    seen = len(creates(fake))
    made = order(fake)
    tries = creates(fake)[seen:]
    assert len(tries) == 2
    assert tries[0]["headers"]["idempotency-key"] == tries[1]["headers"]["idempotency-key"]
    assert made.order_id in fake.intents
    assert len(fake.intents) == before + 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_provider_errors(fake: FakeStripe, status: int) -> None:
    """5xx are retried twice by the SDK (same key), 429 not at all; then ProviderError."""
    before = len(fake.intents)
    seen = len(creates(fake))
    fake.fail_next(3, status)
    with settings_env(CAREWIRE_STRIPE_URL=fake.url, CAREWIRE_PAYMENT_TIMEOUT_SECONDS="8"):
        err = fails(ProviderError, ADAPTER.create_order(
            fake.credentials(), reference=str(uuid.uuid4()), amount=100, currency="USD",
            description="x", return_url="https://app.carewire.test/paid"))
    assert err.status == 503 and err.retry_after > 0
    assert ("rate limited" if status == 429 else f"server error {status}") in str(err)
    assert len(creates(fake)) - seen == (1 if status == 429 else 3)
    assert len(fake.intents) == before
    fake.clear_faults()


def test_timeout_is_a_provider_error_within_the_bound(fake: FakeStripe) -> None:
    fake.hang_next(3)
    started = time.monotonic()
    err = fails(ProviderError, ADAPTER.create_order(
        fake.credentials(), reference=str(uuid.uuid4()), amount=100, currency="USD",
        description="x", return_url="https://app.carewire.test/paid"))
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert err.status == 503
    fake.clear_faults()


def test_unreachable_stripe_is_a_provider_error(fake: FakeStripe) -> None:
    with settings_env(CAREWIRE_STRIPE_URL=f"http://127.0.0.1:{servers.free_port()}",
                      CAREWIRE_PAYMENT_TIMEOUT_SECONDS=str(TIMEOUT)):
        err = fails(ProviderError, ADAPTER.order_status(fake.credentials(), "pi_nothing"))
    assert "cannot reach" in str(err) or "in time" in str(err)


def test_refusals_name_the_field(fake: FakeStripe) -> None:
    bad_key = {**fake.credentials(), "secret_key": "sk_test_wrong"}
    err = fails(ProviderRejected, ADAPTER.create_order(
        bad_key, reference=str(uuid.uuid4()), amount=100, currency="USD", description="x",
        return_url="https://app.carewire.test/paid"))
    assert err.field == "credentials"
    assert "sk_test_wrong" not in str(err)
    err = fails(ProviderRejected, ADAPTER.create_order(
        fake.credentials(), reference=str(uuid.uuid4()), amount=0, currency="USD",
        description="x", return_url="https://app.carewire.test/paid"))
    assert err.field == "amount"
    err = fails(ProviderRejected, ADAPTER.create_order(
        fake.credentials(), reference=str(uuid.uuid4()), amount=100, currency="US$",
        description="x", return_url="https://app.carewire.test/paid"))
    assert err.field == "currency"
    err = fails(ProviderRejected, ADAPTER.order_status(fake.credentials(), "pi_unknown"))
    assert "resource_missing" in str(err)
    err = fails(ProviderRejected, ADAPTER.create_order(
        {}, reference=str(uuid.uuid4()), amount=100, currency="USD", description="x",
        return_url="https://app.carewire.test/paid"))
    assert err.field == "credentials"


def test_status_pending_then_paid(fake: FakeStripe) -> None:
    made = order(fake, 70_000, "INR")
    status = run(ADAPTER.order_status(fake.credentials(), made.order_id))
    assert status.state == "pending" and status.payment_id is None
    fake.pay(made.order_id)
    status = run(ADAPTER.order_status(fake.credentials(), made.order_id))
    assert status.state == "succeeded"
    assert (status.amount, status.currency) == (70_000, "INR")
    assert status.payment_id == fake.intents[made.order_id]["latest_charge"]
    assert status.payment_id and status.payment_id.startswith("ch_")


def test_status_after_decline_is_failed(fake: FakeStripe) -> None:
    made = order(fake)
    fake.decline(made.order_id)
    status = run(ADAPTER.order_status(fake.credentials(), made.order_id))
    assert status.state == "failed"
    assert status.failure_reason == "generic_decline"


def test_refund_partial_idempotent_and_bounded(fake: FakeStripe) -> None:
    made = order(fake, 10_000, "USD")
    fake.pay(made.order_id)
    creds = fake.credentials()
    ref = str(uuid.uuid4())
    first = run(ADAPTER.refund(creds, order_id=made.order_id, payment_id=None, amount=4_000,
                               currency="USD", reference=ref))
    assert first.refund_id.startswith("re_") and first.state == "pending"
    sent = [r for r in fake.requests if r["path"] == "/v1/refunds"][-1]
    assert sent["params"]["payment_intent"] == made.order_id
    assert sent["params"]["amount"] == "4000"
    assert sent["headers"]["idempotency-key"] == ref
    again = run(ADAPTER.refund(creds, order_id=made.order_id, payment_id=None, amount=4_000,
                               currency="USD", reference=ref))
    assert again == first
    assert sum(r["payment_intent"] == made.order_id for r in fake.refunds.values()) == 1
    err = fails(ProviderRejected, ADAPTER.refund(
        creds, order_id=made.order_id, payment_id=None, amount=6_001, currency="USD",
        reference=str(uuid.uuid4())))
    assert err.field == "amount"
    fake.refund_status = "succeeded"
    try:
        rest = run(ADAPTER.refund(creds, order_id=made.order_id, payment_id=None, amount=6_000,
                                  currency="USD", reference=str(uuid.uuid4())))
    finally:
        fake.refund_status = "pending"
    assert rest.state == "succeeded"


def test_refund_of_an_unpaid_intent_is_rejected(fake: FakeStripe) -> None:
    made = order(fake)
    err = fails(ProviderRejected, ADAPTER.refund(
        fake.credentials(), order_id=made.order_id, payment_id=None, amount=100, currency="INR",
        reference=str(uuid.uuid4())))
    assert err.field == "order_id"


# --- webhooks -----------------------------------------------------------------------------------

def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def verify(fake: FakeStripe, body: bytes, headers: dict[str, str],
           creds: dict[str, str] | None = None) -> None:
    run(ADAPTER.verify_webhook(creds or fake.credentials(), body, lower(headers)))


def refused(fake: FakeStripe, body: bytes, headers: dict[str, str],
            creds: dict[str, str] | None = None) -> Refused:
    with pytest.raises(Refused) as caught:
        verify(fake, body, headers, creds)
    return caught.value


def test_good_webhook_passes_and_names_its_event(fake: FakeStripe) -> None:
    made = order(fake)
    body, headers = fake.webhook("payment.succeeded", made.order_id, event_id="evt_fixed_1")
    verify(fake, body, headers)
    assert ADAPTER.webhook_event_id(body, lower(headers)) == "evt_fixed_1"


def test_forged_tampered_stale_reserialized_are_refused(fake: FakeStripe) -> None:
    made = order(fake, 5_000, "USD")
    body, headers = fake.webhook("payment.succeeded", made.order_id)
    forged = fake.sign(body, secret="whsec_not_the_clinics")
    assert refused(fake, body, forged).status == 401
    tampered = body.replace(b'"amount": 5000', b'"amount": 5')
    assert tampered != body
    assert refused(fake, tampered, headers).reason == "bad_signature"
    stale = refused(fake, body, fake.sign(body, timestamp=int(time.time()) - 301))
    assert (stale.status, stale.reason) == (401, "stale")
    verify(fake, body, fake.sign(body, timestamp=int(time.time()) - 290))
    reserialized = json.dumps(json.loads(body)).encode()
    assert reserialized != body
    assert refused(fake, reserialized, headers).status == 401
    assert refused(fake, body, {}).status == 401
    assert refused(fake, body, {"Stripe-Signature": "garbage"}).status == 401
    not_configured = refused(fake, body, headers, {"secret_key": fake.secret_key})
    assert (not_configured.status, not_configured.reason) == (401, "not_configured")


def test_signed_garbage_is_malformed(fake: FakeStripe) -> None:
    body = b"not json"
    assert refused(fake, body, fake.sign(body)).status == 400
    no_id = b'{"object": "event", "type": "payment_intent.succeeded"}'
    verify(fake, no_id, fake.sign(no_id))
    with pytest.raises(Refused) as caught:
        ADAPTER.webhook_event_id(no_id, {})
    assert caught.value.status == 400


def facts(fake: FakeStripe, delivery: tuple[bytes, dict[str, str]]) -> list[WebhookFact]:
    body, headers = delivery
    verify(fake, body, headers)
    return ADAPTER.webhook_facts(body, lower(headers))


def test_payment_facts(fake: FakeStripe) -> None:
    made = order(fake, 25_000, "INR")
    [ok] = facts(fake, fake.webhook("payment.succeeded", made.order_id))
    assert (ok.kind, ok.event_type, ok.state) == ("payment", "payment_intent.succeeded", "succeeded")
    assert (ok.order_id, ok.amount, ok.currency) == (made.order_id, 25_000, "INR")
    assert ok.payment_id and ok.payment_id.startswith("ch_")
    # the delivery moved the fake: its status API agrees
    assert run(ADAPTER.order_status(fake.credentials(), made.order_id)).state == "succeeded"
    [bad] = facts(fake, fake.webhook("payment.failed", made.order_id))
    assert (bad.kind, bad.event_type, bad.state) == ("payment", "payment_intent.payment_failed",
                                                      "failed")
    assert (bad.order_id, bad.failure_reason) == (made.order_id, "generic_decline")
    pi = dict(fake.intents[made.order_id], status="processing")
    [processing] = facts(fake, fake.event("payment_intent.processing", pi))
    assert (processing.kind, processing.state) == ("payment", "pending")
    pi = dict(fake.intents[made.order_id], status="canceled")
    [canceled] = facts(fake, fake.event("payment_intent.canceled", pi))
    assert (canceled.kind, canceled.state) == ("payment", "failed")


def test_refund_facts(fake: FakeStripe) -> None:
    made = order(fake, 9_000, "USD")
    fake.pay(made.order_id)
    result = run(ADAPTER.refund(fake.credentials(), order_id=made.order_id, payment_id=None,
                                amount=3_000, currency="USD", reference=str(uuid.uuid4())))
    [done] = facts(fake, fake.webhook("refund.succeeded", made.order_id, refund_id=result.refund_id))
    assert (done.kind, done.event_type, done.state) == ("refund", "refund.updated", "succeeded")
    assert (done.refund_id, done.order_id, done.amount, done.currency) == (
        result.refund_id, made.order_id, 3_000, "USD")
    assert done.payment_id == fake.intents[made.order_id]["latest_charge"]
    [failed] = facts(fake, fake.webhook("refund.failed", made.order_id, refund_id=result.refund_id))
    assert (failed.kind, failed.state, failed.refund_id) == ("refund", "failed", result.refund_id)
    assert failed.failure_reason == "expired_or_canceled_card"
    charge = {"id": "ch_x", "object": "charge", "amount_refunded": 3_000}
    [other] = facts(fake, fake.event("charge.refunded", charge))
    assert (other.kind, other.event_type) == ("other", "charge.refunded")


# --- concurrency --------------------------------------------------------------------------------

def test_concurrent_creates_with_one_reference_make_one_intent(fake: FakeStripe) -> None:
    reference = str(uuid.uuid4())

    async def many() -> list[Any]:
        return list(await asyncio.gather(*(ADAPTER.create_order(
            fake.credentials(), reference=reference, amount=4_200, currency="EUR",
            description="x", return_url="https://app.carewire.test/paid") for _ in range(20))))

    made = run(many())
    assert {m.order_id for m in made} == {made[0].order_id}
    assert sum(pi["metadata"].get("reference") == reference for pi in fake.intents.values()) == 1


def test_concurrent_refunds_never_exceed_the_payment(fake: FakeStripe) -> None:
    made = order(fake, 10_000, "USD")
    fake.pay(made.order_id)

    async def many() -> list[Any]:
        return list(await asyncio.gather(*(ADAPTER.refund(
            fake.credentials(), order_id=made.order_id, payment_id=None, amount=1_000,
            currency="USD", reference=str(uuid.uuid4())) for _ in range(20)),
            return_exceptions=True))

    results = run(many())
    refunded = [r for r in results if not isinstance(r, BaseException)]
    rejected = [r for r in results if isinstance(r, ProviderRejected)]
    assert (len(refunded), len(rejected)) == (10, 10)
    assert all(r.field == "amount" for r in rejected)
    assert sum(r["amount"] for r in fake.refunds.values()
               if r["payment_intent"] == made.order_id) == 10_000
