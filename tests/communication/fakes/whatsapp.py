"""Meta's WhatsApp Cloud API `POST /{version}/{phone_number_id}/messages`, on loopback.

Checks what Graph checks: the Bearer token (190 when wrong), that the phone number id exists for
that token (100 / subcode 33), `messaging_product: whatsapp`, `to` as digits, and the `text` or
`template` shape. Answers like Meta (`contacts`, `messages[0].id = wamid...`) and with Meta's
error shape `{"error": {message, type, code, error_data, fbtrace_id}}` per fault mode.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.communication.fakes.base_http import HANG, FakeServer, Reply

PATH = re.compile(r"^/(v[0-9]+\.[0-9]+)/([^/]+)/messages$")
#: fault mode → (HTTP status, Graph error code, message)
FAULTS: dict[str, tuple[int, int, str]] = {
    "undeliverable": (400, 131026, "Message Undeliverable."),
    "outside_window": (400, 131047, "Re-engagement message"),
    "rate_limited": (400, 130429, "Rate limit hit"),
    "pair_rate_limited": (400, 131056, "(Business Account, Consumer Account) pair rate limit hit"),
    "expired_token": (401, 190, "Error validating access token: Session has expired."),
    "bad_parameter": (400, 131009, "Parameter value is not valid"),
    "500": (500, 131000, "Something went wrong"),
}


@dataclass
class WhatsAppFake(FakeServer):
    access_token: str = field(default_factory=lambda: "EAAG" + secrets.token_urlsafe(24))
    phone_number_ids: set[str] = field(default_factory=lambda: {"106540352242922"})
    version: str = "v21.0"
    #: "ok", "hang" or a key of FAULTS
    mode: str = "ok"
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        FakeServer.__init__(self)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | type[HANG]:
        with self.lock:
            self.requests += 1
        m = PATH.match(path)
        if method != "POST" or m is None or m.group(1) != self.version:
            return _error(400, 100, "Unknown path components", "OAuthException")
        if headers.get("authorization") != f"Bearer {self.access_token}":
            return _error(401, 190, "Invalid OAuth access token - Cannot parse access token",
                          "OAuthException")
        number_id = m.group(2)
        if number_id not in self.phone_number_ids:
            return _error(400, 100, f"Unsupported post request. Object with ID '{number_id}' does not "
                          "exist, cannot be loaded due to missing permissions, or does not support "
                          "this operation.", "GraphMethodException", subcode=33)
        try:
            doc = json.loads(body)
        except ValueError:
            return _error(400, 100, "Invalid parameter", "OAuthException")
        problem = _check(doc)
        if problem is not None:
            return _error(400, 100, problem, "OAuthException")
        if self.mode == "hang":
            return HANG
        if self.mode in FAULTS:
            status, code, message = FAULTS[self.mode]
            return _error(status, code, message, "OAuthException", details=message)
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(24)).decode()
        with self.lock:
            self.accepted.append({"phone_number_id": number_id, "body": doc, "id": wamid})
        answer: dict[str, Any] = {"messaging_product": "whatsapp",
                                  "contacts": [{"input": doc["to"], "wa_id": doc["to"]}],
                                  "messages": [{"id": wamid}]}
        if doc["type"] == "template":
            answer["messages"][0]["message_status"] = "accepted"
        return Reply(200, answer)


def _check(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "Invalid parameter"
    if doc.get("messaging_product") != "whatsapp":
        return "(#100) The parameter messaging_product is required."
    to = doc.get("to")
    if not isinstance(to, str) or not re.fullmatch(r"[0-9]{7,15}", to):
        return "(#100) Invalid parameter: to"
    kind = doc.get("type", "text")
    if kind == "text":
        text = doc.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"] \
                or len(text["body"]) > 4096:
            return "(#100) Param text['body'] must be a non-empty string of at most 4096 characters"
    elif kind == "template":
        t = doc.get("template")
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            return "(#100) Param template['name'] is required"
        if not isinstance(t.get("language"), dict) or not isinstance(t["language"].get("code"), str):
            return "(#100) Param template['language']['code'] is required"
        for comp in t.get("components", []):
            if not isinstance(comp, dict) or comp.get("type") not in ("header", "body", "button"):
                return "(#100) Invalid parameter: components"
            for p in comp.get("parameters", []):
                if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                    return "(#100) Invalid parameter: components[].parameters"
    else:
        return f"(#100) Unsupported message type {kind}"
    opaque = doc.get("biz_opaque_callback_data")
    if opaque is not None and (not isinstance(opaque, str) or len(opaque) > 512):
        return "(#100) biz_opaque_callback_data must be a string of at most 512 characters"
    return None


def _error(status: int, code: int, message: str, kind: str, *, subcode: int | None = None,
           details: str | None = None) -> Reply:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code,
                             "fbtrace_id": secrets.token_urlsafe(12)}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return Reply(status, {"error": error})


@contextmanager
def whatsapp_server(**kw: Any) -> Iterator[WhatsAppFake]:
    fake = WhatsAppFake(**kw)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
