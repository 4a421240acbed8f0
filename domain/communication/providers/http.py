"""The one HTTP client every HTTP provider adapter sends through, and how transport failures
map onto the pipeline's failure classes (see base.py)."""

from __future__ import annotations

from typing import Any

import httpx

from domain.communication.providers.base import MaybeSent, Unavailable
from domain.settings import get as app_settings

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    """A pooled client per process (connections to a provider are reused across messages)."""
    global _client
    if _client is None or _client.is_closed:
        timeout = app_settings().provider_timeout_seconds
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
            follow_redirects=False,
        )
    return _client


async def close() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None


async def request(provider: str, method: str, url: str, **kw: Any) -> httpx.Response:
    """One HTTP exchange. Failures before the request could have reached the provider are
    `Unavailable`; after it may have (no answer, a dropped connection) `MaybeSent`. The
    exception text names the provider and the failure, never the URL's query or a header."""
    try:
        return await client().request(method, url, **kw)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise Unavailable(f"{provider}: cannot connect ({type(exc).__name__})") from None
    except httpx.WriteTimeout:
        raise Unavailable(f"{provider}: timed out sending the request") from None
    except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise MaybeSent(f"{provider}: no answer after the request was sent "
                        f"({type(exc).__name__})") from None


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
