"""Access tokens (short-lived JWT, HS256) and opaque refresh tokens (stored only as a hash)."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from domain import settings
from domain.errors import Unauthenticated

_ALG = "HS256"


def _key() -> OctKey:
    return OctKey.import_key(settings.get().jwt_secret.encode())


def issue_access_token(user_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, int]:
    ttl = settings.get().access_token_ttl_seconds
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_hex(8),
        "typ": "access",
    }
    return jwt.encode({"alg": _ALG}, claims, _key(), algorithms=[_ALG]), ttl


class AccessClaims:
    __slots__ = ("exp", "session_id", "user_id")

    def __init__(self, user_id: uuid.UUID, session_id: uuid.UUID, exp: int) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.exp = exp


_registry = jwt.JWTClaimsRegistry(
    sub={"essential": True}, sid={"essential": True}, exp={"essential": True},
    typ={"essential": True, "value": "access"},
)


def decode_access_token(token: str) -> AccessClaims:
    try:
        decoded = jwt.decode(token, _key(), algorithms=[_ALG])
        _registry.validate(decoded.claims)
        claims = decoded.claims
        return AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]), int(claims["exp"]))
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise Unauthenticated("invalid or expired access token") from exc


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def issue_device_token(kind: str, subject: uuid.UUID, expires_at: int, **claims: str) -> str:
    """A token for a device that is not a user (a waiting-room board): it names one object and
    its `typ` keeps it out of every place that takes access tokens."""
    body = {"sub": str(subject), "iat": int(time.time()), "exp": expires_at, "typ": kind, **claims}
    return jwt.encode({"alg": _ALG}, body, _key(), algorithms=[_ALG])


def decode_device_token(token: str, kind: str) -> dict[str, object]:
    registry = jwt.JWTClaimsRegistry(sub={"essential": True}, exp={"essential": True},
                                     typ={"essential": True, "value": kind})
    try:
        decoded = jwt.decode(token, _key(), algorithms=[_ALG])
        registry.validate(decoded.claims)
        return dict(decoded.claims)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise Unauthenticated(f"invalid or expired {kind} token") from exc
