"""The payment provider of `carewire dev`: the local Stripe server the tests use
(tests/billing/fakes/stripe.py, from this checkout), so a newcomer pays a demo visit without a
Stripe account. It speaks Stripe's API to carewire's real Stripe adapter (the official SDK) and
adds one route of its own for a person at a terminal:

    curl -X POST http://127.0.0.1:<port>/dev/pay/<payment intent id>

pays the intent and posts the signed `payment_intent.succeeded` webhook to carewire's webhook
address for the clinic, as Stripe would. Only for `carewire dev`; absent from an installed
package (no tests/ beside it), where the demo simply has no online payments."""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx

from gateway.devfakes import from_checkout

_PAY = re.compile(r"^/dev/pay/(pi_[A-Za-z0-9]+)$")


def start() -> Any | None:
    """The running dev Stripe server, or None when the checkout's tests are not here. Point
    carewire at it with its `env()` before settings are read; set `webhook_url` once the demo
    clinic exists."""
    stripe_fakes = from_checkout("tests.billing.fakes.stripe")
    base_http = from_checkout("tests.communication.fakes.base_http")
    if stripe_fakes is None or base_http is None:
        return None
    fake_stripe = stripe_fakes.FakeStripe
    reply = base_http.Reply

    class DevStripe(fake_stripe):  # type: ignore[misc, valid-type]
        webhook_url = ""

        def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
            found = _PAY.match(path)
            if found is None:
                return super().handle(method, path, headers, body)
            if method != "POST":
                return reply(405, {"error": "POST to pay"})
            if found[1] not in self.intents:
                return reply(404, {"error": f"no payment intent {found[1]} here"})
            event, signed = self.webhook("payment.succeeded", found[1])
            # not from this request's thread: carewire answers the webhook while we wait
            threading.Thread(target=self._post, args=(event, signed), daemon=True).start()
            return reply(200, {"paid": found[1], "webhook": self.webhook_url})

        def _post(self, event: bytes, signed: dict[str, str]) -> None:
            httpx.post(self.webhook_url, content=event, headers=signed, timeout=10)

    fake = DevStripe()
    fake.start()
    return fake
