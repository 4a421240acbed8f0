"""The one HTTP client every HTTP provider adapter sends through, and how transport failures
map onto the pipeline's failure classes (see base.py).

aiohttp rather than httpx: with 50 sends in flight, httpx's pool checked every connection's
expiry on every request and cost a worker ~2.4 ms of CPU per message (bench/delivery.py
--provider zeptomail, 355 messages/s); aiohttp's pool does not scan.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from domain.communication.providers.base import MaybeSent, Unavailable
from domain.settings import get as app_settings


class Answer(msgspec.Struct, frozen=True):
    """A provider's answer, read whole (they are small)."""

    status_code: int
    #: Header names lowercased.
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.content)


_session: aiohttp.ClientSession | None = None


def session() -> aiohttp.ClientSession:
    """A pooled session per process (connections to a provider are reused across messages)."""
    global _session
    if _session is None or _session.closed:
        timeout = app_settings().provider_timeout_seconds
        _session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0)),
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=100),
            json_serialize=lambda obj: msgspec.json.encode(obj).decode(),
        )
    return _session


async def close() -> None:
    global _session
    if _session is not None:
        await _session.close()
        _session = None


async def request(provider: str, method: str, url: str, **kw: Any) -> Answer:
    """One HTTP exchange (`json=`, `data=`, `headers=` as aiohttp takes them). Failures before
    the request could have reached the provider are `Unavailable`; after it may have (no answer,
    a dropped connection) `MaybeSent`. The exception text names the provider and the failure,
    never the URL's query or a header."""
    try:
        async with session().request(method, url, allow_redirects=False, **kw) as r:
            body = await r.read()
            return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, body)
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise Unavailable(f"{provider}: cannot connect ({type(exc).__name__})") from None
    except (aiohttp.SocketTimeoutError, TimeoutError):
        raise MaybeSent(f"{provider}: no answer after the request was sent (timeout)") from None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError,
            aiohttp.ClientResponseError) as exc:
        raise MaybeSent(f"{provider}: no answer after the request was sent "
                        f"({type(exc).__name__})") from None


def retry_after(response: Answer) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
