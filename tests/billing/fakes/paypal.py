"""PayPal's REST API on a loopback server: OAuth client credentials, Orders v2 (create, show,
capture), Payments v2 refunds, and `verify-webhook-signature` (PROVIDERS.md, Payments).

What it checks as PayPal does: Basic client credentials at the token endpoint; Bearer tokens
it issued; `PayPal-Request-Id` replays (the stored answer again, nothing done twice); intent
CAPTURE, one purchase unit, a supported currency and a decimal value with that currency's
digits; capture only of an APPROVED order (422 ORDER_NOT_APPROVED / ORDER_ALREADY_CAPTURED /
INSTRUMENT_DECLINED); refunds of a completed capture never above what is left
(422 REFUND_AMOUNT_EXCEEDED).

Webhooks are signed as PayPal signs them: base64 RSA-SHA256 (PKCS#1 v1.5) over
`transmission_id|transmission_time|webhook_id|crc32(raw body)` with the fake's own key, whose
certificate URL (on api.paypal.com, never fetched: verification goes through the API) rides in
PAYPAL-CERT-URL. The verification endpoint takes `webhook_event` as the exact bytes sent
(msgspec.Raw), so a re-encoded body fails the CRC as it would at PayPal. PayPal documents no
refund-failed event for v2: the fake's `refund.failed` is PAYMENT.CAPTURE.REFUNDED carrying a
refund whose status is FAILED (unverified shape).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import secrets
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import parse_qs

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.communication.fakes.base_http import HANG, FakeServer, Reply

CURRENCIES = {"AUD", "BRL", "CAD", "CNY", "CZK", "DKK", "EUR", "HKD", "HUF", "ILS", "INR", "JPY",
              "MYR", "MXN", "TWD", "NZD", "NOK", "PHP", "PLN", "GBP", "SGD", "SEK", "CHF", "THB",
              "USD"}
ZERO_DECIMAL = {"HUF", "JPY", "TWD"}
ORDER = re.compile(r"^/v2/checkout/orders/([^/]+)$")
CAPTURE = re.compile(r"^/v2/checkout/orders/([^/]+)/capture$")
REFUND = re.compile(r"^/v2/payments/captures/([^/]+)/refund$")
AUTH_ALGO = "SHA256withRSA"


@functools.cache
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class VerifyRequest(msgspec.Struct):
    auth_algo: str
    cert_url: str
    transmission_id: str
    transmission_sig: str
    transmission_time: str
    webhook_id: str
    webhook_event: msgspec.Raw


@dataclass
class FakeOrder:
    id: str
    request: dict[str, Any]
    status: str = "PAYER_ACTION_REQUIRED"
    declined: bool = False
    captures: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, name: str, issue: str | None = None) -> Reply:
    body: dict[str, Any] = {"name": name, "message": name.replace("_", " ").lower(),
                            "debug_id": secrets.token_hex(6)}
    if issue:
        body["details"] = [{"issue": issue, "description": issue.replace("_", " ").lower()}]
    return Reply(status, body)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PayPalFake(FakeServer):
    name = "paypal"

    def __init__(self) -> None:
        super().__init__()
        self.client_id = f"A{secrets.token_urlsafe(30)}"
        self.client_secret = f"E{secrets.token_urlsafe(30)}"
        self.webhook_id = secrets.token_hex(8).upper()
        #: where PayPal says its certificate is; never fetched by the adapter
        self.cert_url = (f"https://api.paypal.com/v1/notifications/certs/"
                         f"CERT-360caa42-fca2a594-{secrets.token_hex(4)}")
        self.tokens: set[str] = set()
        self.orders: dict[str, FakeOrder] = {}
        #: capture id -> {"capture": ..., "order": order id, "refunded": minor units}
        self.captures: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        #: PayPal-Request-Id -> (path, status, body): replays
        self.replies: dict[str, tuple[str, int, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.verifications: list[str] = []
        self.grants = 0
        #: the status a new refund gets (COMPLETED or PENDING)
        self.refund_status = "COMPLETED"
        self._fail: list[int] = []
        self._hang = 0

    # --- ProviderFake -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"CAREWIRE_PAYPAL_URL": self.url}

    def credentials(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "webhook_id": self.webhook_id}

    def approve(self, order_id: str) -> None:
        """The buyer approves (again, with another instrument after a decline): the order is
        APPROVED and waits for the merchant's capture."""
        with self.lock:
            order = self.orders[order_id]
            order.status, order.declined = "APPROVED", False

    def pay(self, order_id: str) -> None:
        """The buyer approves and the payment is captured (as a capture at approval would)."""
        with self.lock:
            order = self.orders[order_id]
            order.status = "APPROVED"
            self._capture(order)

    def decline(self, order_id: str) -> None:
        """The buyer approves but the funding instrument is declined at capture."""
        with self.lock:
            self._decline(self.orders[order_id])

    def _decline(self, order: FakeOrder) -> dict[str, Any]:
        if order.status != "COMPLETED":  # never back from a completed capture
            order.status, order.declined = "APPROVED", True
        amount = order.request["purchase_units"][0]["amount"]
        capture = {"id": secrets.token_hex(8).upper(), "status": "DECLINED",
                   "status_details": {"reason": "DECLINED_BY_RISK_FRAUD_FILTERS"},
                   "amount": amount, "final_capture": True,
                   "supplementary_data": {"related_ids": {"order_id": order.id}},
                   "create_time": _now(), "update_time": _now()}
        self.captures[capture["id"]] = {"capture": capture, "order": order.id, "refunded": 0}
        return capture

    def webhook(self, kind: Literal["payment.succeeded", "payment.failed", "refund.succeeded",
                                    "refund.failed"],
                order_id: str, *, refund_id: str | None = None,
                event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The delivery PayPal posts when that happens. It moves the fake forward as the event
        says, never back: a capture event on an order without such a capture makes one (a
        decline after a completed capture is a snapshot only); a refund event settles that
        refund, made here (of what is left) when the fake holds none."""
        with self.lock:
            order = self.orders[order_id]
            paid = ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED")

            def latest(statuses: tuple[str, ...]) -> dict[str, Any] | None:
                return next((self.captures[c]["capture"] for c in reversed(order.captures)
                             if self.captures[c]["capture"]["status"] in statuses), None)

            if kind == "payment.succeeded":
                capture = latest(paid) or self._capture(order)
                resource, resource_type = dict(capture), "capture"
                event_type = "PAYMENT.CAPTURE.COMPLETED"
            elif kind == "payment.failed":
                declined = [c["capture"] for c in self.captures.values()
                            if c["order"] == order_id and c["capture"]["status"] == "DECLINED"]
                capture = declined[-1] if declined else self._decline(order)
                resource, resource_type = dict(capture), "capture"
                event_type = "PAYMENT.CAPTURE.DECLINED"
            else:
                capture_ids = {c["capture"]["id"] for c in self.captures.values()
                               if c["order"] == order_id}
                refund = next((r for r in reversed(list(self.refunds.values()))
                               if r["capture_id"] in capture_ids
                               and refund_id in (None, r["refund"]["id"])), None)
                if refund is None:
                    capture = latest(paid) or self._capture(order)
                    held = self.captures[capture["id"]]
                    total = Decimal(capture["amount"]["value"])
                    value = total - held["refunded"] or total
                    held["refunded"] = min(total, held["refunded"] + value)
                    self._settle(held)
                    refund = self._refund_record(capture["id"], capture["amount"]["currency_code"],
                                                 value, None, None, refund_id)
                if kind == "refund.failed" and refund["refund"]["status"] != "FAILED":
                    # a failed refund gives the amount back
                    held = self.captures[refund["capture_id"]]
                    held["refunded"] -= Decimal(refund["refund"]["amount"]["value"])
                    self._settle(held)
                refund["refund"]["status"] = "COMPLETED" if kind == "refund.succeeded" else "FAILED"
                resource, resource_type = dict(refund["refund"]), "refund"
                event_type = "PAYMENT.CAPTURE.REFUNDED"
        event = {"id": event_id or f"WH-{secrets.token_hex(8).upper()}-{secrets.token_hex(8).upper()}",
                 "event_version": "1.0", "create_time": _now(), "resource_type": resource_type,
                 "resource_version": "2.0", "event_type": event_type,
                 "summary": f"{event_type} for {order_id}", "resource": resource,
                 "links": [{"href": f"{self.url}/v1/notifications/webhooks-events/x",
                            "rel": "self", "method": "GET"}]}
        body = json.dumps(event).encode()
        return body, self.sign(body)

    def sign(self, body: bytes, *, transmission_time: str | None = None) -> dict[str, str]:
        """PayPal's transmission headers for this exact body."""
        transmission_id = str(uuid.uuid4())
        when = transmission_time or _now()
        message = f"{transmission_id}|{when}|{self.webhook_id}|{zlib.crc32(body)}".encode()
        signature = signing_key().sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {"Content-Type": "application/json",
                "PAYPAL-TRANSMISSION-ID": transmission_id, "PAYPAL-TRANSMISSION-TIME": when,
                "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
                "PAYPAL-CERT-URL": self.cert_url, "PAYPAL-AUTH-ALGO": AUTH_ALGO}

    def fail_next(self, n: int, status: int = 500) -> None:
        with self.lock:
            self._fail.extend([status] * n)

    def hang_next(self, n: int) -> None:
        with self.lock:
            self._hang += n

    def revoke_tokens(self) -> None:
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
                return _error(self._fail.pop(0), "INTERNAL_SERVER_ERROR")
            if method == "POST" and path == "/v1/oauth2/token":
                return self._token(headers, body)
            auth = headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
                return Reply(401, {"error": "invalid_token",
                                   "error_description": "Token signature verification failed"})
            if method == "POST" and path == "/v1/notifications/verify-webhook-signature":
                return self._verify(body)
            if method == "GET" and (m := ORDER.match(path)):
                order = self.orders.get(m.group(1))
                return Reply(200, self._order_view(order)) if order else _error(
                    404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
            if method != "POST":
                return _error(404, "NOT_FOUND")
            request_id = headers.get("paypal-request-id")
            if request_id and request_id in self.replies and self.replies[request_id][0] == path:
                _, status, stored = self.replies[request_id]
                return Reply(status, stored)
            try:
                doc = json.loads(body) if body else {}
            except ValueError:
                return _error(400, "INVALID_REQUEST", "MALFORMED_REQUEST_JSON")
            if path == "/v2/checkout/orders":
                reply = self._create(doc)
            elif m := CAPTURE.match(path):
                reply = self._capture_call(m.group(1))
            elif m := REFUND.match(path):
                reply = self._refund(m.group(1), doc, request_id)
            else:
                return _error(404, "NOT_FOUND")
            if request_id and reply.status < 500:
                self.replies[request_id] = (path, reply.status, reply.body)
            return reply

    def _token(self, headers: dict[str, str], body: bytes) -> Reply:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        if scheme != "Basic" or (user, password) != (self.client_id, self.client_secret):
            return Reply(401, {"error": "invalid_client",
                               "error_description": "Client Authentication failed"})
        if parse_qs(body.decode()).get("grant_type") != ["client_credentials"]:
            return Reply(400, {"error": "unsupported_grant_type"})
        token = f"A21AA{secrets.token_urlsafe(40)}"
        self.tokens.add(token)
        self.grants += 1
        return Reply(200, {"scope": "https://uri.paypal.com/services/payments/payment",
                           "access_token": token, "token_type": "Bearer",
                           "app_id": "APP-80W284485P519543T", "expires_in": 32400,
                           "nonce": secrets.token_hex(8)})

    def _create(self, doc: dict[str, Any]) -> Reply:
        units = doc.get("purchase_units")
        if doc.get("intent") != "CAPTURE" or not isinstance(units, list) or len(units) != 1:
            return _error(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER")
        amount = units[0].get("amount") if isinstance(units[0], dict) else None
        currency = amount.get("currency_code") if isinstance(amount, dict) else None
        if currency not in CURRENCIES:
            return _error(422, "UNPROCESSABLE_ENTITY", "CURRENCY_NOT_SUPPORTED")
        digits = 0 if currency in ZERO_DECIMAL else 2
        value = str(amount.get("value"))  # type: ignore[union-attr]
        if not re.fullmatch(rf"\d{{1,10}}(\.\d{{{digits}}})?" if digits else r"\d{1,10}", value):
            return _error(400, "INVALID_REQUEST", "DECIMAL_PRECISION")
        if Decimal(value) <= 0:
            return _error(422, "UNPROCESSABLE_ENTITY", "CANNOT_BE_ZERO_OR_NEGATIVE")
        order = FakeOrder(secrets.token_hex(8).upper(), doc)
        experience = ((doc.get("payment_source") or {}).get("paypal") or {}).get("experience_context")
        if not isinstance(experience, dict) or not experience.get("return_url"):
            order.status = "CREATED"
        self.orders[order.id] = order
        return Reply(200, self._order_view(order))

    def _order_view(self, order: FakeOrder) -> dict[str, Any]:
        unit = dict(order.request["purchase_units"][0])
        if order.captures:
            unit["payments"] = {"captures": [self.captures[c]["capture"] for c in order.captures]}
        rel = "payer-action" if order.status == "PAYER_ACTION_REQUIRED" or (
            order.status != "CREATED" and "payment_source" in order.request) else "approve"
        return {"id": order.id, "intent": "CAPTURE", "status": order.status,
                "purchase_units": [unit],
                "links": [{"href": f"{self.url}/v2/checkout/orders/{order.id}", "rel": "self",
                           "method": "GET"},
                          {"href": f"https://www.paypal.com/checkoutnow?token={order.id}",
                           "rel": rel, "method": "GET"}]}

    def _capture(self, order: FakeOrder) -> dict[str, Any]:
        amount = order.request["purchase_units"][0]["amount"]
        capture = {"id": secrets.token_hex(8).upper(), "status": "COMPLETED", "amount": amount,
                   "final_capture": True, "seller_protection": {"status": "ELIGIBLE"},
                   "supplementary_data": {"related_ids": {"order_id": order.id}},
                   "create_time": _now(), "update_time": _now()}
        self.captures[capture["id"]] = {"capture": capture, "order": order.id, "refunded": 0}
        order.captures.append(capture["id"])
        order.status = "COMPLETED"
        return capture

    def _capture_call(self, order_id: str) -> Reply:
        order = self.orders.get(order_id)
        if order is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
        if order.status == "COMPLETED":
            return _error(422, "UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED")
        if order.status != "APPROVED":
            return _error(422, "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED")
        if order.declined:
            return _error(422, "UNPROCESSABLE_ENTITY", "INSTRUMENT_DECLINED")
        self._capture(order)
        return Reply(201, self._order_view(order))

    def _refund(self, capture_id: str, doc: dict[str, Any], request_id: str | None) -> Reply:
        held = self.captures.get(capture_id)
        if held is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
        capture = held["capture"]
        if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            return _error(422, "UNPROCESSABLE_ENTITY", "CAPTURE_FULLY_REFUNDED"
                          if capture["status"] == "REFUNDED" else "INVALID_RESOURCE_ID")
        total = Decimal(capture["amount"]["value"])
        amount = doc.get("amount") or capture["amount"]
        try:
            value = Decimal(str(amount.get("value")))
        except InvalidOperation:
            return _error(400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE")
        if amount.get("currency_code") != capture["amount"]["currency_code"]:
            return _error(422, "UNPROCESSABLE_ENTITY", "REFUND_CURRENCY_MISMATCH")
        if value <= 0 or held["refunded"] + value > total:
            return _error(422, "UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED")
        held["refunded"] += value
        self._settle(held)
        record = self._refund_record(capture_id, amount["currency_code"], value,
                                     doc.get("custom_id"), request_id)
        return Reply(201, record["refund"])

    @staticmethod
    def _settle(held: dict[str, Any]) -> None:
        """A completed capture's status from what is refunded of it."""
        capture = held["capture"]
        total = Decimal(capture["amount"]["value"])
        capture["status"] = ("COMPLETED" if held["refunded"] <= 0 else
                             "REFUNDED" if held["refunded"] >= total else "PARTIALLY_REFUNDED")

    def _refund_record(self, capture_id: str, currency: str, value: Decimal,
                       custom_id: str | None, request_id: str | None,
                       refund_id: str | None = None) -> dict[str, Any]:
        refund = {"id": refund_id or secrets.token_hex(8).upper(), "status": self.refund_status,
                  "amount": {"currency_code": currency, "value": str(value)},
                  "custom_id": custom_id, "create_time": _now(),
                  "links": [{"href": f"{self.url}/v2/payments/refunds/x", "rel": "self",
                             "method": "GET"},
                            {"href": f"{self.url}/v2/payments/captures/{capture_id}",
                             "rel": "up", "method": "GET"}]}
        record = {"refund": refund, "capture_id": capture_id, "request_id": request_id}
        self.refunds[refund["id"]] = record
        return record

    def _verify(self, body: bytes) -> Reply:
        try:
            req = msgspec.json.decode(body, type=VerifyRequest)
        except msgspec.DecodeError:
            return _error(400, "VALIDATION_ERROR", "INVALID_REQUEST")
        self.verifications.append(req.transmission_id)
        try:
            signature = base64.b64decode(req.transmission_sig, validate=True)
        except binascii.Error:
            return Reply(200, {"verification_status": "FAILURE"})
        message = (f"{req.transmission_id}|{req.transmission_time}|{req.webhook_id}|"
                   f"{zlib.crc32(bytes(req.webhook_event))}").encode()
        ok = req.auth_algo == AUTH_ALGO and req.cert_url == self.cert_url \
            and req.webhook_id == self.webhook_id
        if ok:
            try:
                signing_key().public_key().verify(signature, message, padding.PKCS1v15(),
                                                  hashes.SHA256())
            except InvalidSignature:
                ok = False
        return Reply(200, {"verification_status": "SUCCESS" if ok else "FAILURE"})


@contextmanager
def paypal_server() -> Iterator[PayPalFake]:
    fake = PayPalFake()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
