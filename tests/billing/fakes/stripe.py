"""A local Stripe: the PaymentIntents and Refunds endpoints the adapter uses, as the real API
answers them, so the official SDK runs end to end against it (`base_addresses={"api": url}`).

Checks what Stripe checks: `Authorization: Bearer <secret key>` (401 invalid_request_error),
form-encoded bodies with nested `a[b]` keys, required params (`amount` a positive integer,
`currency` a lowercase three-letter code, `payment_intent` for a refund; 400 with `param`),
unknown ids (404 resource_missing), refunds only of a succeeded intent and never above what is
left (400, param amount). Idempotency as Stripe documents it: a POST's `Idempotency-Key` (per
secret key) replays the stored answer (header `Idempotent-Replayed: true`); the same key with
other parameters answers 400 `idempotency_error`. Only answers of requests that passed
validation are stored (Stripe: "results are only saved if an API endpoint begins executing").

Webhooks are signed as Stripe signs them (`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"<t>." + raw body>`), via the SDK's own `WebhookSignature.generate_signature_header`.

Faults: `fail_next(n, status)` answers the next n API requests with `status` and Stripe's error
shape without doing anything (not stored for replay, so the SDK's retry with the same key goes
through); `hang_next(n)` leaves the next n unanswered.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any, Literal
from urllib.parse import parse_qsl

import stripe

from tests.billing.fakes import ProviderFake
from tests.communication.fakes.base_http import HANG, FakeServer, Reply

API_VERSION = "2026-10-28.endive"


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18).replace('-', 'a').replace('_', 'b')}"


def _error(status: int, message: str, *, type: str = "invalid_request_error",
           param: str | None = None, code: str | None = None) -> Reply:
    err: dict[str, Any] = {"type": type, "message": message}
    if param:
        err["param"] = param
    if code:
        err["code"] = code
    return Reply(status, {"error": err}, {"Request-Id": _id("req")})


def form(body: bytes) -> dict[str, Any]:
    """`a=1&m[k]=v&l[0]=x` -> {"a": "1", "m": {"k": "v"}, "l": {"0": "x"}} (values stay strings,
    as Stripe receives them)."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts:
            node[parts[-1]] = value
    return out


