"""Firebase Cloud Messaging, HTTP v1 API: push to FCM registration tokens.

Auth is Google's service-account JWT-bearer grant: an RS256 assertion signed with the clinic's
service-account key buys an OAuth2 access token (about an hour), which every send carries as
`Bearer`. Tokens are cached per process and per key (see `_Tokens`), so a burst of sends makes
one grant, not one per message. The grant goes to `settings.google_token_url`, never to the
`token_uri` inside the stored JSON (a stored key must not choose where we send an assertion).

Idempotency: FCM has no idempotency key; a retried send after an unknown outcome can reach the
device twice. What we do have is display-level collapsing: the idempotency key is the Android
notification `tag` and the APNs `apns-collapse-id`, so a duplicate *replaces* the notification
on the device instead of adding a second one (the app still receives both).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from domain.communication.models import Channel, Outbound
from domain.communication.providers import http
from domain.communication.providers.base import MaybeSent, Rejected, Sent, Unavailable
from domain.settings import get as app_settings

NAME = "fcm"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Lifetime we ask for in the assertion (Google's maximum).
ASSERTION_SECONDS = 3600
#: A cached access token is dropped this long before the expiry Google announced, so a send
#: never leaves with a token that expires on the way (a token living ≤ this is never reused).
EXPIRY_MARGIN_SECONDS = 300
#: apns-collapse-id is at most 64 bytes.
APNS_COLLAPSE_MAX = 64
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


class ServiceAccount:
    """The fields we use from a Google service-account JSON (others, token_uri included, are
    ignored)."""

    __slots__ = ("client_email", "private_key", "private_key_id", "project_id")

    def __init__(self, raw: str) -> None:
        try:
            doc = json.loads(raw)
            self.project_id = str(doc["project_id"])
            self.private_key_id = str(doc["private_key_id"])
            self.private_key = str(doc["private_key"])
            self.client_email = str(doc["client_email"])
        except (ValueError, TypeError, KeyError):
            # the exception text must not quote the JSON: it holds the private key
            raise Unavailable(f"{NAME}: service_account_json is not a service-account key "
                              "(needs project_id, private_key_id, private_key, client_email)",
                              code="bad_credentials") from None
        if not self.project_id or "/" in self.project_id or "?" in self.project_id:
            raise Unavailable(f"{NAME}: service_account_json has a bad project_id",
                              code="bad_credentials")


TokenKey = tuple[str, str, str, str]


class _Tokens:
    """Access tokens shared by every send in this process, by (token URL, client_email,
    private_key_id, digest of the private key): the digest keeps a clinic that stores someone
    else's email and key id, without their key, from being handed their token.

    One grant at a time per key: sends that find no token wait for the grant in flight and take
    its token, or its failure (so a burst against a failing token endpoint makes one request,
    not one per message, each waiting out the timeout)."""

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, tuple[str, float]] = {}
        self._failures: dict[TokenKey, tuple[Unavailable, float]] = {}
        self._locks: dict[TokenKey, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}

    def _lock(self, key: TokenKey) -> asyncio.Lock:
        # an asyncio.Lock belongs to one event loop; a process normally has one, tests several
        loop = asyncio.get_running_loop()
        entry = self._locks.get(key)
        if entry is None or entry[0] is not loop:
            entry = (loop, asyncio.Lock())
            self._locks[key] = entry
        return entry[1]

    def _cached(self, key: TokenKey, stale: str | None) -> str | None:
        entry = self._tokens.get(key)
        if entry is not None and entry[1] > time.monotonic() and entry[0] != stale:
            return entry[0]
        return None

    async def get(self, account: ServiceAccount, *, stale: str | None = None) -> str:
        """A valid access token; `stale` is one FCM refused (401): never hand it out again."""
        url = app_settings().google_token_url
        digest = hashlib.sha256(account.private_key.encode()).hexdigest()
        key = (url, account.client_email, account.private_key_id, digest)
        token = self._cached(key, stale)
        if token is not None:
            return token
        asked = time.monotonic()
        async with self._lock(key):
            token = self._cached(key, stale)  # the grant we waited for may have brought one
            if token is not None:
                return token
            failure = self._failures.get(key)
            if failure is not None and failure[1] >= asked:  # it failed while we waited
                raise Unavailable(str(failure[0]), status_code=failure[0].status_code,
                                  code=failure[0].code)
            self._tokens.pop(key, None)
            try:
                token, lifetime = await _grant(url, account)
            except Unavailable as exc:
                self._failures[key] = (exc, time.monotonic())
                raise
            self._failures.pop(key, None)
            if lifetime > EXPIRY_MARGIN_SECONDS:
                self._tokens[key] = (token, time.monotonic() + lifetime - EXPIRY_MARGIN_SECONDS)
            return token


_tokens = _Tokens()


def _assertion(url: str, account: ServiceAccount) -> str:
    try:
        key = RSAKey.import_key(account.private_key)
    except (JoseError, ValueError, TypeError):
        raise Unavailable(f"{NAME}: the service account's private_key is not an RSA key",
                          code="bad_credentials") from None
    now = int(time.time())
    claims = {"iss": account.client_email, "scope": SCOPE, "aud": url,
              "iat": now, "exp": now + ASSERTION_SECONDS}
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": account.private_key_id}, claims, key)


async def _grant(url: str, account: ServiceAccount) -> tuple[str, float]:
    """One JWT-bearer grant. Any failure is `Unavailable`: no message left yet."""
    form = {"grant_type": GRANT_TYPE, "assertion": _assertion(url, account)}
    try:
        response = await http.request(NAME, "POST", url, data=form)
    except MaybeSent as exc:  # only the token request was lost; the message never left
        raise Unavailable(f"{NAME}: token endpoint did not answer", code="token_endpoint") from exc
    if response.status_code != 200:
        error = _json(response).get("error")
        detail = error if isinstance(error, str) else "error"
        raise Unavailable(f"{NAME}: token grant refused ({response.status_code} {detail})",
                          status_code=response.status_code, code="token_grant")
    body = _json(response)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise Unavailable(f"{NAME}: token endpoint answered without an access_token",
                          code="token_grant")
    try:
        lifetime = float(body.get("expires_in", 0))
    except (TypeError, ValueError):
        lifetime = 0.0
    return token, lifetime


def _json(response: http.Answer) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def payload(message: Outbound) -> dict[str, Any]:
    """The v1 `message` object for one token."""
    notification: dict[str, str] = {"body": message.text}
    if message.subject:
        notification["title"] = message.subject
    apns_headers = {"apns-priority": "10", "apns-push-type": "alert"}
    if len(message.idempotency_key.encode()) <= APNS_COLLAPSE_MAX:
        apns_headers["apns-collapse-id"] = message.idempotency_key
    body: dict[str, Any] = {
        "token": message.to,
        "notification": notification,
        "android": {"priority": "high", "notification": {"tag": message.idempotency_key}},
        "apns": {"headers": apns_headers, "payload": {"aps": {"sound": "default"}}},
    }
    if message.data:
        body["data"] = dict(message.data)
    return body


def _fcm_error(response: http.Answer) -> tuple[str, str, str, list[dict[str, Any]]]:
    """(status, FcmError errorCode, what to say, details) of an error answer. What we say names
    the fields FCM refused, never its message: that can quote a data value we sent."""
    error = _json(response).get("error")
    if not isinstance(error, dict):
        return "", "", "", []
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    code = next((str(d.get("errorCode", "")) for d in details if d.get("@type") == FCM_ERROR), "")
    fields = [str(v.get("field"))[:80] for d in details if d.get("@type") == BAD_REQUEST
              for v in d.get("fieldViolations") or [] if isinstance(v, dict)]
    text = f"invalid {', '.join(fields[:5])}" if fields else ""
    return str(error.get("status", "")), code, text, details


def _token_is_invalid(details: list[dict[str, Any]]) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token rather than our payload.
    FCM's own docs distinguish them by the details: a bad token comes with an FcmError detail
    and no `google.rpc.BadRequest`, a bad field with a BadRequest naming the field."""
    violations = [v for d in details if d.get("@type") == BAD_REQUEST
                  for v in d.get("fieldViolations") or [] if isinstance(v, dict)]
    if violations:
        return all(v.get("field") == "message.token" for v in violations)
    return any(d.get("@type") == FCM_ERROR and d.get("errorCode") == "INVALID_ARGUMENT"
               for d in details)


