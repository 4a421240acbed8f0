"""The PayPal Orders v2 adapter against a local server speaking PayPal's REST API
(tests/billing/fakes/paypal.py), including verify-webhook-signature with the fake's own RSA key
and PayPal's CRC32 scheme. Settings point the adapter at it through the environment; nothing of
ours is patched."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from domain.billing.providers import adapter
from domain.billing.providers.base import ProviderError, ProviderRejected
from domain.billing.providers.paypal import ADAPTER, PayPal, cert_url_allowed
from domain.inbox.signatures import Refused
from tests.billing.adapter_calls import outcome, run
from tests.billing.fakes.paypal import PayPalFake, paypal_server

RETURN = "https://app.carewire.test/pay/done"


@pytest.fixture
def fake(configure: Callable[..., None]) -> Iterator[PayPalFake]:
    with paypal_server() as server:
        configure(**server.env())
        yield server


def create(fake: PayPalFake, amount: int = 5_000, currency: str = "USD",
           ref: str | None = None) -> str:
    made = run(ADAPTER.create_order(fake.credentials(), reference=ref or str(uuid.uuid4()),
                                    amount=amount, currency=currency,
                                    description="Video consultation", return_url=RETURN))
    return made.order_id


def test_registered_under_its_name() -> None:
    assert isinstance(adapter("paypal"), PayPal) and ADAPTER.name == "paypal"
    assert set(ADAPTER.required_fields) == {"client_id", "client_secret", "webhook_id"}


def test_create_order_sends_decimal_amount_and_returns_the_approve_link(fake: PayPalFake) -> None:
    ref = str(uuid.uuid4())
    made = run(ADAPTER.create_order(fake.credentials(), reference=ref, amount=123_450,
                                    currency="USD", description="Video consultation",
                                    return_url=RETURN))
    held = fake.orders[made.order_id]
    unit = held.request["purchase_units"][0]
    assert held.request["intent"] == "CAPTURE"
    assert unit["amount"] == {"currency_code": "USD", "value": "1234.50"}
    assert unit["reference_id"] == ref and unit["custom_id"] == ref
    assert made.checkout == {"approve_url": f"https://www.paypal.com/checkoutnow?token={held.id}",
                             "order_id": held.id}
    assert fake.replies[ref][1] == 200  # sent with PayPal-Request-Id = our reference
    assert fake.grants == 1


def test_zero_decimal_currency_is_sent_without_decimals(fake: PayPalFake) -> None:
    oid = create(fake, 1_500, "JPY")
    assert fake.orders[oid].request["purchase_units"][0]["amount"] == {
        "currency_code": "JPY", "value": "1500"}


def test_retried_create_returns_the_same_order(fake: PayPalFake) -> None:
    ref = str(uuid.uuid4())
    assert create(fake, ref=ref) == create(fake, ref=ref)
    assert len(fake.orders) == 1


def test_unsupported_currency_is_rejected_naming_currency(fake: PayPalFake) -> None:
    got = outcome(ADAPTER.create_order(fake.credentials(), reference=str(uuid.uuid4()),
                                       amount=5_000, currency="KWD", description="x",
                                       return_url=RETURN))
    assert isinstance(got, ProviderRejected) and got.field == "currency"
    assert fake.orders == {}


def test_approved_order_is_captured_by_order_status(fake: PayPalFake) -> None:
    oid = create(fake, 5_000)
    assert run(ADAPTER.order_status(fake.credentials(), oid)).state == "pending"
    fake.approve(oid)
    status = run(ADAPTER.order_status(fake.credentials(), oid))
    [capture_id] = fake.orders[oid].captures
    assert (status.state, status.payment_id, status.amount, status.currency) == (
        "succeeded", capture_id, 5_000, "USD")
    assert ("POST", f"/v2/checkout/orders/{oid}/capture") in fake.requests
    captures_before = len(fake.captures)
    again = run(ADAPTER.order_status(fake.credentials(), oid))  # completed: read, not captured
    assert again == status and len(fake.captures) == captures_before


def test_concurrent_status_checks_capture_once(fake: PayPalFake) -> None:
    oid = create(fake, 6_000)
    fake.approve(oid)

    async def checks() -> list[Any]:
        return await asyncio.gather(*(ADAPTER.order_status(fake.credentials(), oid)
                                      for _ in range(6)))

    answers = run(checks())
    [capture_id] = fake.orders[oid].captures
    assert {(a.state, a.payment_id, a.amount) for a in answers} == {("succeeded", capture_id, 6_000)}


def test_paid_at_paypal_reads_the_capture(fake: PayPalFake) -> None:
    oid = create(fake, 7_700, "EUR")
    fake.pay(oid)
    status = run(ADAPTER.order_status(fake.credentials(), oid))
    assert (status.state, status.amount, status.currency) == ("succeeded", 7_700, "EUR")
    assert ("POST", f"/v2/checkout/orders/{oid}/capture") not in fake.requests


def test_declined_instrument_is_failed(fake: PayPalFake) -> None:
    oid = create(fake)
    fake.decline(oid)
    status = run(ADAPTER.order_status(fake.credentials(), oid))
    assert (status.state, status.failure_reason) == ("failed", "INSTRUMENT_DECLINED")
    assert fake.orders[oid].captures == []
    fake.approve(oid)  # the buyer approves again with another instrument
    retried = run(ADAPTER.order_status(fake.credentials(), oid))
    assert (retried.state, retried.payment_id) == ("succeeded", fake.orders[oid].captures[0])


def test_revoked_token_is_refreshed_once(fake: PayPalFake) -> None:
    oid = create(fake)
    fake.revoke_tokens()
    assert run(ADAPTER.order_status(fake.credentials(), oid)).state == "pending"
    assert fake.grants == 2


def test_bad_client_secret_is_rejected_as_credentials(fake: PayPalFake) -> None:
    creds = {**fake.credentials(), "client_secret": "nope"}
    got = outcome(ADAPTER.create_order(creds, reference=str(uuid.uuid4()), amount=5_000,
                                       currency="USD", description="x", return_url=RETURN))
    assert isinstance(got, ProviderRejected) and got.field == "credentials"
    assert fake.orders == {}


def test_refund_is_idempotent_and_bounded(fake: PayPalFake) -> None:
    oid = create(fake, 10_000)
    fake.pay(oid)
    [capture_id] = fake.orders[oid].captures
    creds, ref = fake.credentials(), str(uuid.uuid4())
    one = run(ADAPTER.refund(creds, order_id=oid, payment_id=capture_id, amount=2_500,
                             currency="USD", reference=ref))
    two = run(ADAPTER.refund(creds, order_id=oid, payment_id=capture_id, amount=2_500,
                             currency="USD", reference=ref))
    assert one == two and one.state == "succeeded" and len(fake.refunds) == 1
    assert fake.refunds[one.refund_id]["refund"]["amount"] == {"currency_code": "USD",
                                                                "value": "25.00"}
    over = outcome(ADAPTER.refund(creds, order_id=oid, payment_id=capture_id, amount=7_501,
                                  currency="USD", reference=str(uuid.uuid4())))
    assert isinstance(over, ProviderRejected) and over.field == "amount"
    assert "REFUND_AMOUNT_EXCEEDED" in str(over) and len(fake.refunds) == 1
    fake.refund_status = "PENDING"
    rest = run(ADAPTER.refund(creds, order_id=oid, payment_id=capture_id, amount=7_500,
                              currency="USD", reference=str(uuid.uuid4())))
    assert rest.state == "pending"


def test_refund_without_capture_id_reaches_no_server(fake: PayPalFake) -> None:
    got = outcome(ADAPTER.refund(fake.credentials(), order_id="X", payment_id=None, amount=100,
                                 currency="USD", reference=str(uuid.uuid4())))
    assert isinstance(got, ProviderRejected) and got.field == "payment_id"
    assert fake.requests == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_provider_errors(fake: PayPalFake, status: int) -> None:
    create(fake)  # token cached: the fault hits the order call
    fake.fail_next(1, status)
    got = outcome(ADAPTER.create_order(fake.credentials(), reference=str(uuid.uuid4()),
                                       amount=5_000, currency="USD", description="x",
                                       return_url=RETURN))
    assert isinstance(got, ProviderError) and got.status == 503
    assert len(fake.orders) == 1


def test_timeout_is_a_provider_error(fake: PayPalFake, configure: Callable[..., None]) -> None:
    configure(payment_timeout_seconds="0.5")
    fake.hang_next(1)
    got = outcome(ADAPTER.create_order(fake.credentials(), reference=str(uuid.uuid4()),
                                       amount=5_000, currency="USD", description="x",
                                       return_url=RETURN))
    assert isinstance(got, ProviderError) and fake.orders == {}


# --- webhooks ---------------------------------------------------------------------------------


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def verify(fake: PayPalFake, body: bytes, headers: dict[str, str],
           creds: dict[str, str] | None = None) -> Any:
    return outcome(ADAPTER.verify_webhook(creds or fake.credentials(), body, lower(headers)))


def paid(fake: PayPalFake, amount: int = 5_000) -> str:
    oid = create(fake, amount)
    fake.pay(oid)
    return oid


def test_genuine_webhook_verifies_and_reads_as_a_payment(fake: PayPalFake) -> None:
    oid = paid(fake, 4_200)
    body, headers = fake.webhook("payment.succeeded", oid, event_id="WH-FIXED-1")
    assert verify(fake, body, headers) is None
    assert fake.verifications == [headers["PAYPAL-TRANSMISSION-ID"]]
    assert ADAPTER.webhook_event_id(body, lower(headers)) == "WH-FIXED-1"
    [fact] = ADAPTER.webhook_facts(body, lower(headers))
    assert (fact.kind, fact.event_type, fact.order_id, fact.payment_id, fact.state,
            fact.amount, fact.currency) == (
        "payment", "PAYMENT.CAPTURE.COMPLETED", oid, fake.orders[oid].captures[0], "succeeded",
        4_200, "USD")


def test_declined_and_refund_facts(fake: PayPalFake) -> None:
    oid = create(fake)
    fake.decline(oid)
    body, headers = fake.webhook("payment.failed", oid)
    assert verify(fake, body, headers) is None
    [fact] = ADAPTER.webhook_facts(body, headers)
    assert (fact.kind, fact.state, fact.order_id, fact.failure_reason) == (
        "payment", "failed", oid, "DECLINED_BY_RISK_FRAUD_FILTERS")
    oid = paid(fake, 9_000)
    [capture_id] = fake.orders[oid].captures
    refund = run(ADAPTER.refund(fake.credentials(), order_id=oid, payment_id=capture_id,
                                amount=3_000, currency="USD", reference=str(uuid.uuid4())))
    for kind, state in (("refund.succeeded", "succeeded"), ("refund.failed", "failed")):
        body, headers = fake.webhook(kind, oid, refund_id=refund.refund_id)  # type: ignore[arg-type]
        assert verify(fake, body, headers) is None
        [fact] = ADAPTER.webhook_facts(body, headers)
        assert (fact.kind, fact.payment_id, fact.refund_id, fact.state, fact.amount) == (
            "refund", capture_id, refund.refund_id, state, 3_000)


def test_approved_order_event_is_a_pending_payment_fact() -> None:
    body = json.dumps({"id": "WH-1", "event_type": "CHECKOUT.ORDER.APPROVED",
                       "resource": {"id": "ORDER1", "status": "APPROVED"}}).encode()
    [fact] = ADAPTER.webhook_facts(body, {})
    assert (fact.kind, fact.order_id, fact.state) == ("payment", "ORDER1", "pending")
    body = json.dumps({"id": "WH-2", "event_type": "PAYMENT.CAPTURE.REVERSED",
                       "resource": {"id": "C1"}}).encode()
    assert [f.kind for f in ADAPTER.webhook_facts(body, {})] == ["other"]


def test_tampered_body_is_refused(fake: PayPalFake) -> None:
    oid = paid(fake, 5_000)
    body, headers = fake.webhook("payment.succeeded", oid)
    tampered = body.replace(b'"50.00"', b'"5000.00"')
    assert tampered != body
    got = verify(fake, tampered, headers)
    assert isinstance(got, Refused) and got.status == 401


def test_reserialized_body_is_refused(fake: PayPalFake) -> None:
    oid = paid(fake)
    body, headers = fake.webhook("payment.succeeded", oid)
    reencoded = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert json.loads(reencoded) == json.loads(body) and reencoded != body
    got = verify(fake, reencoded, headers)
    assert isinstance(got, Refused) and got.status == 401


def test_signature_by_another_key_and_other_webhook_id_are_refused(fake: PayPalFake) -> None:
    oid = paid(fake)
    body, headers = fake.webhook("payment.succeeded", oid)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = (f"{headers['PAYPAL-TRANSMISSION-ID']}|{headers['PAYPAL-TRANSMISSION-TIME']}|"
               f"{fake.webhook_id}|{zlib.crc32(body)}").encode()
    sig = base64.b64encode(other.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    forged = verify(fake, body, {**headers, "PAYPAL-TRANSMISSION-SIG": sig})
    assert isinstance(forged, Refused) and forged.status == 401
    elsewhere = verify(fake, body, headers, {**fake.credentials(), "webhook_id": "OTHERHOOK"})
    assert isinstance(elsewhere, Refused) and elsewhere.status == 401


def test_missing_headers_and_malformed_bodies(fake: PayPalFake) -> None:
    oid = paid(fake)
    body, headers = fake.webhook("payment.succeeded", oid)
    missing = verify(fake, body, {k: v for k, v in headers.items()
                                  if k != "PAYPAL-TRANSMISSION-SIG"})
    assert isinstance(missing, Refused) and missing.status == 401
    for bad in (b"not json", b"[]", b'{"id": "WH-1"}'):
        got = verify(fake, bad, fake.sign(bad))
        assert isinstance(got, Refused) and got.status == 400
    no_id = json.dumps({"event_type": "PAYMENT.CAPTURE.COMPLETED"}).encode()
    with pytest.raises(Refused) as refused:
        ADAPTER.webhook_event_id(no_id, {})
    assert refused.value.status == 400


def test_verification_api_down_or_hanging_is_503(fake: PayPalFake,
                                                  configure: Callable[..., None]) -> None:
    oid = paid(fake)
    body, headers = fake.webhook("payment.succeeded", oid)
    create(fake)  # token cached
    fake.fail_next(1, 500)
    down = verify(fake, body, headers)
    assert isinstance(down, Refused) and down.status == 503
    configure(payment_timeout_seconds="0.5")
    fake.hang_next(1)
    hung = verify(fake, body, headers)
    assert isinstance(hung, Refused) and hung.status == 503


@pytest.mark.parametrize("cert_url", [
    "http://api.paypal.com/v1/notifications/certs/CERT-1",
    "https://evil.example/v1/notifications/certs/CERT-1",
    "https://paypal.com.evil.example/cert",
    "https://evilpaypal.com/cert",
    "https://api.paypal.com@evil.example/cert",
    "https://evil.example\\@api.paypal.com/cert",
    "https://api.paypal.com:8443/cert",
    "https://api.paypal.com.:443x/cert",
    "https://api.paypal.com /cert",
    "file:///etc/passwd",
    "//api.paypal.com/cert",
])
def test_cert_url_off_paypal_is_refused_without_any_request(fake: PayPalFake, cert_url: str) -> None:
    oid = paid(fake)
    body, headers = fake.webhook("payment.succeeded", oid)
    before = list(fake.requests)
    got = verify(fake, body, {**headers, "PAYPAL-CERT-URL": cert_url})
    assert isinstance(got, Refused) and got.status == 401 and got.reason == "bad_cert_url"
    assert fake.requests == before and fake.verifications == []
    # the same delivery with PayPal's URL does reach the verification API (and passes)
    assert verify(fake, body, headers) is None and len(fake.requests) == len(before) + 1


def test_paypal_hosts_pass_the_cert_url_check() -> None:
    assert cert_url_allowed("https://api.paypal.com/v1/notifications/certs/CERT-360caa42")
    assert cert_url_allowed("https://api.sandbox.paypal.com:443/v1/notifications/certs/C")
    assert cert_url_allowed("https://paypal.com/cert")
    assert not cert_url_allowed("https://api.paypal.co/cert")


def test_webhooks_move_the_fake_forward_never_back(fake: PayPalFake) -> None:
    """End-to-end tests post events in any order without driving the fake first: what each
    event says is then what the API says too, and a completed capture stays completed."""
    oid = create(fake, 8_000)
    body, headers = fake.webhook("payment.succeeded", oid)
    assert verify(fake, body, headers) is None
    status = run(ADAPTER.order_status(fake.credentials(), oid))
    assert (status.state, status.payment_id) == ("succeeded", fake.orders[oid].captures[0])
    late_failure, headers = fake.webhook("payment.failed", oid)
    assert verify(fake, late_failure, headers) is None
    assert ADAPTER.webhook_facts(late_failure, {})[0].state == "failed"
    assert run(ADAPTER.order_status(fake.credentials(), oid)).state == "succeeded"
    body, headers = fake.webhook("refund.succeeded", oid, refund_id="RFGIVEN1")
    assert verify(fake, body, headers) is None
    [fact] = ADAPTER.webhook_facts(body, {})
    assert (fact.kind, fact.payment_id, fact.refund_id, fact.state, fact.amount) == (
        "refund", status.payment_id, "RFGIVEN1", "succeeded", 8_000)
    failed, _ = fake.webhook("refund.failed", oid, refund_id="RFGIVEN1")
    assert ADAPTER.webhook_facts(failed, {})[0].state == "failed"
    # the failed refund gave the amount back: the whole capture is refundable again
    again = run(ADAPTER.refund(fake.credentials(), order_id=oid, payment_id=status.payment_id,
                               amount=8_000, currency="USD", reference=str(uuid.uuid4())))
    assert again.state == "succeeded"
