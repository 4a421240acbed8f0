"""The OpenVidu of `carewire dev`: the local LiveKit server the tests use
(tests/video/fakes/livekit.py, from this checkout), so video visits connect end to end without
an OpenVidu: rooms, join tokens it verifies, egress, and its signed webhooks posted to
carewire's webhook route. One route of its own stands in for a video client:

    curl -X POST http://127.0.0.1:<port>/dev/join --data <join token>

joins the call with the token (verified as OpenVidu verifies it) and so posts the signed
`participant_joined` webhook (`video.participant_joined` reaches the clinic's sockets). Not
started when CAREWIRE_OPENVIDU_URL is configured (a real OpenVidu), nor from an installed
package (no tests/ beside it)."""

from __future__ import annotations

import os
from typing import Any

from gateway.devfakes import from_checkout

WEBHOOK_PATH = "/api/v1/webhooks/video/openvidu"
JOIN_PATH = "/dev/join"


def start() -> Any | None:
    """The running fake, or None (a real OpenVidu is configured, or no checkout). Point carewire
    at it with its `env()` before settings are read; set `webhook_url` (`webhook_url_for`) once
    the server's address is known."""
    if os.environ.get("CAREWIRE_OPENVIDU_URL"):
        return None
    livekit = from_checkout("tests.video.fakes.livekit")
    base_http = from_checkout("tests.communication.fakes.base_http")
    if livekit is None or base_http is None:
        return None
    reply, refused = base_http.Reply, livekit.FakeRefused

    class DevOpenVidu(livekit.LiveKitFake):  # type: ignore[misc, name-defined]
        def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
            if path != JOIN_PATH:
                return super().handle(method, path, headers, body)
            if method != "POST":
                return reply(405, {"error": "POST a join token"})
            try:
                joined = self.join(body.decode(errors="replace").strip())
            except refused as exc:
                return reply(exc.status, {"error": str(exc)})
            return reply(200, {"joined": joined["identity"], "room": joined["grants"]["room"],
                               "webhook": self.webhook_url})

    fake = DevOpenVidu()
    fake.start()
    return fake


def webhook_url_for(base_url: str) -> str:
    return base_url.rstrip("/") + WEBHOOK_PATH