def _failure(response: http.Answer) -> Exception:
    status, code, text, details = _fcm_error(response)
    sc = response.status_code
    what = f"{NAME}: {sc} {code or status or 'error'}" + (f": {text}" if text else "")
    if code in ("UNREGISTERED", "SENDER_ID_MISMATCH"):
        return Rejected(what, retire_token=True, status_code=sc, code=code)
    if code == "QUOTA_EXCEEDED" or sc == 429:
        return Unavailable(what, status_code=sc, code=code or "QUOTA_EXCEEDED",
                           retry_after=http.retry_after(response) or 60.0)
    if sc == 400:
        return Rejected(what, retire_token=_token_is_invalid(details), status_code=sc,
                        code=code or status or "INVALID_ARGUMENT")
    if sc == 404 and status == "NOT_FOUND" and not code:
        # no FcmError: the project (not the token) is unknown; a configuration problem
        return Unavailable(what, status_code=sc, code="NOT_FOUND")
    if sc >= 500:
        return Unavailable(what, status_code=sc, code=code or status or "UNAVAILABLE",
                           retry_after=http.retry_after(response))
    # 401 (after a refresh) / 403 / THIRD_PARTY_AUTH_ERROR: our credentials or the project's
    # APNs/web-push setup, not this message; other 4xx: unexpected, treat as an account problem
    return Unavailable(what, status_code=sc, code=code or status or "error")


class FCM:
    """Push via FCM HTTP v1, to tokens of kind "fcm" (APNs tokens need the APNs or SNS route)."""

    name: ClassVar[str] = NAME
    channels: ClassVar[frozenset[Channel]] = frozenset({"push"})
    token_kinds: ClassVar[frozenset[str]] = frozenset({"fcm"})
    required_fields: ClassVar[tuple[str, ...]] = ("service_account_json",)
    optional_fields: ClassVar[tuple[str, ...]] = ()
    #: FCM's default quota is 600k messages/min per project; this caps one clinic's share.
    default_rate_per_second: ClassVar[int] = 100

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        if message.token_kind != "fcm":
            raise Rejected(f"{NAME}: cannot deliver a {message.token_kind or 'non-push'} token",
                           code="token_kind")
        account = ServiceAccount(credentials.get("service_account_json", ""))
        url = f"{app_settings().fcm_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        body = {"message": payload(message)}
        token = await _tokens.get(account)
        response = await http.request(NAME, "POST", url, json=body,
                                      headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 401 and _fcm_error(response)[1] != "THIRD_PARTY_AUTH_ERROR":
            # our access token was refused (revoked, or expired earlier than announced):
            # nothing was sent; one fresh grant, one more try
            token = await _tokens.get(account, stale=token)
            response = await http.request(NAME, "POST", url, json=body,
                                          headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200:
            name = _json(response).get("name")
            return Sent(provider_message_id=name if isinstance(name, str) else None, status_code=200)
        raise _failure(response)
