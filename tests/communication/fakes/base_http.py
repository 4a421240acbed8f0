"""What the HTTP provider fakes share: a threaded loopback server whose handler hands each
request to the fake, and a `hang` that holds a request unanswered until the fake stops."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests import servers


class _Server(ThreadingHTTPServer):
    #: a burst of concurrent connects must not overflow the listen backlog (the default 5
    #: drops SYNs, and the client's retry comes after its connect timeout)
    request_queue_size = 256
    daemon_threads = True


class Reply:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


class HANG:
    """Returned by a fake's `handle` to leave the request unanswered (a read timeout)."""


class RESET:
    """Returned by a fake's `handle` to close the connection without an answer (a reset)."""


class FakeServer:
    """Subclasses implement `handle(method, path, headers, body) -> Reply | type[HANG]`."""

    def __init__(self) -> None:
        self.port = servers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                reply = fake.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                    raw)
                if reply is RESET:
                    self.close_connection = True
                    return
                if reply is HANG:
                    fake._stopping.wait(60)
                    self.close_connection = True
                    return
                assert isinstance(reply, Reply)
                data = b"" if reply.body is None else (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode())
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.headers.pop("Content-Type", "application/json"))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = _serve
            do_GET = _serve

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def handle(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> Reply | type[HANG] | type[RESET]:
        raise NotImplementedError

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
