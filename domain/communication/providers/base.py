"""What every provider adapter is, and the three ways a send can fail.

The pipeline decides what a failure means from its class alone:

- `Rejected`: the provider refused *this message* (bad recipient, a 4xx that is not about our
  account). The message fails; the breaker is not tripped; no fallback (another provider would
  refuse the same address). `retire_token` retires a dead push token.
- `Unavailable`: nothing was sent (5xx, connection refused, a timeout before the request
  left, 429, bad credentials). Trips the breaker; the next provider in the chain is tried.
- `MaybeSent`: the request left and no answer came (read timeout, connection dropped after
  sending). Recorded as `unknown`; no other provider is tried unless the channel allows it.

An adapter never retries by itself and never logs a credential or a message body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Protocol

import msgspec

from domain.communication.models import Channel, Outbound


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    #: The provider's id for the message (ZeptoMail request_id, SES MessageId, FCM name,
    #: wamid...), which its webhooks refer to.
    provider_message_id: str | None = None
    status_code: int | None = None


class SendError(Exception):
    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after


class Rejected(SendError):
    def __init__(self, message: str, *, retire_token: bool = False, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retire_token = retire_token


class Unavailable(SendError):
    pass


class MaybeSent(SendError):
    pass


class Provider(Protocol):
    #: Lowercase name used in configuration and the delivery log (e.g. "zeptomail").
    name: ClassVar[str]
    channels: ClassVar[frozenset[Channel]]
    #: Credential fields a clinic must store for this provider; `PUT .../config` refuses a
    #: chain naming a provider whose required fields are missing.
    required_fields: ClassVar[tuple[str, ...]]
    optional_fields: ClassVar[tuple[str, ...]]
    #: Sends per second per clinic when the clinic sets no rate of its own.
    default_rate_per_second: ClassVar[int]

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        """Send once. Raise Rejected, Unavailable or MaybeSent as described above."""
        ...
