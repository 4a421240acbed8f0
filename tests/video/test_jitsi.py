"""The Jitsi adapter: its tokens decoded as Prosody (HS256, the app secret) and 8x8 (RS256, the
public key of a pair made here) would decode them, claims per role exactly; its health check
against a local server answering `/config.js`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import OctKey, RSAKey

from domain.video.models import Role
from domain.video.providers.base import GRANTS, Participant
from domain.video.providers.jitsi import Jitsi
from tests.billing.adapter_calls import run
from tests.communication.fakes.base_http import HANG, FakeServer, Reply

SECRET = "jitsi-app-secret-" + "s" * 24
WHO = {Role.DOCTOR: Participant("doc-1", "Dr Rao", Role.DOCTOR),
       Role.PATIENT: Participant("pat-1", "Asha", Role.PATIENT),
       Role.OBSERVER: Participant("rec-1", "Reception", Role.OBSERVER)}
#: context.user's flags and context.features per role.
EXPECTED = {Role.DOCTOR: ("true", "owner", "true"), Role.PATIENT: ("false", "member", "false"),
            Role.OBSERVER: ("false", "member", "false")}
START = datetime(2026, 12, 4, 9, 50, tzinfo=UTC)
END = START + timedelta(minutes=70)


def _ticket(j: Jitsi, role: Role) -> Any:
    return j.ticket("cw-room-1", WHO[role], GRANTS[role], not_before=START, expires_at=END)


@pytest.mark.parametrize("role", list(Role))
def test_self_hosted_tokens_verify_with_the_app_secret(role: Role) -> None:
    j = Jitsi("meet.example.org", "carewire", SECRET)
    t = _ticket(j, role)
    assert t.server_url is None and t.url == f"https://meet.example.org/cw-room-1?jwt={t.token}"
    decoded = jwt.decode(t.token, OctKey.import_key(SECRET.encode()), algorithms=["HS256"])
    assert decoded.header == {"alg": "HS256", "typ": "JWT"}
    moderator, affiliation, recording = EXPECTED[role]
    assert decoded.claims == {
        "iss": "carewire", "aud": "carewire", "sub": "meet.example.org", "room": "cw-room-1",
        "nbf": int(START.timestamp()), "exp": int(END.timestamp()),
        "context": {"user": {"id": WHO[role].identity, "name": WHO[role].name,
                             "moderator": moderator, "affiliation": affiliation},
                    "features": {"recording": recording}}}
    with pytest.raises(BadSignatureError):
        jwt.decode(t.token, OctKey.import_key(b"another-secret-" + b"x" * 24), algorithms=["HS256"])


def _key_pair() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.mark.parametrize("role", list(Role))
def test_jaas_tokens_verify_with_the_public_key(role: Role) -> None:
    private, public = _key_pair()
    app_id = "vpaas-magic-cookie-0123456789abcdef"
    j = Jitsi("ignored.example.org", app_id, private, key_id="4f4910")
    t = _ticket(j, role)
    assert t.url == f"https://8x8.vc/{app_id}/cw-room-1?jwt={t.token}"
    decoded = jwt.decode(t.token, RSAKey.import_key(public), algorithms=["RS256"])
    assert decoded.header == {"alg": "RS256", "typ": "JWT", "kid": f"{app_id}/4f4910"}
    moderator, affiliation, recording = EXPECTED[role]
    assert decoded.claims == {
        "iss": "chat", "aud": "jitsi", "sub": app_id, "room": "cw-room-1",
        "nbf": int(START.timestamp()), "exp": int(END.timestamp()),
        "context": {"user": {"id": WHO[role].identity, "name": WHO[role].name,
                             "moderator": moderator, "affiliation": affiliation},
                    "features": {"recording": recording}}}
    _, other_public = _key_pair()
    with pytest.raises(BadSignatureError):
        jwt.decode(t.token, RSAKey.import_key(other_public), algorithms=["RS256"])


class _JitsiWeb(FakeServer):
    """A Jitsi web server as far as the health check sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.hang = False
        self.paths: list[str] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | type[HANG]:
        self.paths.append(path)
        if self.hang:
            return HANG
        return Reply(self.status, b"var config = {};", {"Content-Type": "application/javascript"})


@pytest.fixture(scope="module")
def web() -> Iterator[_JitsiWeb]:
    w = _JitsiWeb().start()
    yield w
    w.stop()


def test_health_asks_for_config_js(web: Any, configure: Any) -> None:
    assert isinstance(web, _JitsiWeb)
    configure(video_timeout_seconds="0.5")
    j = Jitsi(f"127.0.0.1:{web.port}", "carewire", SECRET, scheme="http")
    assert run(j.healthy()) is True and web.paths[-1] == "/config.js"
    web.status = 502
    assert run(j.healthy()) is False
    web.status, web.hang = 200, True
    assert run(j.healthy()) is False
    web.hang = False
    assert run(j.healthy()) is True
    # rooms need no call: nothing reaches the server
    seen = len(web.paths)
    run(j.create_room("cw-room-1", empty_timeout_seconds=60, max_participants=4))
    run(j.close_room("cw-room-1"))
    assert len(web.paths) == seen
