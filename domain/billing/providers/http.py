"""How the httpx-based payment adapters (PhonePe, PayPal; Razorpay may share it) talk HTTP: one
exchange bounded by `payment_timeout_seconds`, transport failures and 5xx / 429 as
`ProviderError`, other 4xx as `ProviderRejected`, and the OAuth client-credentials tokens both
PhonePe and PayPal need, cached per process until shortly before they expire.

A client per call rather than a pooled one: payments are a handful per minute, and a pool is
bound to the event loop that made it (tests run one loop per call). The TLS context is shared:
building one loads the CA bundle, about 50 ms of CPU on the event loop per call."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from domain.billing.providers.base import ProviderError, ProviderRejected
from domain.settings import get as app_settings

_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = httpx.create_ssl_context()
    return _tls


#: A cached token is dropped this long before the expiry the provider announced, so a call
#: never leaves with a token that expires on the way.
EXPIRY_MARGIN_SECONDS = 60.0


async def request(provider: str, method: str, url: str, **kw: Any) -> httpx.Response:
    """One exchange (`json=`, `data=`, `content=`, `headers=`, `auth=` as httpx takes them),
    read whole. No answer in time or no connection: ProviderError (the caller's retry is safe:
    every call we make carries an idempotency key or is a read)."""
    timeout = app_settings().payment_timeout_seconds
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                     verify=_tls_context()) as client:
            return await client.request(method, url, **kw)
    except httpx.TimeoutException:
        raise ProviderError(f"{provider}: no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        # the text names the failure class, never the URL (it may carry ids) or a header
        raise ProviderError(f"{provider}: cannot reach the API ({type(exc).__name__})") from None


def json_object(provider: str, response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; anything else is a garbled answer (502)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(f"{provider}: answered {response.status_code} without a JSON object",
                            status=502)
    return body


def retry_after(response: httpx.Response, default: int = 30) -> int:
    try:
        return max(1, int(float(response.headers.get("retry-after", default))))
    except ValueError:
        return default


def failure(provider: str, response: httpx.Response, detail: str = "",
            field: str | None = None) -> Exception:
    """What a non-2xx answer means: 429 / 5xx nothing happened, try later; 401 / 403 the
    clinic's credentials are refused; other 4xx this request is refused (`field` when known).
    `detail` is the provider's error code, never its message (it can quote our input)."""
    status = response.status_code
    what = f"{provider}: {status}" + (f" {detail}" if detail else "")
    if status == 429 or status >= 500:
        return ProviderError(what, retry_after=retry_after(response))
    if status in (401, 403):
        return ProviderRejected(f"{what}: the clinic's {provider} credentials are refused",
                                field="credentials")
    return ProviderRejected(what, field=field)


Grant = Callable[[], Awaitable[tuple[str, float]]]


def granted(provider: str, response: httpx.Response, *,
            expiry: Callable[[dict[str, Any]], object]) -> tuple[str, float]:
    """An OAuth client-credentials answer as (token, expires at, epoch seconds); `expiry`
    reads the expiry from the body (PhonePe: `expires_at`, PayPal: now + `expires_in`). A 4xx
    other than 429 means the clinic's credentials are refused; without an expiry the token is
    kept 10 minutes."""
    if response.status_code != 200:
        if 400 <= response.status_code < 500 and response.status_code != 429:
            raise ProviderRejected(f"{provider}: token grant refused ({response.status_code})",
                                   field="credentials")
        raise failure(provider, response, "token grant")
    body = json_object(provider, response)
    token, expires_at = body.get("access_token"), expiry(body)
    if not isinstance(token, str) or not token:
        raise ProviderError(f"{provider}: token grant answered without access_token", status=502)
    if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
        expires_at = time.time() + 600  # undocumented absence: keep it for a short while
    return token, float(expires_at)


class Tokens:
    """OAuth access tokens shared by every call in this process, keyed by what identifies the
    credentials (the secret only as a digest), so a clinic never gets another clinic's token.
    One grant at a time per key: a burst of calls without a token makes one grant."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._locks: dict[tuple[str, ...], tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}

    @staticmethod
    def key(*parts: str, secret: str) -> tuple[str, ...]:
        return (*parts, hashlib.sha256(secret.encode()).hexdigest())

    def _lock(self, key: tuple[str, ...]) -> asyncio.Lock:
        # an asyncio.Lock belongs to one event loop; a process normally has one, tests several
        loop = asyncio.get_running_loop()
        entry = self._locks.get(key)
        if entry is None or entry[0] is not loop:
            entry = (loop, asyncio.Lock())
            self._locks[key] = entry
        return entry[1]

    def _cached(self, key: tuple[str, ...], stale: str | None) -> str | None:
        entry = self._tokens.get(key)
        if entry is not None and entry[1] - EXPIRY_MARGIN_SECONDS > time.time() \
                and entry[0] != stale:
            return entry[0]
        return None

    async def get(self, key: tuple[str, ...], grant: Grant, *, stale: str | None = None) -> str:
        """A token for `key`; `grant()` -> (token, expires at, epoch seconds) makes a new one.
        `stale` is a token the provider refused (401): it is never handed out again."""
        token = self._cached(key, stale)
        if token is not None:
            return token
        async with self._lock(key):
            token = self._cached(key, stale)  # the grant we waited for may have brought one
            if token is not None:
                return token
            self._tokens.pop(key, None)
            token, expires_at = await grant()
            self._tokens[key] = (token, expires_at)
            return token
