"""Signing webhooks as the providers do, and the one server they need: SNS's certificate host
(serving the PEM of a key generated for the run, and SubscribeURL confirmations), recording
every request so a test can prove none was made."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.servers import free_port

TOPIC = "arn:aws:sns:ap-south-1:123456789012:carewire-ses-events"
ZEPTOMAIL_KEY = "zepto-webhook-key-" + uuid.uuid4().hex
WHATSAPP_SECRET = "meta-app-secret-" + uuid.uuid4().hex
WHATSAPP_VERIFY = "verify-" + uuid.uuid4().hex

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                       "Type")


def keypair(name: str) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


class SnsHost:
    """`/certs/<name>.pem` serves the run's certificate; `/subscribe?...` confirms."""

    def __init__(self) -> None:
        self.key, self.pem = keypair("sns.test")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.cert_url = f"{self.base}/certs/SimpleNotificationService-test.pem"
        self.requests: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append(self.path)
                if self.path.startswith("/certs/") and self.path.endswith(".pem"):
                    self._answer(200, host.pem)
                elif self.path.startswith("/subscribe?"):
                    self._answer(200, b"<ConfirmSubscriptionResponse/>")
                else:
                    self._answer(404, b"not found")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def settings(self) -> dict[str, str]:
        """The carewire settings pointing at this host (and the other providers' secrets)."""
        return {
            "CAREWIRE_SNS_SIGNING_CERT_URL_PATTERN":
                rf"^http://127\.0\.0\.1:{self.port}/certs/[^?#]*\.pem$",
            "CAREWIRE_SNS_SUBSCRIBE_URL_PATTERN": rf"^http://127\.0\.0\.1:{self.port}/subscribe\?",
            "CAREWIRE_SNS_TOPIC_ARNS": TOPIC,
            "CAREWIRE_ZEPTOMAIL_WEBHOOK_KEY": ZEPTOMAIL_KEY,
            "CAREWIRE_WHATSAPP_APP_SECRET": WHATSAPP_SECRET,
            "CAREWIRE_WHATSAPP_VERIFY_TOKEN": WHATSAPP_VERIFY,
        }

    def sign(self, message: dict[str, Any], *, version: int = 2,
             key: rsa.RSAPrivateKey | None = None, cert_url: str | None = None) -> dict[str, Any]:
        """`message` with SNS's signature fields, signed as SNS signs (the string of fields)."""
        signed = {**message, "SignatureVersion": str(version),
                  "SigningCertURL": cert_url or self.cert_url}
        fields = NOTIFICATION_FIELDS if message["Type"] == "Notification" else CONFIRMATION_FIELDS
        text = "".join(f"{k}\n{signed[k]}\n" for k in fields if signed.get(k) is not None)
        algorithm = hashes.SHA1() if version == 1 else hashes.SHA256()
        signature = (key or self.key).sign(text.encode(), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed

    def notification(self, ses_event: dict[str, Any], *, version: int = 2,
                     timestamp: datetime | None = None, topic: str = TOPIC,
                     **sign: Any) -> dict[str, Any]:
        when = (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return self.sign({
            "Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic,
            "Message": json.dumps(ses_event), "Timestamp": when,
            "UnsubscribeURL": f"{self.base}/unsubscribe?x=1",
        }, version=version, **sign)

    def confirmation(self) -> dict[str, Any]:
        token = uuid.uuid4().hex
        return self.sign({
            "Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()),
            "Token": token, "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": f"{self.base}/subscribe?Action=ConfirmSubscription&Token={token}",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        })


@contextmanager
def sns_host() -> Iterator[SnsHost]:
    host = SnsHost()
    host.thread.start()
    try:
        yield host
    finally:
        host.server.shutdown()
        host.server.server_close()


def ses_event(kind: str, message_id: str, address: str, **detail: Any) -> dict[str, Any]:
    """An SES notification (`notificationType`) about the message SES knows as `message_id`."""
    event: dict[str, Any] = {"notificationType": kind,
                             "mail": {"messageId": message_id, "destination": [address],
                                      "timestamp": datetime.now(UTC).isoformat()}}
    if kind == "Bounce":
        event["bounce"] = {"bounceType": detail.get("bounce_type", "Permanent"),
                           "bounceSubType": detail.get("subtype", "General"),
                           "bouncedRecipients": [{"emailAddress": address,
                                                  "diagnosticCode": "smtp; 550 no such user"}]}
    elif kind == "Complaint":
        event["complaint"] = {"complainedRecipients": [{"emailAddress": address}],
                              **({"complaintFeedbackType": detail["feedback"]}
                                 if "feedback" in detail else {})}
    elif kind == "Delivery":
        event["delivery"] = {"recipients": [address]}
    return event


def zeptomail_body(kind: str, request_id: str, address: str,
                   webhook_request_id: str | None = None) -> bytes:
    return json.dumps({
        "event_name": [kind],
        "event_message": [{
            "email_info": {"to": [{"email_address": {"address": address}}]},
            "event_data": [{"details": [{"reason": "mailbox unavailable",
                                         "bounced_recipient": address,
                                         "time": datetime.now(UTC).isoformat()}]}],
            "request_id": request_id}],
        "webhook_request_id": webhook_request_id or uuid.uuid4().hex,
    }).encode()


def zeptomail_signature(body: bytes, *, key: str = ZEPTOMAIL_KEY,
                        ts_ms: int | None = None) -> str:
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    ts = ts_ms if ts_ms is not None else int(time.time() * 1000)
    return f"ts={ts};s={quote(base64.b64encode(digest).decode(), safe='')};s-algorithm=HmacSHA256"


def whatsapp_body(*statuses: tuple[str, str], errors: list[dict[str, Any]] | None = None) -> bytes:
    """A Meta status webhook carrying (wamid, status) pairs, in this order."""
    return json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540"},
            "statuses": [{"id": wamid, "status": status, "timestamp": str(int(time.time())),
                          "recipient_id": "919800000001",
                          **({"errors": errors} if errors and status == "failed" else {})}
                         for wamid, status in statuses]}}]}]}).encode()


def whatsapp_signature(body: bytes, secret: str = WHATSAPP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
