"""The PhonePe PG v2 adapter against a local server speaking PhonePe's API
(tests/billing/fakes/phonepe.py). Settings point the adapter at it through the environment;
nothing of ours is patched. Each test asserts what the server holds or refused and what the
adapter answered."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from domain.billing.providers import adapter
from domain.billing.providers.base import ProviderError, ProviderRejected
from domain.billing.providers.phonepe import ADAPTER, PhonePe
from domain.inbox.signatures import Refused
from tests.billing.adapter_calls import outcome, run
from tests.billing.fakes.phonepe import PhonePeFake, phonepe_server

RETURN = "https://app.carewire.test/pay/done"


@pytest.fixture
def fake(configure: Callable[..., None]) -> Iterator[PhonePeFake]:
    with phonepe_server() as server:
        configure(**server.env())
        yield server


def reference() -> str:
    return str(uuid.uuid4())


def order(fake: PhonePeFake, amount: int = 50_000) -> str:
    made = run(ADAPTER.create_order(fake.credentials(), reference=reference(), amount=amount,
                                    currency="INR", description="Video consultation",
                                    return_url=RETURN))
    return made.order_id


def test_registered_under_its_name() -> None:
    assert isinstance(adapter("phonepe"), PhonePe) and ADAPTER.name == "phonepe"
    assert set(ADAPTER.required_fields) == {"client_id", "client_secret", "client_version",
                                            "webhook_username", "webhook_password"}


def test_create_order_grants_a_token_and_opens_a_checkout(fake: PhonePeFake) -> None:
    ref = reference()
    made = run(ADAPTER.create_order(fake.credentials(), reference=ref, amount=50_000,
                                    currency="INR", description="Video consultation",
                                    return_url=RETURN))
    assert made.order_id == ref
    held = fake.orders[ref]
    assert held.amount == 50_000 and held.state == "PENDING"
    assert made.checkout == {"redirect_url": held.redirect_url}
    assert fake.grants == 1
    assert fake.requests == [("POST", "/identity-manager/v1/oauth/token"),
                             ("POST", "/pg/checkout/v2/pay")]


def test_token_is_reused_until_refused_then_refreshed_once(fake: PhonePeFake) -> None:
    first = order(fake)
    order(fake)
    assert fake.grants == 1  # cached across calls
    fake.expire_tokens()  # PhonePe now answers 401 to the cached token
    status = run(ADAPTER.order_status(fake.credentials(), first))
    assert status.state == "pending"
    assert fake.grants == 2
    assert [p for _, p in fake.requests[-3:]] == [
        f"/pg/checkout/v2/order/{first}/status", "/identity-manager/v1/oauth/token",
        f"/pg/checkout/v2/order/{first}/status"]


def test_a_token_near_its_expiry_is_not_used(configure: Callable[..., None]) -> None:
    with phonepe_server(token_lifetime=30) as server:  # inside the 60 s margin
        configure(**server.env())
        order(server)
        order(server)
        assert server.grants == 2


def test_a_burst_without_a_token_makes_one_grant(fake: PhonePeFake) -> None:
    async def burst() -> list[Any]:
        return await asyncio.gather(*(ADAPTER.create_order(
            fake.credentials(), reference=reference(), amount=10_000, currency="INR",
            description="x", return_url=RETURN) for _ in range(8)))

    made = run(burst())
    assert len({m.order_id for m in made}) == 8 and len(fake.orders) == 8
    assert fake.grants == 1


def test_bad_client_secret_is_rejected_as_credentials(fake: PhonePeFake) -> None:
    creds = {**fake.credentials(), "client_secret": "wrong"}
    got = outcome(ADAPTER.create_order(creds, reference=reference(), amount=10_000,
                                       currency="INR", description="x", return_url=RETURN))
    assert isinstance(got, ProviderRejected) and got.field == "credentials"
    assert fake.orders == {}


def test_status_after_pay_and_after_decline(fake: PhonePeFake) -> None:
    paid, declined = order(fake, 20_000), order(fake, 30_000)
    fake.pay(paid)
    fake.decline(declined)
    ok = run(ADAPTER.order_status(fake.credentials(), paid))
    assert ok.state == "succeeded" and ok.amount == 20_000 and ok.currency == "INR"
    assert ok.payment_id == fake.orders[paid].attempts[-1]["transactionId"]
    bad = run(ADAPTER.order_status(fake.credentials(), declined))
    assert bad.state == "failed" and bad.failure_reason == "PAYMENT_DECLINED"


def test_retried_create_names_the_same_order(fake: PhonePeFake) -> None:
    ref = reference()
    args: dict[str, Any] = dict(reference=ref, amount=10_000, currency="INR", description="x",
                                return_url=RETURN)
    one = run(ADAPTER.create_order(fake.credentials(), **args))
    two = run(ADAPTER.create_order(fake.credentials(), **args))
    assert one == two and len(fake.orders) == 1


def test_refund_is_idempotent_by_reference_and_bounded(fake: PhonePeFake) -> None:
    oid = order(fake, 10_000)
    fake.pay(oid)
    ref = reference()
    creds = fake.credentials()
    first = run(ADAPTER.refund(creds, order_id=oid, payment_id=None, amount=4_000,
                               currency="INR", reference=ref))
    again = run(ADAPTER.refund(creds, order_id=oid, payment_id=None, amount=4_000,
                               currency="INR", reference=ref))
    assert first == again and first.state == "pending"
    assert first.refund_id == fake.refunds[ref].refund_id
    assert fake.orders[oid].refunded == 4_000  # the retry refunded nothing more
    over = outcome(ADAPTER.refund(creds, order_id=oid, payment_id=None, amount=6_001,
                                  currency="INR", reference=reference()))
    assert isinstance(over, ProviderRejected) and "REFUND_AMOUNT_EXCEEDED" in str(over)
    assert fake.orders[oid].refunded == 4_000


def test_local_refusals_reach_no_server(fake: PhonePeFake) -> None:
    creds = fake.credentials()
    usd = outcome(ADAPTER.create_order(creds, reference=reference(), amount=10_000,
                                       currency="USD", description="x", return_url=RETURN))
    small = outcome(ADAPTER.create_order(creds, reference=reference(), amount=99,
                                         currency="INR", description="x", return_url=RETURN))
    long_ref = outcome(ADAPTER.create_order(creds, reference="r" * 64, amount=10_000,
                                            currency="INR", description="x", return_url=RETURN))
    missing = outcome(ADAPTER.create_order({"client_id": "x"}, reference=reference(),
                                           amount=10_000, currency="INR", description="x",
                                           return_url=RETURN))
    assert [(type(e), e.field) for e in (usd, small, long_ref, missing)] == [
        (ProviderRejected, "currency"), (ProviderRejected, "amount"),
        (ProviderRejected, "reference"), (ProviderRejected, "credentials")]
    assert fake.requests == []


def test_unknown_order_is_rejected(fake: PhonePeFake) -> None:
    order(fake)
    got = outcome(ADAPTER.order_status(fake.credentials(), "no-such-order"))
    assert isinstance(got, ProviderRejected) and "ORDER_NOT_FOUND" in str(got)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_provider_errors_and_nothing_is_created(fake: PhonePeFake,
                                                                 status: int) -> None:
    order(fake)  # a token is cached: the fault hits the pay call itself
    before = len(fake.orders)
    fake.fail_next(1, status)
    got = outcome(ADAPTER.create_order(fake.credentials(), reference=reference(), amount=10_000,
                                       currency="INR", description="x", return_url=RETURN))
    assert isinstance(got, ProviderError) and got.status == 503 and got.retry_after >= 1
    assert len(fake.orders) == before


def test_token_endpoint_down_is_a_provider_error(fake: PhonePeFake) -> None:
    fake.fail_next(1, 502)
    got = outcome(ADAPTER.create_order(fake.credentials(), reference=reference(), amount=10_000,
                                       currency="INR", description="x", return_url=RETURN))
    assert isinstance(got, ProviderError) and fake.orders == {}


def test_timeout_is_a_provider_error(fake: PhonePeFake, configure: Callable[..., None]) -> None:
    order(fake)
    configure(payment_timeout_seconds="0.5")
    fake.hang_next(1)
    got = outcome(ADAPTER.order_status(fake.credentials(), next(iter(fake.orders))))
    assert isinstance(got, ProviderError) and "no answer" in str(got)


# --- webhooks ---------------------------------------------------------------------------------


def verify(fake: PhonePeFake, body: bytes, headers: dict[str, str]) -> Any:
    lowered = {k.lower(): v for k, v in headers.items()}
    return outcome(ADAPTER.verify_webhook(fake.credentials(), body, lowered))


def test_genuine_webhook_passes_and_its_facts_are_read(fake: PhonePeFake) -> None:
    oid = order(fake, 25_000)
    fake.pay(oid)
    body, headers = fake.webhook("payment.succeeded", oid)
    assert verify(fake, body, headers) is None
    h = {k.lower(): v for k, v in headers.items()}
    assert ADAPTER.webhook_event_id(body, h) == f"{oid}:checkout.order.completed:COMPLETED"
    [fact] = ADAPTER.webhook_facts(body, h)
    assert (fact.kind, fact.event_type, fact.order_id, fact.state, fact.amount, fact.currency) == (
        "payment", "checkout.order.completed", oid, "succeeded", 25_000, "INR")
    assert fact.payment_id == fake.orders[oid].attempts[-1]["transactionId"]


def test_failed_payment_and_refund_facts(fake: PhonePeFake) -> None:
    oid = order(fake, 25_000)
    fake.decline(oid)
    body, headers = fake.webhook("payment.failed", oid)
    [fact] = ADAPTER.webhook_facts(body, headers)
    assert (fact.kind, fact.state, fact.failure_reason) == ("payment", "failed", "PAYMENT_DECLINED")
    fake.pay(oid)  # a retry at PhonePe succeeds after all
    refunded = run(ADAPTER.refund(fake.credentials(), order_id=oid, payment_id=None,
                                  amount=5_000, currency="INR", reference=reference()))
    for kind, state in (("refund.succeeded", "succeeded"), ("refund.failed", "failed")):
        body, headers = fake.webhook(kind, oid)  # type: ignore[arg-type]
        assert verify(fake, body, headers) is None
        [fact] = ADAPTER.webhook_facts(body, headers)
        assert (fact.kind, fact.order_id, fact.refund_id, fact.state, fact.amount) == (
            "refund", oid, refunded.refund_id, state, 5_000)
        merchant_refund_id = json.loads(body)["payload"]["merchantRefundId"]
        assert ADAPTER.webhook_event_id(body, headers).startswith(f"{merchant_refund_id}:pg.refund.")


def test_forged_and_missing_authorization_are_refused(fake: PhonePeFake) -> None:
    oid = order(fake)
    body, headers = fake.webhook("payment.succeeded", oid)
    wrong = hashlib.sha256(f"{fake.webhook_username}:not-the-password".encode()).hexdigest()
    forged = verify(fake, body, {**headers, "Authorization": wrong})
    missing = verify(fake, body, {"Content-Type": "application/json"})
    assert isinstance(forged, Refused) and forged.status == 401
    assert isinstance(missing, Refused) and missing.status == 401
    unconfigured = outcome(ADAPTER.verify_webhook({"client_id": "x"}, body,
                                                  {"authorization": headers["Authorization"]}))
    assert isinstance(unconfigured, Refused) and unconfigured.reason == "not_configured"


def test_malformed_body_with_a_genuine_header_is_400(fake: PhonePeFake) -> None:
    oid = order(fake)
    _, headers = fake.webhook("payment.succeeded", oid)
    for body in (b"not json", b"[]", b'{"event": "checkout.order.completed"}'):
        got = verify(fake, body, headers)
        assert isinstance(got, Refused) and got.status == 400


def test_redelivery_has_the_same_event_id_and_a_new_state_another(fake: PhonePeFake) -> None:
    oid = order(fake)
    fake.decline(oid)
    failed_body, h = fake.webhook("payment.failed", oid)
    fake.pay(oid)
    ok_body, _ = fake.webhook("payment.succeeded", oid)
    again, _ = fake.webhook("payment.succeeded", oid)
    ids = [ADAPTER.webhook_event_id(b, h) for b in (failed_body, ok_body, again)]
    assert ids[1] == ids[2] and ids[0] != ids[1]


def test_unmapped_event_is_other(fake: PhonePeFake) -> None:
    body = json.dumps({"event": "pg.transaction.failed",
                       "payload": {"merchantOrderId": "m1", "state": "PENDING"}}).encode()
    [fact] = ADAPTER.webhook_facts(body, {})
    assert (fact.kind, fact.event_type) == ("other", "pg.transaction.failed")


def test_webhooks_move_the_fake_forward_never_back(fake: PhonePeFake) -> None:
    """End-to-end tests post events in any order without driving the fake first: what each
    event says is then what the status API says too, and a completed order stays completed."""
    oid = order(fake, 40_000)
    body, headers = fake.webhook("payment.succeeded", oid)
    assert verify(fake, body, headers) is None
    assert run(ADAPTER.order_status(fake.credentials(), oid)).state == "succeeded"
    late_failure, _ = fake.webhook("payment.failed", oid)
    assert ADAPTER.webhook_facts(late_failure, {})[0].state == "failed"
    assert run(ADAPTER.order_status(fake.credentials(), oid)).state == "succeeded"
    body, _ = fake.webhook("refund.succeeded", oid, refund_id="rf-given-1")
    [fact] = ADAPTER.webhook_facts(body, {})
    assert (fact.kind, fact.refund_id, fact.state, fact.amount) == (
        "refund", "rf-given-1", "succeeded", 40_000)
    assert fake.orders[oid].refunded == 40_000
