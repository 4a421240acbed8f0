"""Sampled audit of unauthenticated refusals (REST 401s, refused socket connects).

One audit row per refusal let a flood of bad tokens queue behind the audit chain's lock and slow
every real write (1,800 refused connects: 1,800 rows, real writes 10 -> 47 ms). A refusal is
still counted exactly (metrics, and a Redis counter here), but written at most once per source
address, transport and reason per window: the first refusal after the window opens writes a row
carrying how many refusals it stands for (itself and those suppressed since the previous row),
so the rows' counts add up to the refusals seen, bar the tail of the current window.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from domain import kv, settings
from domain.audit.commands import Outcome, record
from domain.principal import RequestMeta

log = logging.getLogger("carewire.audit")

#: The messages of `Unauthenticated` we know, as bounded reason labels (metrics, audit, keys).
_REASONS = {
    "missing bearer token": "missing_token",
    "missing bearer board token": "missing_token",
    "auth.token is required": "missing_token",
    "invalid or expired access token": "invalid_token",
    "invalid or expired board token": "invalid_token",
    "invalid or expired access or board token": "invalid_token",
    "invalid or expired refresh token": "invalid_token",
    "invalid refresh token": "invalid_token",
    "session revoked or user disabled": "session_revoked",
    "user no longer exists": "unknown_user",
    "the board's queue no longer exists": "unknown_board",
    "wrong email or password": "bad_credentials",
}
#: Why a provider webhook was refused (domain/inbox/signatures.py, gateway/routes/webhooks.py).
WEBHOOK_REASONS = frozenset({"malformed", "stale", "bad_signature", "bad_certificate",
                             "cert_url", "cert_unavailable", "unknown_topic", "not_configured",
                             "subscribe_url", "subscribe_failed", "bad_verify_token"})
REASONS = frozenset({*_REASONS.values(), *WEBHOOK_REASONS, "other"})
#: A pending count outlives a quiet address this long, then the tail is left to the metrics.
_COUNT_TTL_SECONDS = 24 * 3600


def reason_of(message: str) -> str:
    """A bounded label for an `Unauthenticated` message: one of REASONS."""
    return _REASONS.get(message, "other")


async def record_refusal(*, transport: str, reason: str, message: str, meta: RequestMeta,
                         detail: dict[str, Any] | None = None) -> bool:
    """Count one refusal; append an audit row when it is the first of its window.
    Returns whether a row was written. Outside any transaction (nothing was changed)."""
    window = settings.get().refusal_audit_window_seconds
    subject = kv.key("audit", "refused", transport, reason, meta.ip or "unknown")
    count = 1
    try:
        client = kv.client()
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr(subject + ":n")
            pipe.expire(subject + ":n", _COUNT_TTL_SECONDS)
            pipe.set(subject + ":gate", 1, nx=True, ex=window)
            *_, opened = await pipe.execute()
        if not opened:
            return False
        # Every refusal counted before this point (this one included) is now this row's.
        count = int(await client.getdel(subject + ":n") or 1)
    except RedisError:
        log.warning("refusal sampling unavailable (Redis); auditing this refusal on its own")
    await record(None, action="auth:refused",
                 resource_type="socket" if transport == "socket" else "request",
                 outcome=Outcome.DENIED, meta=meta,
                 detail={"transport": transport, "reason": reason, "message": message[:200],
                         "count": count, "window_seconds": window, **(detail or {})})
    return True