class FakeStripe(FakeServer):
    name = "stripe"

    def __init__(self) -> None:
        super().__init__()
        self.secret_key = f"sk_test_{secrets.token_hex(12)}"
        self.webhook_secret = f"whsec_{secrets.token_hex(16)}"
        self.intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        #: (secret key, Idempotency-Key) -> (what was asked, the answer given)
        self.idempotency: dict[tuple[str, str], tuple[tuple[str, str, str], Reply]] = {}
        #: Every request that reached the fake: method, path, headers (lowercased), params.
        self.requests: list[dict[str, Any]] = []
        #: The status a new refund starts in (cards: often `succeeded` at once; `pending` lets
        #: tests drive the refund.* webhooks).
        self.refund_status = "pending"
        self._fail: list[int] = []
        self._hang = 0

    # --- ProviderFake ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"CAREWIRE_STRIPE_URL": self.url}

    def credentials(self) -> dict[str, str]:
        return {"secret_key": self.secret_key, "webhook_secret": self.webhook_secret}

    def pay(self, order_id: str) -> None:
        with self.lock:
            self._pay(self.intents[order_id])

    def decline(self, order_id: str) -> None:
        with self.lock:
            self._decline(self.intents[order_id])

    def webhook(self, kind: Literal["payment.succeeded", "payment.failed", "refund.succeeded",
                                    "refund.failed"],
                order_id: str, *, refund_id: str | None = None,
                event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The delivery Stripe posts when that happens. It moves the fake forward as the event
        says, never back: a payment event on an intent not yet succeeded pays / declines it
        (a failure event about a succeeded intent is delivered as a snapshot only); a refund
        event settles that refund when the fake holds it."""
        with self.lock:
            pi = self.intents[order_id]
            if kind == "payment.succeeded":
                if pi["status"] != "succeeded":
                    self._pay(pi)
                return self.event("payment_intent.succeeded", dict(pi), event_id=event_id)
            if kind == "payment.failed":
                if pi["status"] != "succeeded":
                    self._decline(pi)
                    snapshot = dict(pi)
                else:
                    snapshot = self._decline(dict(pi))
                return self.event("payment_intent.payment_failed", snapshot, event_id=event_id)
            refund = self.refunds.get(refund_id or "")
            if refund is None:
                refund = self._refund_object(pi, refund_id or _id("re"), pi["amount"], "pending", {})
            if kind == "refund.succeeded":
                refund["status"] = "succeeded"
                return self.event("refund.updated", dict(refund), event_id=event_id)
            refund.update(status="failed", failure_reason="expired_or_canceled_card")
            return self.event("refund.failed", dict(refund), event_id=event_id)

    @staticmethod
    def _pay(pi: dict[str, Any]) -> dict[str, Any]:
        pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None,
                  latest_charge=pi["latest_charge"] or _id("ch"),
                  payment_method=pi["payment_method"] or _id("pm"))
        return pi

    @staticmethod
    def _decline(pi: dict[str, Any]) -> dict[str, Any]:
        pi.update(status="requires_payment_method", latest_charge=_id("ch"),
                  last_payment_error={"type": "card_error", "code": "card_declined",
                                      "decline_code": "generic_decline",
                                      "message": "Your card was declined."})
        return pi

    def fail_next(self, n: int, status: int = 500) -> None:
        with self.lock:
            self._fail.extend([status] * n)

    def hang_next(self, n: int) -> None:
        with self.lock:
            self._hang += n

    def clear_faults(self) -> None:
        with self.lock:
            self._fail.clear()
            self._hang = 0

    def start(self) -> FakeStripe:
        super().start()
        return self

    # --- webhooks -------------------------------------------------------------------------------

    def event(self, type: str, obj: dict[str, Any], *, event_id: str | None = None,
              timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """A delivery of event `type` about `obj`, signed now (or at `timestamp`)."""
        body = json.dumps({
            "id": event_id or _id("evt"), "object": "event", "api_version": API_VERSION,
            "created": int(time.time()), "data": {"object": obj}, "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": type,
        }, indent=2).encode()  # Stripe pretty-prints its payloads
        return body, self.sign(body, timestamp=timestamp)

    def sign(self, body: bytes, *, timestamp: int | None = None,
             secret: str | None = None) -> dict[str, str]:
        header = stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret or self.webhook_secret, timestamp=timestamp)
        return {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}

    # --- the API --------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | type[HANG]:
        try:
            params = form(body) if method == "POST" else dict(parse_qsl(path.partition("?")[2]))
        except UnicodeDecodeError:
            params = {}
        path = path.partition("?")[0]
        with self.lock:
            self.requests.append({"method": method, "path": path, "headers": headers,
                                  "params": params})
            if self._hang:
                self._hang -= 1
                return HANG
            if self._fail:
                status = self._fail.pop(0)
                return _error(status, "An unknown error occurred", type="api_error")
            scheme, _, key = headers.get("authorization", "").partition(" ")
            if scheme != "Bearer" or key != self.secret_key:
                return _error(401, f"Invalid API Key provided: {key[:8]}****")
            idem = headers.get("idempotency-key") if method == "POST" else None
            asked = (method, path, json.dumps(params, sort_keys=True))
            if idem:
                seen = self.idempotency.get((key, idem))
                if seen is not None:
                    if seen[0] != asked:
                        return _error(400, "Keys for idempotent requests can only be used with "
                                      "the same parameters they were first used with. Try using "
                                      "a key other than '" + idem + "' if you meant to execute "
                                      "a different request.", type="idempotency_error")
                    stored = seen[1]
                    return Reply(stored.status, stored.body,
                                 {**stored.headers, "Idempotent-Replayed": "true"})
            reply = self._route(method, path, params)
            if idem and 200 <= reply.status < 300:
                self.idempotency[(key, idem)] = (asked, Reply(reply.status, reply.body,
                                                              dict(reply.headers)))
            if idem:
                reply.headers["Idempotency-Key"] = idem
            return reply

    def _route(self, method: str, path: str, params: dict[str, Any]) -> Reply:
        if method == "POST" and path == "/v1/payment_intents":
            return self._create_intent(params)
        m = re.fullmatch(r"/v1/payment_intents/([A-Za-z0-9_]+)", path)
        if method == "GET" and m:
            pi = self.intents.get(m.group(1))
            if pi is None:
                return _error(404, f"No such payment_intent: '{m.group(1)}'", param="intent",
                              code="resource_missing")
            return Reply(200, dict(pi))
        if method == "POST" and path == "/v1/refunds":
            return self._create_refund(params)
        m = re.fullmatch(r"/v1/refunds/([A-Za-z0-9_]+)", path)
        if method == "GET" and m:
            refund = self.refunds.get(m.group(1))
            if refund is None:
                return _error(404, f"No such refund: '{m.group(1)}'", param="id",
                              code="resource_missing")
            return Reply(200, dict(refund))
        return _error(404, f"Unrecognized request URL ({method}: {path}).")

    def _create_intent(self, params: dict[str, Any]) -> Reply:
        amount = params.get("amount")
        if amount is None:
            return _error(400, "Missing required param: amount.", param="amount",
                          code="parameter_missing")
        if not re.fullmatch(r"[0-9]{1,8}", str(amount)) or int(amount) < 1:
            return _error(400, "Invalid integer: " + str(amount), param="amount",
                          code="parameter_invalid_integer")
        currency = params.get("currency")
        if currency is None:
            return _error(400, "Missing required param: currency.", param="currency",
                          code="parameter_missing")
        if not isinstance(currency, str) or not re.fullmatch(r"[a-z]{3}", currency):
            return _error(400, f"Invalid currency: {currency}.", param="currency",
                          code="parameter_invalid_string")
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            return _error(400, "Invalid hash", param="metadata")
        pi_id = _id("pi")
        pi: dict[str, Any] = {
            "id": pi_id, "object": "payment_intent", "amount": int(amount), "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "always"},
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{secrets.token_urlsafe(18)}",
            "confirmation_method": "automatic", "created": int(time.time()), "currency": currency,
            "description": params.get("description"), "last_payment_error": None,
            "latest_charge": None, "livemode": False, "metadata": metadata,
            "payment_method": None, "payment_method_types": ["card"],
            "status": "requires_payment_method",
        }
        self.intents[pi_id] = pi
        return Reply(200, dict(pi))

    def _refund_object(self, pi: dict[str, Any], refund_id: str, amount: int, status: str,
                       metadata: dict[str, Any]) -> dict[str, Any]:
        return {"id": refund_id, "object": "refund", "amount": amount,
                "charge": pi["latest_charge"], "created": int(time.time()),
                "currency": pi["currency"], "metadata": metadata,
                "payment_intent": pi["id"], "reason": None, "status": status}

    def _create_refund(self, params: dict[str, Any]) -> Reply:
        pi_id = params.get("payment_intent")
        if not pi_id:
            return _error(400, "One of the following params should be provided for this "
                          "request: payment_intent or charge.", param="payment_intent",
                          code="parameter_missing")
        pi = self.intents.get(pi_id)
        if pi is None:
            return _error(400, f"No such payment_intent: '{pi_id}'", param="payment_intent",
                          code="resource_missing")
        if pi["status"] != "succeeded":
            return _error(400, "This PaymentIntent does not have a successful charge to refund.",
                          param="payment_intent")
        refunded = sum(r["amount"] for r in self.refunds.values()
                       if r["payment_intent"] == pi_id and r["status"] != "failed")
        left = pi["amount_received"] - refunded
        amount = params.get("amount", str(left))
        if not re.fullmatch(r"[0-9]{1,8}", str(amount)) or int(amount) < 1:
            return _error(400, "Invalid integer: " + str(amount), param="amount",
                          code="parameter_invalid_integer")
        if int(amount) > left:
            return _error(400, f"Refund amount ({amount}) is greater than unrefunded amount on "
                          f"charge ({left})", param="amount")
        refund = self._refund_object(pi, _id("re"), int(amount), self.refund_status,
                                     params.get("metadata") or {})
        self.refunds[refund["id"]] = refund
        return Reply(200, dict(refund))


def _check(fake: FakeStripe) -> ProviderFake:
    return fake  # FakeStripe offers the ProviderFake shape (checked by mypy)
