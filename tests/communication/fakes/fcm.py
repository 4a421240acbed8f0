"""Google's OAuth token endpoint and FCM's HTTP v1 `messages:send`, on one loopback server.

The token endpoint checks the JWT-bearer grant as Google does: grant_type, an RS256 assertion
whose signature verifies with the service account's public key (found by `kid`), `iss` the
account's email, `scope` naming firebase.messaging, `aud` this endpoint, `exp` in the future
and at most an hour after `iat`. It answers {access_token, expires_in, token_type} and counts
grants. `messages:send` checks the Bearer is a token it issued, unexpired, for the project in
the path; the body's shape (one target, string data values, ≤ 4 KB payload); and answers
`{"name": ...}` or FCM's error shapes, per fault mode.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from tests.communication.fakes.base_http import HANG, FakeServer, Reply

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
SEND_PATH = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
#: fault modes of messages:send
MODES = ("ok", "500", "hang", "UNREGISTERED", "INVALID_ARGUMENT", "INVALID_FIELD", "401-once",
         "401", "QUOTA_EXCEEDED", "SENDER_ID_MISMATCH")


@functools.cache
def _rsa_key(number: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account(project_id: str = "carewire-test", key: int = 0) -> tuple[str, str]:
    """A service-account JSON (as Google issues it) with a fresh key id and email, and its
    public key PEM. Keys are generated once per `key` number (RSA generation is slow); the
    fresh key id keeps one test's cached access token from reaching another's."""
    rsa_key = _rsa_key(key)
    private = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    email = f"fcm-sender-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com"
    doc = {
        "type": "service_account", "project_id": project_id,
        "private_key_id": secrets.token_hex(20), "private_key": private, "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        # a stored key pointing elsewhere must not move the grant: the adapter ignores this
        "token_uri": "http://127.0.0.1:9/not-the-token-endpoint",
    }
    return json.dumps(doc), public


@dataclass
class Account:
    email: str
    kid: str
    public_key: RSAKey
    project_id: str


@dataclass
class Issued:
    account: Account
    expires_at: float


@dataclass
class FcmFake(FakeServer):
    #: what `expires_in` the token endpoint announces
    expires_in: int = 3599
    mode: str = "ok"
    #: "ok", "500" or "invalid_grant"
    token_mode: str = "ok"
    accounts: dict[str, Account] = field(default_factory=dict)
    issued: dict[str, Issued] = field(default_factory=dict)
    #: requests to the token endpoint, and the grants among them
    token_requests: int = 0
    grants: int = 0
    refused_grants: list[str] = field(default_factory=list)
    #: every accepted send: {"project", "message", "authorization"}
    accepted: list[dict[str, Any]] = field(default_factory=list)
    sends: int = 0
    _401_done: bool = False

    def __post_init__(self) -> None:
        FakeServer.__init__(self)
        self.token_url = f"{self.url}/token"

    def add_account(self, sa_json: str, public_pem: str) -> None:
        doc = json.loads(sa_json)
        self.accounts[doc["private_key_id"]] = Account(
            doc["client_email"], doc["private_key_id"], RSAKey.import_key(public_pem), doc["project_id"])

    def revoke_tokens(self) -> None:
        """Every issued token stops working (as when Google revokes them early)."""
        with self.lock:
            self.issued.clear()

    # --- the wire ----------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | type[HANG]:
        if method == "POST" and path == "/token":
            return self._token(headers, body)
        m = SEND_PATH.match(path)
        if method == "POST" and m:
            return self._send(m.group(1), headers, body)
        return Reply(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})

    def _grant_error(self, error: str, description: str) -> Reply:
        with self.lock:
            self.refused_grants.append(description)
        return Reply(400, {"error": error, "error_description": description})

    def _token(self, headers: dict[str, str], body: bytes) -> Reply:
        with self.lock:
            self.token_requests += 1
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return self._grant_error("invalid_request", "form body expected")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != GRANT_TYPE:
            return self._grant_error("unsupported_grant_type", "Invalid grant_type")
        if self.token_mode == "500":
            return Reply(500, {"error": "internal_failure"})
        assertion = form.get("assertion", "")
        try:
            header = json.loads(_b64(assertion.split(".")[0]))
        except (ValueError, IndexError):
            return self._grant_error("invalid_grant", "Invalid JWT: not a JWS")
        account = self.accounts.get(header.get("kid", ""))
        if account is None or header.get("alg") != "RS256":
            return self._grant_error("invalid_grant", "Invalid JWT Signature.")
        try:
            token = jwt.decode(assertion, account.public_key, algorithms=["RS256"])
        except JoseError:
            return self._grant_error("invalid_grant", "Invalid JWT Signature.")
        c = token.claims
        now = time.time()
        if c.get("iss") != account.email:
            return self._grant_error("invalid_grant", "Invalid issuer")
        if SCOPE not in str(c.get("scope", "")).split():
            return self._grant_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        if c.get("aud") != self.token_url:
            return self._grant_error("invalid_grant", "Invalid JWT audience")
        iat, exp = c.get("iat"), c.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp <= now or exp - iat > 3600 \
                or iat > now + 60:
            return self._grant_error("invalid_grant", "Invalid JWT: Token must be a short-lived token "
                                     "(60 minutes) and in a reasonable timeframe.")
        if self.token_mode == "invalid_grant":
            return self._grant_error("invalid_grant", "account not found")
        access = "ya29.fake-" + secrets.token_urlsafe(24)
        with self.lock:
            self.grants += 1
            self.issued[access] = Issued(account, now + self.expires_in)
        return Reply(200, {"access_token": access, "expires_in": self.expires_in, "token_type": "Bearer"})

    def _send(self, project: str, headers: dict[str, str], body: bytes) -> Reply | type[HANG]:
        with self.lock:
            self.sends += 1
        auth = headers.get("authorization", "")
        with self.lock:
            issued = self.issued.get(auth[7:]) if auth.startswith("Bearer ") else None
        if issued is None or issued.expires_at <= time.time():
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. "
                          "Expected OAuth 2 access token, login cookie or other valid authentication "
                          "credential.")
        if self.mode == "401" or (self.mode == "401-once" and not self._401_done):
            self._401_done = True
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if issued.account.project_id != project:
            return _error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' "
                          f"denied on resource '//cloudresourcemanager.googleapis.com/projects/{project}'")
        problem = _check(body)
        if problem is not None:
            return problem
        mode = self.mode
        if mode == "500":
            return _error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")
        if mode == "hang":
            return HANG
        if mode == "UNREGISTERED":
            return _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if mode == "SENDER_ID_MISMATCH":
            return _error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")
        if mode == "INVALID_ARGUMENT":  # Google's own example of a bad registration token
            return _error(400, "INVALID_ARGUMENT",
                          "The registration token is not a valid FCM registration token",
                          "INVALID_ARGUMENT")
        if mode == "INVALID_FIELD":
            return _bad_field("message.android.ttl", "Invalid value at 'message.android.ttl'")
        if mode == "QUOTA_EXCEEDED":
            return _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED",
                          headers={"Retry-After": "120"})
        message = json.loads(body)["message"]
        name = f"projects/{project}/messages/{uuid.uuid4().int % 10**19}"
        with self.lock:
            self.accepted.append({"project": project, "message": message, "name": name})
        return Reply(200, {"name": name})


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _error(code: int, status: str, message: str, fcm_code: str | None = None,
           headers: dict[str, str] | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if fcm_code:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": fcm_code}]
    return Reply(code, {"error": error}, headers)


def _bad_field(field_name: str, description: str) -> Reply:
    return Reply(400, {"error": {"code": 400, "message": description, "status": "INVALID_ARGUMENT",
                                 "details": [{"@type": BAD_REQUEST, "fieldViolations": [
                                     {"field": field_name, "description": description}]}]}})


def _check(body: bytes) -> Reply | None:
    """FCM's checks of the request body that matter to us."""
    try:
        doc = json.loads(body)
    except ValueError:
        return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(message, dict):
        return _bad_field("message", "Invalid value at 'message'")
    targets = [k for k in ("token", "topic", "condition") if message.get(k)]
    if len(targets) != 1:
        return _error(400, "INVALID_ARGUMENT", "Recipient of the message is not set.", "INVALID_ARGUMENT")
    data = message.get("data", {})
    if not isinstance(data, dict):
        return _bad_field("message.data", "Invalid value at 'message.data'")
    for i, (k, v) in enumerate(data.items()):
        if not isinstance(v, str):
            return _bad_field(f"message.data[{i}].value",
                              f"Invalid value at 'message.data[{i}].value' (TYPE_STRING), {v}")
        if k.startswith(("google", "gcm")) or k in ("from", "message_type"):
            return _bad_field(f"message.data[{i}].key", f"Invalid data key {k}")
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or any(
            not isinstance(notification.get(k, ""), str) for k in ("title", "body")):
        return _bad_field("message.notification", "Invalid value at 'message.notification'")
    android = message.get("android", {})
    if android.get("priority", "normal") not in ("normal", "high", "NORMAL", "HIGH"):
        return _bad_field("message.android.priority", "Invalid value at 'message.android.priority'")
    apns_headers = message.get("apns", {}).get("headers", {})
    if any(not isinstance(v, str) for v in apns_headers.values()):
        return _bad_field("message.apns.headers", "Invalid value at 'message.apns.headers'")
    size = len(json.dumps({"notification": notification, "data": data}).encode())
    if size > 4096:
        return _bad_field("message", f"Message is too big ({size} bytes > 4096)")
    return None


@contextmanager
def fcm_server(**kw: Any) -> Iterator[FcmFake]:
    fake = FcmFake(**kw)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
