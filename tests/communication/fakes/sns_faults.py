"""SNS's query API failing the ways moto never does (5xx, throttling, a refused signature, no
answer), so the SNS adapter's error mapping and its no-retry setting can be seen on the wire.

Requests must be SigV4-signed for service `sns` (the Authorization header's credential scope is
checked, not the signature). `CheckIfPhoneNumberIsOptedOut` answers "not opted out"; every
other action answers per `mode` ("ok" answers a Publish and records its form). Each request
is counted, so a botocore retry would show.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.communication.fakes.base_http import HANG, FakeServer, Reply

SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([a-z0-9-]+)/sns/aws4_request, "
                   r"SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$")
NS = "http://sns.amazonaws.com/doc/2010-03-31/"
#: mode → (HTTP status, error type, error code)
FAULTS = {
    "500": (500, "Receiver", "InternalError"),
    "throttled": (400, "Sender", "Throttling"),
    "auth": (403, "Sender", "InvalidClientTokenId"),
    "bad_number": (400, "Sender", "InvalidParameter"),
}


@dataclass
class SnsFaults(FakeServer):
    mode: str = "500"
    #: (action, access key id) of every request
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: the form of every Publish answered in mode "ok"
    published: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        FakeServer.__init__(self)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | type[HANG]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        action = form.get("Action", "")
        signed = SIGV4.match(headers.get("authorization", ""))
        with self.lock:
            self.requests.append((action, signed.group(1) if signed else ""))
        if signed is None:
            return _error(403, "Sender", "IncompleteSignature")
        if action == "CheckIfPhoneNumberIsOptedOut":
            return _xml(200, f'<CheckIfPhoneNumberIsOptedOutResponse xmlns="{NS}">'
                             "<CheckIfPhoneNumberIsOptedOutResult><isOptedOut>false</isOptedOut>"
                             "</CheckIfPhoneNumberIsOptedOutResult>"
                             f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                             "</CheckIfPhoneNumberIsOptedOutResponse>")
        if self.mode == "hang":
            return HANG
        if self.mode == "ok" and action == "Publish":
            message_id = str(uuid.uuid4())
            with self.lock:
                self.published.append(form)
            return _xml(200, f'<PublishResponse xmlns="{NS}"><PublishResult><MessageId>{message_id}'
                             "</MessageId></PublishResult>"
                             f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
                             "</PublishResponse>")
        status, kind, code = FAULTS[self.mode]
        return _error(status, kind, code)


def _xml(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), {"Content-Type": "text/xml"})


def _error(status: int, kind: str, code: str) -> Reply:
    return _xml(status, f'<ErrorResponse xmlns="{NS}"><Error><Type>{kind}</Type><Code>{code}</Code>'
                        f"<Message>{code}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
                        "</ErrorResponse>")


@contextmanager
def sns_faults(**kw: Any) -> Iterator[SnsFaults]:
    fake = SnsFaults(**kw)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
