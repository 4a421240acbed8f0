"""PhonePe PG v2 on one loopback server: the OAuth host under `/identity-manager` and the
payment API under `/pg`, as production lays them out (PROVIDERS.md, Payments).

What it checks as PhonePe does: the client-credentials grant (form fields, known client,
secret, version); `O-Bearer` tokens it issued and that have not expired (401 otherwise);
merchantOrderId / merchantRefundId ≤ 63 of [A-Za-z0-9_-]; amount ≥ 100 paise;
paymentFlow.type PG_CHECKOUT with merchantUrls.redirectUrl; refunds only of a COMPLETED order
and never above what is left of it. A repeated merchantOrderId (or merchantRefundId) with the
same amount answers the existing order (refund) again, with another amount 400 - PhonePe's
exact answer to a repeat is unverified. Webhooks carry `Authorization: hex SHA256(user:pass)`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

from tests.communication.fakes.base_http import HANG, FakeServer, Reply

OAUTH = "/identity-manager"
PG = "/pg"
ID = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
STATUS = re.compile(rf"^{PG}/checkout/v2/order/([^/]+)/status$")
REFUND_STATUS = re.compile(rf"^{PG}/payments/v2/refund/([^/]+)/status$")
EVENTS = {"payment.succeeded": "checkout.order.completed", "payment.failed": "checkout.order.failed",
          "refund.succeeded": "pg.refund.completed", "refund.failed": "pg.refund.failed"}


@dataclass
class FakeOrder:
    merchant_order_id: str
    order_id: str
    amount: int
    redirect_url: str
    state: str = "PENDING"
    attempts: list[dict[str, Any]] = field(default_factory=list)
    refunded: int = 0


@dataclass
class FakeRefund:
    merchant_refund_id: str
    refund_id: str
    order: str
    amount: int
    state: str = "PENDING"


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"success": False, "code": code, "message": message, "data": {}})


class PhonePeFake(FakeServer):
    name = "phonepe"

    def __init__(self, *, token_lifetime: int = 3600) -> None:
        super().__init__()
        self.token_lifetime = token_lifetime
        self.client_id = f"CW_TEST_{secrets.token_hex(4).upper()}"
        self.client_secret = secrets.token_urlsafe(24)
        self.client_version = "1"
        self.webhook_username = f"cw_{secrets.token_hex(4)}"
        self.webhook_password = f"pw{secrets.token_hex(8)}9"
        self.tokens: dict[str, float] = {}
        self.orders: dict[str, FakeOrder] = {}
        self.refunds: dict[str, FakeRefund] = {}
        #: every request: (method, path)
        self.requests: list[tuple[str, str]] = []
        self.grants = 0
        self._fail: list[int] = []
        self._hang = 0

    # --- ProviderFake -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"CAREWIRE_PHONEPE_URL": self.url + PG, "CAREWIRE_PHONEPE_OAUTH_URL": self.url + OAUTH}

    def credentials(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "client_version": self.client_version, "webhook_username": self.webhook_username,
                "webhook_password": self.webhook_password}

    def pay(self, order_id: str) -> None:
        self._attempt(order_id, "COMPLETED")

    def decline(self, order_id: str) -> None:
        self._attempt(order_id, "FAILED")

    def _attempt(self, order_id: str, state: str) -> None:
        with self.lock:
            self._attempt_locked(self.orders[order_id], state)

    @staticmethod
    def _attempt_locked(order: FakeOrder, state: str) -> None:
        if order.state != "COMPLETED":  # never back from completed
            order.state = state
        attempt: dict[str, Any] = {
            "paymentMode": "UPI_INTENT", "transactionId": f"OM{secrets.token_hex(10).upper()}",
            "timestamp": int(time.time() * 1000), "amount": order.amount, "state": state}
        if state == "FAILED":
            attempt.update(errorCode="PAYMENT_DECLINED", detailedErrorCode="ZM")
        order.attempts.append(attempt)

    def webhook(self, kind: Literal["payment.succeeded", "payment.failed", "refund.succeeded",
                                    "refund.failed"],
                order_id: str, *, refund_id: str | None = None,
                event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The callback PhonePe posts when that happens. PhonePe has no event id: `event_id` is
        ignored (a replay is the same event again). It moves the fake forward as the event says,
        never back: a payment event on an order not yet completed adds that attempt (a failure
        event about a completed order is delivered as a snapshot only); a refund event settles
        that refund, made here (of what is left) when the fake holds none."""
        event = EVENTS[kind]
        with self.lock:
            order = self.orders[order_id]
            if kind.startswith("payment"):
                state = "COMPLETED" if kind == "payment.succeeded" else "FAILED"
                if order.state != "COMPLETED" and (state, order.state) != ("FAILED", "FAILED"):
                    self._attempt_locked(order, state)
                payload: dict[str, Any] = {
                    "merchantId": "CWTESTMERCHANT", "merchantOrderId": order.merchant_order_id,
                    "orderId": order.order_id, "state": state, "amount": order.amount,
                    "expireAt": int(time.time() * 1000), "paymentDetails": list(order.attempts)}
            else:
                refund = next((r for r in reversed(list(self.refunds.values()))
                               if r.order == order_id and refund_id in (None, r.refund_id,
                                                                         r.merchant_refund_id)),
                              None)
                if refund is None:
                    if order.state != "COMPLETED":
                        self._attempt_locked(order, "COMPLETED")
                    given = refund_id if refund_id and ID.match(refund_id) else None
                    refund = FakeRefund(given or f"mr-{secrets.token_hex(8)}",
                                        given or f"OMR{secrets.token_hex(10).upper()}",
                                        order_id, order.amount - order.refunded or order.amount)
                    order.refunded = min(order.amount, order.refunded + refund.amount)
                    self.refunds[refund.merchant_refund_id] = refund
                if kind == "refund.failed" and refund.state != "FAILED":
                    order.refunded -= refund.amount  # a failed refund gives the amount back
                refund.state = "COMPLETED" if kind == "refund.succeeded" else "FAILED"
                payload = {"merchantId": "CWTESTMERCHANT",
                           "merchantRefundId": refund.merchant_refund_id,
                           "originalMerchantOrderId": order.merchant_order_id,
                           "refundId": refund.refund_id, "amount": refund.amount,
                           "state": refund.state, "timestamp": int(time.time() * 1000)}
        body = json.dumps({"type": event.upper().replace(".", "_"), "event": event,
                           "payload": payload}).encode()
        auth = hashlib.sha256(f"{self.webhook_username}:{self.webhook_password}".encode()).hexdigest()
        return body, {"Authorization": auth, "Content-Type": "application/json"}

    def fail_next(self, n: int, status: int = 500) -> None:
        with self.lock:
            self._fail.extend([status] * n)

    def hang_next(self, n: int) -> None:
        with self.lock:
            self._hang += n

    def expire_tokens(self) -> None:
        """Every issued token stops working (PhonePe answers 401) before its announced expiry."""
        with self.lock:
            self.tokens.clear()

    # --- the wire -----------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | type[HANG]:
        with self.lock:
            self.requests.append((method, path))
            if self._hang:
                self._hang -= 1
                return HANG
            if self._fail:
                status = self._fail.pop(0)
                return _error(status, "INTERNAL_SERVER_ERROR", "try again in a while")
            if method == "POST" and path == f"{OAUTH}/v1/oauth/token":
                return self._token(headers, body)
            token = headers.get("authorization", "")
            if not token.startswith("O-Bearer ") or self.tokens.get(token[9:], 0) <= time.time():
                return _error(401, "UNAUTHORIZED", "invalid or expired token")
            try:
                doc = json.loads(body) if body else {}
            except ValueError:
                return _error(400, "BAD_REQUEST", "body is not JSON")
            if method == "POST" and path == f"{PG}/checkout/v2/pay":
                return self._pay(doc)
            if method == "GET" and (m := STATUS.match(path)):
                return self._status(m.group(1))
            if method == "POST" and path == f"{PG}/payments/v2/refund":
                return self._refund(doc)
            if method == "GET" and (m := REFUND_STATUS.match(path)):
                refund = self.refunds.get(m.group(1))
                if refund is None:
                    return _error(404, "NOT_FOUND", "refund not found")
                return Reply(200, self._refund_view(refund))
            return _error(404, "NOT_FOUND", f"no route {method} {path}")

    def _token(self, headers: dict[str, str], body: bytes) -> Reply:
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _error(400, "BAD_REQUEST", "form body expected")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return _error(400, "BAD_REQUEST", "grant_type must be client_credentials")
        if (form.get("client_id"), form.get("client_secret"), form.get("client_version")) != (
                self.client_id, self.client_secret, self.client_version):
            return _error(401, "UNAUTHORIZED", "client authentication failed")
        token = secrets.token_urlsafe(32)
        expires_at = int(time.time()) + self.token_lifetime
        self.tokens[token] = expires_at
        self.grants += 1
        return Reply(200, {"access_token": token, "encrypted_access_token": token,
                           "expires_in": None, "issued_at": int(time.time()),
                           "expires_at": expires_at, "session_expires_at": expires_at,
                           "token_type": "O-Bearer"})

    def _pay(self, doc: dict[str, Any]) -> Reply:
        moid, amount, flow = doc.get("merchantOrderId"), doc.get("amount"), doc.get("paymentFlow")
        if not isinstance(moid, str) or not ID.match(moid):
            return _error(400, "BAD_REQUEST", "merchantOrderId is invalid")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 100:
            return _error(400, "BAD_REQUEST", "amount must be at least 100")
        if not isinstance(flow, dict) or flow.get("type") != "PG_CHECKOUT" \
                or not isinstance(flow.get("merchantUrls"), dict) \
                or not flow["merchantUrls"].get("redirectUrl"):
            return _error(400, "BAD_REQUEST", "paymentFlow.merchantUrls.redirectUrl is required")
        order = self.orders.get(moid)
        if order is None:
            order_id = f"OMO{secrets.token_hex(10).upper()}"
            order = FakeOrder(moid, order_id, amount,
                              f"{self.url}/checkout/{order_id}?return={flow['merchantUrls']['redirectUrl']}")
            self.orders[moid] = order
        elif order.amount != amount:
            return _error(400, "BAD_REQUEST", "merchantOrderId already used")
        return Reply(200, {"orderId": order.order_id, "state": order.state,
                           "expireAt": int(time.time() * 1000) + 1_200_000,
                           "redirectUrl": order.redirect_url})

    def _status(self, moid: str) -> Reply:
        order = self.orders.get(moid)
        if order is None:
            return _error(404, "ORDER_NOT_FOUND", "order not found")
        body: dict[str, Any] = {"orderId": order.order_id, "state": order.state,
                                "amount": order.amount, "expireAt": 0,
                                "paymentDetails": list(order.attempts)}
        if order.state == "FAILED":
            body["errorCode"] = "PAYMENT_DECLINED"
        return Reply(200, body)

    def _refund(self, doc: dict[str, Any]) -> Reply:
        mrid, moid, amount = (doc.get("merchantRefundId"), doc.get("originalMerchantOrderId"),
                              doc.get("amount"))
        if not isinstance(mrid, str) or not ID.match(mrid):
            return _error(400, "BAD_REQUEST", "merchantRefundId is invalid")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
            return _error(400, "BAD_REQUEST", "amount is invalid")
        existing = self.refunds.get(mrid)
        if existing is not None:
            if (existing.order, existing.amount) != (moid, amount):
                return _error(400, "BAD_REQUEST", "merchantRefundId already used")
            return Reply(200, self._refund_view(existing))
        order = self.orders.get(moid) if isinstance(moid, str) else None
        if order is None or order.state != "COMPLETED":
            return _error(400, "BAD_REQUEST", "original order not found or not completed")
        if order.refunded + amount > order.amount:
            return _error(400, "REFUND_AMOUNT_EXCEEDED", "refund exceeds the refundable amount")
        order.refunded += amount
        refund = FakeRefund(mrid, f"OMR{secrets.token_hex(10).upper()}", order.merchant_order_id,
                            amount)
        self.refunds[mrid] = refund
        return Reply(200, self._refund_view(refund))

    @staticmethod
    def _refund_view(refund: FakeRefund) -> dict[str, Any]:
        return {"refundId": refund.refund_id, "amount": refund.amount, "state": refund.state}


@contextmanager
def phonepe_server(**kw: Any) -> Iterator[PhonePeFake]:
    fake = PhonePeFake(**kw)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
