"""A local Razorpay: the Orders, Payments and Refunds endpoints the adapter uses, answered in
Razorpay's shapes (`/v1`, HTTP Basic `key_id:key_secret`, JSON).

Checks what Razorpay checks: Basic auth (401 "Authentication failed"), a JSON body, `amount`
an integer of at least 100 (paise; 400 naming `field: amount`), `currency` a supported
upper-case code (field currency), `receipt` at most 40 characters (field receipt); `GET
/v1/orders?receipt=` filters by receipt; refunds only of a captured payment and never above
what is left (field amount); `X-Refund-Idempotency` at least 10 characters of [A-Za-z0-9_-],
replaying the refund made with that key, and a 400 "Different request with the same
idempotency key has already been processed." for another body. Orders have no idempotency
key at Razorpay: two POSTs with one receipt make two orders (the adapter looks the receipt up
first).

Webhooks are signed as Razorpay signs them: `X-Razorpay-Signature` = hex HMAC-SHA256 of the raw
body under the webhook secret (not the key secret), with `X-Razorpay-Event-Id`.

Faults: `fail_next(n, status)` answers the next n API requests with `status` and Razorpay's
error shape, doing nothing; `hang_next(n)` leaves the next n unanswered; `garble_next(n)`
answers 200 with an HTML page; `lose_next(n)` carries the next n POSTs out and answers 504.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Any, Literal
from urllib.parse import parse_qsl

from tests.billing.fakes import ProviderFake
from tests.communication.fakes.base_http import HANG, FakeServer, Reply

CURRENCIES = frozenset({"INR", "USD", "EUR", "GBP", "SGD", "AED", "MYR", "AUD", "CAD", "JPY"})
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALNUM) for _ in range(14))


def _error(status: int, description: str, *, field: str | None = None,
           code: str = "BAD_REQUEST_ERROR") -> Reply:
    err: dict[str, Any] = {"code": code, "description": description, "source": "business",
                           "step": "payment_initiation", "reason": "input_validation_failed",
                           "metadata": {}}
    if field:
        err["field"] = field
    return Reply(status, {"error": err})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FakeRazorpay(FakeServer):
    name = "razorpay"

    def __init__(self) -> None:
        super().__init__()
        self.key_id = f"rzp_test_{secrets.token_hex(7)}"
        self.key_secret = secrets.token_urlsafe(18)
        self.webhook_secret = secrets.token_urlsafe(18)
        self.account_id = _id("acc")
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        #: X-Refund-Idempotency -> (payment id, body asked, refund id)
        self.refund_keys: dict[str, tuple[str, str, str]] = {}
        #: Every request that reached the fake: method, path, query, headers (lowercased), body.
        self.requests: list[dict[str, Any]] = []
        #: The status a new refund starts in (`pending` until a refund.* webhook settles it).
        self.refund_status = "pending"
        self._fail: list[int] = []
        self._hang = 0
        self._garble = 0
        self._lose = 0

    # --- ProviderFake ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"CAREWIRE_RAZORPAY_URL": self.url}

    def credentials(self) -> dict[str, str]:
        return {"key_id": self.key_id, "key_secret": self.key_secret,
                "webhook_secret": self.webhook_secret}

    def pay(self, order_id: str) -> None:
        with self.lock:
            self._pay(self.orders[order_id])

    def decline(self, order_id: str) -> None:
        with self.lock:
            self._decline(self.orders[order_id])

    def webhook(self, kind: Literal["payment.succeeded", "payment.failed", "refund.succeeded",
                                    "refund.failed"],
                order_id: str, *, refund_id: str | None = None,
                event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The delivery Razorpay posts when that happens. It moves the fake forward as the
        event says, never back: payment.succeeded captures a payment of an unpaid order (or
        reports the captured one), payment.failed records a failed attempt (a paid order keeps
        its capture); a refund event settles that refund when the fake holds it."""
        with self.lock:
            order = self.orders[order_id]
            if kind == "payment.succeeded":
                payment = self._captured(order) or self._pay(order)
                return self.event("payment.captured", payment=payment, event_id=event_id)
            if kind == "payment.failed":
                return self.event("payment.failed", payment=self._decline(order), event_id=event_id)
            payment = self._captured(order) or self._pay(order)
            refund = self.refunds.get(refund_id or "")
            if refund is None:
                refund = self._refund_object(payment, refund_id or _id("rfnd"), payment["amount"],
                                             "pending", {})
            if kind == "refund.failed" and refund["status"] != "failed" \
                    and refund["id"] in self.refunds:
                payment["amount_refunded"] -= refund["amount"]  # the money stays with us
            refund["status"] = "processed" if kind == "refund.succeeded" else "failed"
            return self.event("refund.processed" if kind == "refund.succeeded" else "refund.failed",
                              payment=payment, refund=dict(refund), event_id=event_id)

    def fail_next(self, n: int, status: int = 500) -> None:
        with self.lock:
            self._fail.extend([status] * n)

    def hang_next(self, n: int) -> None:
        with self.lock:
            self._hang += n

    def garble_next(self, n: int) -> None:
        """The next `n` API requests answer 200 with an HTML page (a proxy in the way)."""
        with self.lock:
            self._garble += n

    def lose_next(self, n: int) -> None:
        """The next `n` POSTs are carried out, but answered 504 (the answer lost on the way)."""
        with self.lock:
            self._lose += n

    def clear_faults(self) -> None:
        with self.lock:
            self._fail.clear()
            self._hang = 0
            self._garble = 0
            self._lose = 0

    def start(self) -> FakeRazorpay:
        super().start()
        return self

    # --- state ----------------------------------------------------------------------------------

    def _payment(self, order: dict[str, Any], status: str) -> dict[str, Any]:
        failed = status == "failed"
        payment = {
            "id": _id("pay"), "entity": "payment", "amount": order["amount"],
            "currency": order["currency"], "status": status, "order_id": order["id"],
            "invoice_id": None, "international": False, "method": "upi",
            "amount_refunded": 0, "refund_status": None, "captured": status == "captured",
            "description": None, "email": "void@razorpay.com", "contact": "+919000090000",
            "notes": [], "fee": None, "tax": None,
            "error_code": "BAD_REQUEST_ERROR" if failed else None,
            "error_description": "Payment was unsuccessful due to a temporary issue."
            if failed else None,
            "error_source": "customer" if failed else None,
            "error_step": "payment_authorization" if failed else None,
            "error_reason": "payment_failed" if failed else None,
            "created_at": int(time.time())}
        self.payments[payment["id"]] = payment
        order["attempts"] += 1
        return payment

    def _captured(self, order: dict[str, Any]) -> dict[str, Any] | None:
        for p in self.payments.values():
            if p["order_id"] == order["id"] and p["captured"]:
                return p
        return None

    def _pay(self, order: dict[str, Any]) -> dict[str, Any]:
        payment = self._payment(order, "captured")
        order.update(status="paid", amount_paid=order["amount"], amount_due=0)
        return payment

    def _decline(self, order: dict[str, Any]) -> dict[str, Any]:
        payment = self._payment(order, "failed")
        if order["status"] == "created":
            order["status"] = "attempted"
        return payment

    def _refund_object(self, payment: dict[str, Any], refund_id: str, amount: int, status: str,
                       notes: Any) -> dict[str, Any]:
        return {"id": refund_id, "entity": "refund", "amount": amount,
                "currency": payment["currency"], "payment_id": payment["id"], "notes": notes,
                "receipt": None, "acquirer_data": {"arn": None}, "created_at": int(time.time()),
                "batch_id": None, "status": status, "speed_processed": "normal",
                "speed_requested": "normal"}

    # --- webhooks -------------------------------------------------------------------------------

    def event(self, kind: str, *, payment: dict[str, Any] | None = None,
              order: dict[str, Any] | None = None, refund: dict[str, Any] | None = None,
              event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        payload: dict[str, Any] = {}
        for name, entity in (("refund", refund), ("payment", payment), ("order", order)):
            if entity is not None:
                payload[name] = {"entity": dict(entity)}
        body = json.dumps({"entity": "event", "account_id": self.account_id, "event": kind,
                           "contains": list(payload), "payload": payload,
                           "created_at": int(time.time())}).encode()
        return body, self.sign(body, event_id=event_id)

    def sign(self, body: bytes, *, event_id: str | None = None,
             secret: str | None = None) -> dict[str, str]:
        signature = hmac.new((secret or self.webhook_secret).encode(), body, hashlib.sha256)
        return {"X-Razorpay-Signature": signature.hexdigest(),
                "X-Razorpay-Event-Id": event_id or _id("evt").replace("evt_", ""),
                "Content-Type": "application/json", "User-Agent": "Razorpay-Webhook/v1"}

    # --- the API --------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | type[HANG]:
        path, _, query = path.partition("?")
        with self.lock:
            self.requests.append({"method": method, "path": path, "query": dict(parse_qsl(query)),
                                  "headers": headers, "body": body})
            if self._hang:
                self._hang -= 1
                return HANG
            if self._fail:
                status = self._fail.pop(0)
                return _error(status, "The server encountered an error. The incident has been "
                              "reported to admins.", code="SERVER_ERROR")
            if self._garble:
                self._garble -= 1
                return Reply(200, b"<html><body>upstream</body></html>",
                             {"Content-Type": "text/html"})
            if not self._authorized(headers.get("authorization", "")):
                return _error(401, "Authentication failed")
            data: Any = None
            if method == "POST":
                try:
                    data = json.loads(body or b"{}")
                except ValueError:
                    return _error(400, "The request body is not valid JSON")
                if not isinstance(data, dict):
                    return _error(400, "The request body must be a JSON object")
            reply = self._route(method, path, dict(parse_qsl(query)), data, headers)
            if method == "POST" and self._lose:
                self._lose -= 1
                return _error(504, "Gateway timeout", code="GATEWAY_ERROR")
            return reply

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme != "Basic":
            return False
        try:
            key_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return key_id == self.key_id and hmac.compare_digest(secret, self.key_secret)

    def _route(self, method: str, path: str, query: dict[str, str], data: Any,
               headers: dict[str, str]) -> Reply:
        if path == "/v1/orders" and method == "POST":
            return self._create_order(data)
        if path == "/v1/orders" and method == "GET":
            items = [o for o in self.orders.values()
                     if "receipt" not in query or o["receipt"] == query["receipt"]]
            items.sort(key=lambda o: o["created_at"], reverse=True)
            items = items[int(query.get("skip", 0)):][:int(query.get("count", 10))]
            return Reply(200, {"entity": "collection", "count": len(items), "items": items})
        m = re.fullmatch(r"/v1/orders/([A-Za-z0-9_]+)(/payments)?", path)
        if m and method == "GET":
            order = self.orders.get(m.group(1))
            if order is None:
                return _error(400, "The id provided does not exist", field="id")
            if not m.group(2):
                return Reply(200, dict(order))
            items = [dict(p) for p in self.payments.values() if p["order_id"] == order["id"]]
            return Reply(200, {"entity": "collection", "count": len(items), "items": items})
        m = re.fullmatch(r"/v1/payments/([A-Za-z0-9_]+)(/refund)?", path)
        if m and (method, bool(m.group(2))) in (("GET", False), ("POST", True)):
            payment = self.payments.get(m.group(1))
            if payment is None:
                return _error(400, "The id provided does not exist", field="id")
            if method == "GET":
                return Reply(200, dict(payment))
            return self._refund(payment, data, headers.get("x-refund-idempotency"))
        return _error(404, "The requested URL was not found on the server.")

    def _create_order(self, data: dict[str, Any]) -> Reply:
        amount = data.get("amount")
        if amount is None:
            return _error(400, "The amount field is required.", field="amount")
        if not _is_int(amount) or amount < 100:
            return _error(400, "The amount must be atleast INR 1.00", field="amount")
        currency = data.get("currency")
        if not isinstance(currency, str) or currency not in CURRENCIES:
            return _error(400, "The currency provided is not supported", field="currency")
        receipt = data.get("receipt")
        if receipt is not None and (not isinstance(receipt, str) or len(receipt) > 40):
            return _error(400, "The receipt may not be greater than 40 characters.",
                          field="receipt")
        notes = data.get("notes") or {}
        if not isinstance(notes, dict) or len(notes) > 15 or any(
                not isinstance(v, str) or len(v) > 256 for v in notes.values()):
            return _error(400, "The notes may have at most 15 string values of 256 characters",
                          field="notes")
        order = {"id": _id("order"), "entity": "order", "amount": amount, "amount_paid": 0,
                 "amount_due": amount, "currency": currency, "receipt": receipt,
                 "offer_id": None, "status": "created", "attempts": 0, "notes": notes,
                 "created_at": int(time.time())}
        self.orders[order["id"]] = order
        return Reply(200, dict(order))

    def _refund(self, payment: dict[str, Any], data: dict[str, Any], key: str | None) -> Reply:
        asked = json.dumps(data, sort_keys=True)
        if key is not None:
            if not re.fullmatch(r"[A-Za-z0-9_-]{10,}", key):
                return _error(400, "The idempotency key must be at least 10 characters of "
                              "letters, digits, hyphens and underscores")
            seen = self.refund_keys.get(key)
            if seen is not None:
                if seen[:2] != (payment["id"], asked):
                    return _error(400, "Different request with the same idempotency key has "
                                  "already been processed.")
                return Reply(200, dict(self.refunds[seen[2]]))
        if payment["status"] not in ("captured", "refunded"):
            return _error(400, "Only payments which have been captured can be refunded",
                          field="payment_id")
        left = payment["amount"] - payment["amount_refunded"]
        amount = data.get("amount", left)
        if not _is_int(amount) or amount < 100:
            return _error(400, "The amount must be atleast INR 1.00", field="amount")
        if amount > left:
            return _error(400, "The refund amount provided is greater than amount captured",
                          field="amount")
        refund = self._refund_object(payment, _id("rfnd"), amount, self.refund_status,
                                     data.get("notes") or [])
        self.refunds[refund["id"]] = refund
        payment["amount_refunded"] += amount
        payment["refund_status"] = "full" if payment["amount_refunded"] == payment["amount"] \
            else "partial"
        if payment["refund_status"] == "full":
            payment["status"] = "refunded"
        if key is not None:
            self.refund_keys[key] = (payment["id"], asked, refund["id"])
        return Reply(200, dict(refund))


def _check(fake: FakeRazorpay) -> ProviderFake:
    return fake  # FakeRazorpay offers the ProviderFake shape (checked by mypy)
