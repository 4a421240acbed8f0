"""`carewire dev`'s payment provider (gateway/devpay.py): the test Stripe server plus the one
route a newcomer curls. Paying posts a webhook our Stripe adapter verifies, for the intent the
adapter opened."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from domain.billing.providers.stripe import ADAPTER
from gateway import devpay
from tests.billing.test_stripe import run
from tests.communication.fakes.base_http import FakeServer, Reply
from tests.communication.test_email_providers import settings_env


class Receiver(FakeServer):
    """Where the webhook goes: carewire's webhook route stands in as a recorder."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = threading.Event()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        self.got.append((body, headers))
        self.arrived.set()
        return Reply(200, {"stored": 1})


@pytest.fixture()
def dev() -> Iterator[tuple[Any, Receiver]]:
    stripe = devpay.start()
    assert stripe is not None  # the checkout has its tests: the dev provider is there
    receiver = Receiver().start()
    stripe.webhook_url = f"{receiver.url}/api/v1/webhooks/payments/stripe/{uuid.uuid4()}"
    with settings_env(**stripe.env()):
        yield stripe, receiver
    stripe.stop()
    receiver.stop()


def test_one_post_pays_the_intent_and_sends_a_webhook_that_verifies(dev: Any) -> None:
    stripe, receiver = dev
    order = run(ADAPTER.create_order(stripe.credentials(), reference=str(uuid.uuid4()),
                                     amount=40_000, currency="INR", description="Video visit",
                                     return_url="http://127.0.0.1/paid"))
    assert run(ADAPTER.order_status(stripe.credentials(), order.order_id)).state == "pending"
    r = httpx.post(f"{stripe.url}/dev/pay/{order.order_id}")
    assert r.status_code == 200 and r.json()["paid"] == order.order_id
    assert receiver.arrived.wait(10)
    body, headers = receiver.got[0]
    run(ADAPTER.verify_webhook(stripe.credentials(), body, headers))  # raises when forged
    [fact] = ADAPTER.webhook_facts(body, headers)
    assert (fact.kind, fact.state, fact.order_id, fact.amount) == (
        "payment", "succeeded", order.order_id, 40_000)
    assert run(ADAPTER.order_status(stripe.credentials(), order.order_id)).state == "succeeded"


def test_an_unknown_intent_or_a_get_is_refused_and_sends_nothing(dev: Any) -> None:
    stripe, receiver = dev
    assert httpx.post(f"{stripe.url}/dev/pay/pi_nothere").status_code == 404
    assert httpx.get(f"{stripe.url}/dev/pay/pi_nothere").status_code == 405
    assert receiver.got == []
