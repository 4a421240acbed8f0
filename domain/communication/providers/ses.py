"""Amazon SES v2 (`sesv2.send_email`) through aioboto3.

The mail goes as `Content.Raw` (the MIME of mime.py), not `Content.Simple`: Simple gained a
`Headers` list in recent SES v2 and would carry List-Unsubscribe on AWS, but moto ignores it
(and drops the text part when html is present), so only Raw can be proven in tests, and Raw is
what AWS documents for full control of headers anyway. SES replaces our Message-ID with its own;
the `MessageId` it answers is what its SNS notifications refer to.

Idempotency: SES has none; a repeated call sends again.

Retries: botocore retries throttling and 5xx by itself; ours are the pipeline's, so the client is
built with `total_max_attempts=1` (note: `max_attempts=1` would mean ONE RETRY in botocore).

Clients: one aioboto3 Session per process; one client per (event loop, region, access key,
secret digest, endpoint, timeout), created on first use and kept: an aiobotocore client owns an
aiohttp connection pool, and building one costs more than a send. Measured against moto on
loopback: ~95 sends/s one after another with the kept client vs ~15/s with a client per send;
~120/s with 20 in flight (moto itself is the limit there). That is far below the ~1000 msg/s the
bench wants per worker, which the local sink and the ZeptoMail fake drive; real SES caps a
clinic's account lower still (sandbox 1/s, production quotas from get_account()). `close()`
closes the clients of the running loop; the worker should call it on shutdown (a loop that never calls
it keeps its clients, and itself, alive).

How failures map: MessageRejected / BadRequestException / InvalidParameterValue (bad address,
content) → Rejected; TooManyRequests / Throttling / LimitExceeded, AccountSuspended,
SendingPaused, MailFromDomainNotVerified, NotFound (configuration set), bad or expired keys,
access denied, any 5xx and every code we do not know → Unavailable (nothing was sent; the
breaker should see it); connect errors → Unavailable; read timeout or a connection closed
while waiting for the answer → MaybeSent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import botocore.exceptions as bx
from botocore.config import Config

from domain.communication.models import Channel, Outbound
from domain.communication.providers import mime
from domain.communication.providers.base import MaybeSent, Rejected, Sent, Unavailable
from domain.settings import get as app_settings

REJECTED = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})

_session: Any = None
_clients: dict[tuple[Any, ...], tuple[Any, contextlib.AsyncExitStack]] = {}
_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def _aws_session() -> Any:
    """Imported on first use: aioboto3 costs ~0.25 s to import, which every process importing
    the provider registry (the gateway validating a chain) would otherwise pay."""
    global _session
    if _session is None:
        import aioboto3

        _session = aioboto3.Session()
    return _session


async def _client(credentials: Mapping[str, str]) -> Any:
    settings = app_settings()
    loop = asyncio.get_running_loop()
    region = credentials["region"]
    digest = hashlib.sha256(credentials["secret_access_key"].encode()).hexdigest()
    key = (loop, region, credentials["access_key_id"], digest, settings.aws_endpoint_url,
           settings.provider_timeout_seconds)
    found = _clients.get(key)
    if found is not None:
        return found[0]
    async with _locks.setdefault(loop, asyncio.Lock()):
        found = _clients.get(key)
        if found is not None:
            return found[0]
        timeout = settings.provider_timeout_seconds
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                        connect_timeout=min(timeout, 5.0), read_timeout=timeout,
                        max_pool_connections=50)
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(_aws_session().client(
            "sesv2", region_name=region, endpoint_url=settings.aws_endpoint_url or None,
            aws_access_key_id=credentials["access_key_id"],
            aws_secret_access_key=credentials["secret_access_key"], config=config))
        _clients[key] = (client, stack)
        return client


async def close() -> None:
    """Close the clients this event loop opened."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _clients if k[0] is loop]:
        _, stack = _clients.pop(key)
        await stack.aclose()
    _locks.pop(loop, None)


def _failure(exc: bx.ClientError) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "unknown")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in REJECTED and not (status and status >= 500):
        return Rejected(f"ses: message refused: {code}", status_code=status, code=code)
    return Unavailable(f"ses: {code} ({status})", status_code=status, code=code)


class SES:
    name: ClassVar[str] = "ses"
    channels: ClassVar[frozenset[Channel]] = frozenset({"email"})
    required_fields: ClassVar[tuple[str, ...]] = ("access_key_id", "secret_access_key", "region")
    optional_fields: ClassVar[tuple[str, ...]] = ("configuration_set",)
    #: The SES sandbox allows 1/s; production quotas vary per account (get_account()).
    default_rate_per_second: ClassVar[int] = 10

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        missing = [f for f in self.required_fields if not credentials.get(f)]
        if missing:
            raise Unavailable(f"ses: missing credential fields: {', '.join(missing)}")
        raw = mime.render("ses", message).as_bytes()
        params: dict[str, Any] = {
            "FromEmailAddress": message.sender.from_address,
            "Destination": {"ToAddresses": [message.to]},
            "Content": {"Raw": {"Data": raw}},
        }
        if credentials.get("configuration_set"):
            params["ConfigurationSetName"] = credentials["configuration_set"]
        try:
            client = await _client(credentials)
            answer = await client.send_email(**params)
        except bx.ClientError as exc:
            raise _failure(exc) from None
        except (bx.ReadTimeoutError, bx.ConnectionClosedError) as exc:
            raise MaybeSent(f"ses: no answer after the request was sent ({type(exc).__name__})") \
                from None
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.SSLError,
                bx.ProxyConnectionError, bx.NoCredentialsError, bx.ParamValidationError) as exc:
            raise Unavailable(f"ses: cannot send ({type(exc).__name__})") from None
        except bx.HTTPClientError as exc:
            raise MaybeSent(f"ses: transport failure ({type(exc).__name__})") from None
        status = answer.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return Sent(provider_message_id=str(answer["MessageId"]), status_code=status)
