"""`carewire dev`'s OpenVidu (gateway/devvideo.py): the test LiveKit server plus the route a
newcomer curls to join. A join token our OpenVidu adapter signed is accepted and the fake posts
a webhook our verification accepts; a bad token joins nothing and posts nothing; a configured
OpenVidu means no fake."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from domain import clock
from domain.video.models import Role
from domain.video.providers import verify_openvidu_webhook
from domain.video.providers.base import GRANTS, Participant
from domain.video.providers.openvidu import OpenVidu
from gateway import devvideo
from tests.communication.fakes.base_http import FakeServer, Reply
from tests.servers import eventually


class Receiver(FakeServer):
    """Where the webhooks go: carewire's webhook route stands in as a recorder."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[str, bytes, dict[str, str]]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        self.got.append((path, body, headers))
        return Reply(200, {"stored": 1})


@pytest.fixture()
def dev() -> Iterator[tuple[Any, Receiver]]:
    saved = os.environ.pop("CAREWIRE_OPENVIDU_URL", None)
    try:
        fake = devvideo.start()
    finally:
        if saved is not None:
            os.environ["CAREWIRE_OPENVIDU_URL"] = saved
    assert fake is not None  # the checkout has its tests: the dev OpenVidu is there
    receiver = Receiver().start()
    fake.webhook_url = devvideo.webhook_url_for(receiver.url)
    yield fake, receiver
    fake.stop()
    receiver.stop()


def test_a_join_with_our_token_posts_a_webhook_that_verifies(dev: Any) -> None:
    fake, receiver = dev
    adapter = OpenVidu(fake.url, fake.api_key, fake.api_secret)
    now = clock.now()
    ticket = adapter.ticket("demoroom0123456789", Participant("u-1", "Dr. Khan", Role.DOCTOR),
                            GRANTS[Role.DOCTOR], not_before=now - timedelta(minutes=1),
                            expires_at=now + timedelta(minutes=30))
    r = httpx.post(fake.url + devvideo.JOIN_PATH, content=ticket.token)
    assert r.status_code == 200, r.text
    assert r.json()["room"] == "demoroom0123456789" and r.json()["joined"] == "u-1"
    eventually(lambda: len(receiver.got) == 2, timeout=10)  # room_started, participant_joined
    events = []
    for path, body, headers in receiver.got:
        assert path == devvideo.WEBHOOK_PATH
        events.append(verify_openvidu_webhook(body, headers["authorization"],
                                              {fake.api_key: fake.api_secret}))
    assert [e.event for e in events] == ["room_started", "participant_joined"]
    event = events[1]
    assert (event.room.name, event.participant.identity) == ("demoroom0123456789", "u-1")
    assert json.loads(event.participant.metadata)["role"] == "doctor"


def test_a_bad_token_or_a_get_joins_nothing(dev: Any) -> None:
    fake, receiver = dev
    assert httpx.post(fake.url + devvideo.JOIN_PATH, content=b"not-a-token").status_code == 401
    assert httpx.get(fake.url + devvideo.JOIN_PATH).status_code == 405
    assert not fake.participants and receiver.got == []


def test_a_configured_openvidu_starts_no_fake() -> None:
    saved = os.environ.get("CAREWIRE_OPENVIDU_URL")
    os.environ["CAREWIRE_OPENVIDU_URL"] = "https://openvidu.example.org"
    try:
        assert devvideo.start() is None
    finally:
        if saved is None:
            del os.environ["CAREWIRE_OPENVIDU_URL"]
        else:
            os.environ["CAREWIRE_OPENVIDU_URL"] = saved


def test_the_demo_video_visit_opens_and_gives_the_doctor_a_token(env: Any, api: Any,
                                                                 db: Any) -> None:
    """What the start-up lines tell a newcomer to curl: the seeded visit (paid, today, inside its
    join window, the same one on a second run) opens a room and gives Dr. Khan a join token."""
    from gateway.demo_seed import DEMO_PASSWORD, VIDEO_DOCTOR
    from tests import servers

    for _ in range(2):
        done = servers.cli(env, "seed-demo")
        assert done.returncode == 0, done.stderr
    [visit] = db.fetch("""SELECT a.id, a.status FROM appointments a JOIN users u ON u.id = a.doctor_id
                          WHERE u.email = $1 AND a.type = 'video'
                            AND a.starts_at < now() + interval '10 minutes'""", VIDEO_DOCTOR)
    assert visit["status"] == "scheduled"  # paid at the desk
    token = api.token(VIDEO_DOCTOR, DEMO_PASSWORD)
    r = api.as_(token, "POST", "/video/sessions", json={"appointment_id": str(visit["id"])})
    assert r.status_code == 201, r.text
    joined = api.as_(token, "POST", f"/video/sessions/{r.json()['id']}/token")
    assert joined.status_code == 200, joined.text
    assert joined.json()["role"] == "doctor" and joined.json()["token"]
