"""A local ZeptoMail: `POST /v1.1/email` as the real API answers it.

Checks what ZeptoMail checks: the `Zoho-enczapikey` token (401, TM_4001 / SERR_157), JSON
(TM_3301), the mandatory fields from.address, to[].email_address.address, subject and
htmlbody|textbody (400, TM_3201 / GE_102 naming the field), recipient syntax (TM_4001 / SM_113,
target "to"). Accepted mails answer 201 with the real shape and a fresh request_id.

It does NOT dedupe by client_reference: nothing ZeptoMail publishes says it does (see the
adapter's docstring), so every accepted POST is recorded and tests can count duplicates.

Fault modes, switchable while running (`server.mode = ...`): ok, 500, 429, hang (reads the
request, never answers until `release()` or shutdown), bad_recipient (TM_4001 / SM_113 on
"to"), unauthorized (401 whatever the token), account (TM_3601 / AE_101, account blocked),
unverified_sender (TM_4001 / SM_111: the from domain is not verified in the Mail Agent).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests import servers

MODES = ("ok", "500", "429", "hang", "bad_recipient", "unauthorized", "account", "unverified_sender")


def _error(code: str, sub: str, message: str, target: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "details": [{"code": sub, "message": message, "target": target}],
                      "message": message, "request_id": secrets.token_hex(12)}}


class FakeZeptoMail(ThreadingHTTPServer):
    daemon_threads = True
    #: the default backlog of 5 resets connections when a bench opens a hundred at once
    request_queue_size = 256

    def __init__(self, token: str) -> None:
        self.port = servers.free_port()
        super().__init__(("127.0.0.1", self.port), _Handler)
        self.token = token
        self.mode = "ok"
        self.url = f"http://127.0.0.1:{self.port}"
        #: Accepted mails: {"request_id", "headers", "body"}.
        self.accepted: list[dict[str, Any]] = []
        #: Every request that reached the server (accepted or not), in order.
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._release = threading.Event()

    def release(self) -> None:
        """Let hanging requests go (they answer 500 then; their clients have given up)."""
        self._release.set()

    def reset(self) -> None:
        with self.lock:
            self.accepted.clear()
            self.requests.clear()
        self.mode = "ok"
        self._release.set()  # requests left hanging by an earlier test answer and go
        self._release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: FakeZeptoMail
    protocol_version = "HTTP/1.1"
    #: headers and body go out as two writes: with Nagle on, the client's delayed ACK costs
    #: ~40 ms per answer (22 sends/s sequentially instead of thousands)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = {"path": self.path, "headers": dict(self.headers.items()), "raw": raw}
        with srv.lock:
            srv.requests.append(record)
        mode = srv.mode
        if mode == "hang":
            srv._release.wait(60)
            self._answer(500, _error("TM_5000", "GE_500", "released"))
            return
        if mode == "500":
            self._answer(500, {"error": {"code": "TM_5000", "message": "Internal Server Error",
                                         "details": [], "request_id": secrets.token_hex(12)}})
            return
        if mode == "429":
            self._answer(429, _error("TM_6001", "SMI_116", "Too many requests"), {"Retry-After": "7"})
            return
        if self.path != "/v1.1/email":
            self._answer(404, _error("TM_3101", "GE_101", "Invalid API URL"))
            return
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if mode == "unauthorized" or scheme.lower() != "zoho-enczapikey" or token.strip() != srv.token:
            self._answer(401, _error("TM_4001", "SERR_157", "Invalid API Token found"))
            return
        if mode == "account":
            self._answer(400, _error("TM_3601", "AE_101", "Account blocked"))
            return
        if mode == "unverified_sender":
            self._answer(400, _error("TM_4001", "SM_111", "Sender address domain is not verified",
                                     "from"))
            return
        try:
            body = json.loads(raw)
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            self._answer(400, _error("TM_3301", "SM_101", "Invalid JSON"))
            return
        missing = _missing(body)
        if missing:
            self._answer(400, _error("TM_3201", "GE_102", f"Mandatory Field '{missing}' is missing",
                                     missing))
            return
        to = [r["email_address"]["address"] for r in body["to"]]
        if mode == "bad_recipient" or any("@" not in a or a.startswith("@") for a in to):
            self._answer(400, _error("TM_4001", "SM_113", "Invalid value", "to"))
            return
        request_id = f"{secrets.token_hex(6)}.{secrets.token_hex(20)}"
        with srv.lock:
            srv.accepted.append({"request_id": request_id, "headers": record["headers"], "body": body})
        self._answer(201, {"data": [{"code": "EM_104", "additional_info": [],
                                     "message": "Email request received"}],
                           "message": "OK", "request_id": request_id, "object": "email"})


def _missing(body: dict[str, Any]) -> str | None:
    sender = body.get("from")
    if not isinstance(sender, dict) or not sender.get("address"):
        return "from"
    to = body.get("to")
    if not isinstance(to, list) or not to:
        return "to"
    for r in to:
        if not isinstance(r, dict) or not isinstance(r.get("email_address"), dict) \
                or not r["email_address"].get("address"):
            return "to"
    if not body.get("subject"):
        return "subject"
    if not body.get("htmlbody") and not body.get("textbody"):
        return "htmlbody"
    return None


@contextmanager
def zeptomail_server(token: str) -> Iterator[FakeZeptoMail]:
    server = FakeZeptoMail(token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release()
        server.shutdown()
        server.server_close()
