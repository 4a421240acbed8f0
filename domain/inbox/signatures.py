"""Checking that a webhook comes from its provider, on the raw body, before anything is stored.

- SNS (SES events): RSA PKCS#1 v1.5 over the canonical string of the message's fields
  (SignatureVersion 1 SHA-1, 2 SHA-256), with the certificate at SigningCertURL, which is
  fetched only when it matches `sns_signing_cert_url_pattern` (AWS's hosts; anything else is
  refused without a request). Certificates are cached per URL (at most `_CERT_CACHE` of them).
  The signature covers field values, not the JSON's bytes: the envelope re-serialized with the
  same values is the same message (and accepted); a changed value (the inner `Message` JSON
  re-serialized included) is refused.
- ZeptoMail: `producer-signature: ts=<ms>;s=<url-encoded base64>;s-algorithm=HmacSHA256`, the
  HMAC-SHA256 of the raw body under the webhook key (what ZeptoMail signs is not documented
  beyond this; PROVIDERS.md), `ts` within `ZEPTOMAIL_WINDOW` of now.
- Meta (WhatsApp): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`. Meta
  signs no timestamp, so a replay cannot be told from a retry: dedupe by event id stands in.
Every comparison is constant-time."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from domain import clock, settings

#: SNS keeps a message's Timestamp across its retries; older than this is refused as stale
#: (the issue's bound; SNS's default HTTP retry policy ends well within it).
SNS_MAX_AGE = timedelta(hours=1)
#: A timestamp this far ahead of our clock is refused too (clock skew allowance).
FUTURE_SKEW = timedelta(minutes=5)
#: ZeptoMail's `ts` must be within this of now, either way (PROVIDERS.md: ~300 s).
ZEPTOMAIL_WINDOW = timedelta(seconds=300)
_CERT_CACHE = 16
_CERT_MAX_BYTES = 64 * 1024
_FETCH_TIMEOUT = 5.0

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                       "Type")


class Refused(Exception):
    """A webhook we do not accept: `status` 400 (malformed, stale), 401 (not authentic, or no
    secret configured to tell), 503 (the signing certificate could not be fetched: the provider
    retries); `reason` is a bounded label for metrics and the audit log."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def malformed(message: str) -> Refused:
    return Refused(400, "malformed", message)


def forged(message: str = "the webhook's signature does not verify") -> Refused:
    return Refused(401, "bad_signature", message)


# --- SNS --------------------------------------------------------------------------------------

def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    fields = NOTIFICATION_FIELDS if message["Type"] == "Notification" else CONFIRMATION_FIELDS
    return "".join(f"{k}\n{message[k]}\n" for k in fields
                   if k in message and message[k] is not None).encode()


def sns_timestamp(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise malformed("Timestamp is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise malformed("Timestamp has no time zone")
    now = clock.now()
    if when < now - SNS_MAX_AGE or when > now + FUTURE_SKEW:
        raise Refused(400, "stale", "the message's Timestamp is outside the accepted window")
    return when


_certs: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
_fetching = asyncio.Lock()


def cert_url_allowed(url: str) -> bool:
    return re.fullmatch(settings.get().sns_signing_cert_url_pattern, url) is not None


async def signing_key(url: str) -> rsa.RSAPublicKey:
    """The public key of the certificate at `url` (which the caller checked against the
    pattern), from the cache or fetched once (no redirects, bounded size and time)."""
    if url in _certs:
        _certs.move_to_end(url)
        return _certs[url]
    async with _fetching:
        if url in _certs:
            return _certs[url]
        try:
            async with httpx.AsyncClient(timeout=_FETCH_TIMEOUT, follow_redirects=False) as client:
                answer = await client.get(url)
        except httpx.HTTPError:
            raise Refused(503, "cert_unavailable", "the signing certificate could not be fetched") \
                from None
        if answer.status_code != 200 or len(answer.content) > _CERT_MAX_BYTES:
            raise Refused(503, "cert_unavailable", "the signing certificate could not be fetched")
        try:
            cert = x509.load_pem_x509_certificate(answer.content)
        except ValueError:
            raise Refused(401, "bad_certificate", "the signing certificate is not a PEM certificate") \
                from None
        now = clock.now()
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey) or not (
                cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise Refused(401, "bad_certificate", "the signing certificate is not usable")
        _certs[url] = key
        while len(_certs) > _CERT_CACHE:
            _certs.popitem(last=False)
        return key


async def verify_sns(message: dict[str, Any]) -> None:
    """Raise Refused unless `message` (a parsed SNS message with its fields checked as strings)
    is signed by the certificate its SigningCertURL names, which must match the setting."""
    url = message["SigningCertURL"]
    if not cert_url_allowed(url):
        raise Refused(401, "cert_url", "SigningCertURL is not an SNS certificate address")
    version = message["SignatureVersion"]
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # SNS SignatureVersion 1 is SHA-1 by definition
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise malformed("SignatureVersion must be 1 or 2")
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise forged("Signature is not base64") from None
    key = await signing_key(url)
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise forged() from None


# --- HMAC schemes -----------------------------------------------------------------------------

def _secret(value: str, provider: str) -> bytes:
    if not value:
        raise Refused(401, "not_configured", f"{provider} webhooks are not configured here")
    return value.encode()


def verify_zeptomail(header: str | None, body: bytes) -> None:
    key = _secret(settings.get().zeptomail_webhook_key, "ZeptoMail")
    if not header:
        raise forged("producer-signature header missing")
    parts: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            parts[name.strip().lower()] = value.strip()
    if parts.get("s-algorithm", "HmacSHA256").lower() != "hmacsha256" or "s" not in parts:
        raise forged("producer-signature must carry s=... with s-algorithm=HmacSHA256")
    try:
        signature = base64.b64decode(unquote(parts["s"]), validate=True)
    except (binascii.Error, ValueError):
        raise forged("producer-signature s is not base64") from None
    if not hmac.compare_digest(signature, hmac.new(key, body, hashlib.sha256).digest()):
        raise forged()
    try:
        ts = int(parts.get("ts", ""))
    except ValueError:
        raise malformed("producer-signature ts must be milliseconds since the epoch") from None
    try:
        when = datetime.fromtimestamp(ts / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise malformed("producer-signature ts is out of range") from None
    if abs(clock.now() - when) > ZEPTOMAIL_WINDOW:
        raise Refused(400, "stale", "the webhook's ts is outside the accepted window")


def verify_meta(header: str | None, body: bytes) -> None:
    secret = _secret(settings.get().whatsapp_app_secret, "WhatsApp")
    scheme, _, hexdigest = (header or "").partition("=")
    if scheme.strip().lower() != "sha256" or not hexdigest:
        raise forged("X-Hub-Signature-256 header missing")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), hexdigest.strip().lower().encode()):
        raise forged()


def verify_token(given: str | None, expected: str) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(
        given.encode(), expected.encode())
