"""The OpenVidu adapter in process against the LiveKit fake: the official SDK's calls as the
server checks them, tokens by role as the server admits them, the outage/refusal split the
failover rests on, recordings into S3 (moto), and webhook verification."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import jwt
import pytest
from livekit import api as lk

from domain.video.models import RecordingStatus, Role
from domain.video.providers import verify_openvidu_webhook
from domain.video.providers.base import GRANTS, WAITING, Participant, ProviderDown, ProviderRefused
from domain.video.providers.openvidu import OpenVidu
from tests import servers
from tests.billing.adapter_calls import run
from tests.communication.fakes import aws
from tests.communication.fakes.base_http import FakeServer, Reply
from tests.video.fakes.livekit import FakeRefused, LiveKitFake

BUCKET = "carewire-recordings"
TIMEOUT = 1.0
WHO = {Role.DOCTOR: Participant("doc-1", "Dr Rao", Role.DOCTOR),
       Role.PATIENT: Participant("pat-1", "Asha", Role.PATIENT),
       Role.OBSERVER: Participant("rec-1", "Reception", Role.OBSERVER)}
#: The `video` claim the server records for each role (what the participant may do there).
EXPECTED = {
    Role.DOCTOR: {"roomJoin": True, "canPublish": True, "canSubscribe": True,
                  "canPublishData": True, "roomAdmin": True, "roomRecord": True},
    Role.PATIENT: {"roomJoin": True, "canPublish": True, "canSubscribe": True,
                   "canPublishData": True, "roomAdmin": False, "roomRecord": False},
    Role.OBSERVER: {"roomJoin": True, "canPublish": False, "canSubscribe": True,
                    "canPublishData": False, "roomAdmin": False, "roomRecord": False},
}


@pytest.fixture(scope="module")
def fake() -> Iterator[LiveKitFake]:
    f = LiveKitFake().start()
    yield f
    f.stop()


@pytest.fixture
def ov(fake: LiveKitFake, configure: Any) -> Iterator[OpenVidu]:
    configure(video_timeout_seconds=str(TIMEOUT))
    yield OpenVidu(fake.url, fake.api_key, fake.api_secret)
    fake.fail_next(0)
    fake.hang_next(0)
    fake.garble_next(0)
    fake.refuse(False)


def ticket(ov: OpenVidu, room: str, role: Role, *, start: datetime | None = None,
           minutes: int = 30) -> str:
    start = start or datetime.now(UTC)
    return ov.ticket(room, WHO[role], GRANTS[role], not_before=start,
                     expires_at=start + timedelta(minutes=minutes)).token


@pytest.mark.parametrize("role", list(Role))
def test_each_role_joins_with_exactly_its_grants(fake: LiveKitFake, ov: OpenVidu, role: Role) -> None:
    room = f"grants-{role}"
    run(ov.create_room(room, empty_timeout_seconds=600, max_participants=10))
    start = datetime.now(UTC).replace(microsecond=0)
    t = ov.ticket(room, WHO[role], GRANTS[role], not_before=start,
                  expires_at=start + timedelta(minutes=40))
    assert t.server_url == fake.url and t.url == fake.url
    joined = fake.join(t.token)
    assert joined["identity"] == WHO[role].identity and joined["name"] == WHO[role].name
    assert joined["metadata"] == f'{{"role": "{role.value}"}}'
    assert joined["grants"] == {**EXPECTED[role], "room": room}
    assert set(fake.participants[room]) == {WHO[role].identity}
    claims = jwt.decode(t.token, fake.api_secret, algorithms=["HS256"], issuer=fake.api_key)
    assert (claims["nbf"], claims["exp"]) == (int(start.timestamp()),
                                              int((start + timedelta(minutes=40)).timestamp()))


def test_a_waiting_patient_is_promoted_in_place(fake: LiveKitFake, ov: OpenVidu) -> None:
    """WAITING: in the room, no media; admit_participant gives publish, subscribe and data
    (UpdateParticipant, authorised with roomAdmin on that room); nobody there is False."""
    room = "waiting-room"
    start = datetime.now(UTC)
    t = ov.ticket(room, WHO[Role.PATIENT], WAITING, not_before=start,
                  expires_at=start + timedelta(minutes=30))
    joined = fake.join(t.token)
    assert joined["grants"] == {**EXPECTED[Role.PATIENT], "room": room, "canPublish": False,
                                "canSubscribe": False, "canPublishData": False}
    assert run(ov.admit_participant(room, "pat-1")) is True
    assert fake.participants[room]["pat-1"]["grants"] == {**EXPECTED[Role.PATIENT], "room": room}
    call = fake.calls[-1]
    assert (call["method"], call["request"]["identity"]) == ("UpdateParticipant", "pat-1")
    assert (call["claims"]["video"]["roomAdmin"], call["claims"]["video"]["room"]) == (True, room)
    assert run(ov.admit_participant(room, "nobody")) is False
    assert run(ov.admit_participant("no-such-room", "pat-1")) is False


def test_the_server_refuses_expired_early_and_forged_tokens(fake: LiveKitFake, ov: OpenVidu) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    future = datetime.now(UTC) + timedelta(hours=2)
    forged = OpenVidu(fake.url, fake.api_key, "not-the-secret-" + "x" * 20)
    for token in (ticket(ov, "refusals", Role.PATIENT, start=past, minutes=30),
                  ticket(ov, "refusals", Role.PATIENT, start=future),
                  ticket(forged, "refusals", Role.PATIENT)):
        with pytest.raises(FakeRefused) as refused:
            fake.join(token)
        assert refused.value.status == 401
    assert fake.participants.get("refusals", {}) == {}
    assert fake.join(ticket(ov, "refusals", Role.PATIENT))["identity"] == "pat-1"


def test_rooms_are_created_once_and_closed_idempotently(fake: LiveKitFake, ov: OpenVidu) -> None:
    for _ in range(3):
        run(ov.create_room("once", empty_timeout_seconds=900, max_participants=4))
    assert fake.rooms_created["once"] == 1
    assert (fake.rooms["once"]["empty_timeout"], fake.rooms["once"]["max_participants"]) == (900, 4)
    creates = [c for c in fake.calls if c["method"] == "CreateRoom" and c["request"]["name"] == "once"]
    assert len(creates) == 3 and all(c["claims"]["video"]["roomCreate"] is True for c in creates)
    fake.join(ticket(ov, "once", Role.DOCTOR))
    run(ov.close_room("once"))
    assert "once" not in fake.rooms and "once" not in fake.participants
    run(ov.close_room("once"))  # already gone: success
    assert [c["method"] for c in fake.calls if c["request"].get("room") == "once"] == ["DeleteRoom"] * 2


def test_the_fake_speaks_twirp_json_and_checks_grants(fake: LiveKitFake) -> None:
    """What the SDK does not exercise: JSON bodies and answers (snake_case), Twirp errors."""
    def token(**grants: Any) -> str:
        return lk.AccessToken(fake.api_key, fake.api_secret).with_grants(lk.VideoGrants(**grants)).to_jwt()

    url = f"{fake.url}/twirp/livekit.RoomService/CreateRoom"
    r = httpx.post(url, json={"name": "json-room", "empty_timeout": 120},
                   headers={"Authorization": f"Bearer {token(room_create=True)}"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["name"] == "json-room" and r.json()["empty_timeout"] == 120
    r = httpx.post(url, json={"name": "x"}, headers={"Authorization": f"Bearer {token(room_list=True)}"})
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")
    r = httpx.post(url, json={"name": "x"})
    assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    r = httpx.post(f"{fake.url}/twirp/livekit.RoomService/DeleteRoom", json={"room": "nowhere"},
                   headers={"Authorization": f"Bearer {token(room_create=True)}"})
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = httpx.post(f"{fake.url}/twirp/livekit.RoomService/ListParticipants", json={"room": "json-room"},
                   headers={"Authorization": f"Bearer {token(room_admin=True, room='other')}"})
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")
    r = httpx.post(url, json={"nom": "x"}, headers={"Authorization": f"Bearer {token(room_create=True)}"})
    assert (r.status_code, r.json()["code"]) == (400, "malformed")
    update = f"{fake.url}/twirp/livekit.RoomService/UpdateParticipant"
    admin = {"Authorization": f"Bearer {token(room_admin=True, room='json-room')}"}
    body = {"room": "json-room", "identity": "json-pat",
            "permission": {"can_publish": True, "can_subscribe": True, "can_publish_data": True}}
    r = httpx.post(update, json=body, headers=admin)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = httpx.post(update, json=body,
                   headers={"Authorization": f"Bearer {token(room_admin=True, room='other')}"})
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")
    r = httpx.post(update, json=body, headers={"Authorization": f"Bearer {token(room_create=True)}"})
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")
    fake.join(lk.AccessToken(fake.api_key, fake.api_secret).with_identity("json-pat").with_grants(
        lk.VideoGrants(room_join=True, room="json-room", can_publish=False, can_subscribe=False,
                       can_publish_data=False)).to_jwt())
    r = httpx.post(update, json=body, headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["identity"] == "json-pat"
    assert r.json()["permission"] == {"can_publish": True, "can_subscribe": True, "can_publish_data": True}
    assert fake.participants["json-room"]["json-pat"]["grants"]["canSubscribe"] is True
    assert httpx.get(fake.url + "/").status_code == 200


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_is_an_outage(fake: LiveKitFake, ov: OpenVidu, status: int) -> None:
    fake.fail_next(1, status)
    with pytest.raises(ProviderDown, match=f"HTTP {status}"):
        run(ov.create_room("five", empty_timeout_seconds=60, max_participants=2))
    assert "five" not in fake.rooms


def test_a_hang_times_out_as_an_outage(fake: LiveKitFake, ov: OpenVidu) -> None:
    fake.hang_next(1)
    began = time.monotonic()
    with pytest.raises(ProviderDown, match="timeout"):
        run(ov.create_room("hang", empty_timeout_seconds=60, max_participants=2))
    assert TIMEOUT - 0.1 < time.monotonic() - began < TIMEOUT + 1.5


def test_a_garbled_answer_is_an_outage(fake: LiveKitFake, ov: OpenVidu) -> None:
    fake.garble_next(1)
    with pytest.raises(ProviderDown, match="garbled"):
        run(ov.create_room("garbled", empty_timeout_seconds=60, max_participants=2))


def test_a_refused_connection_is_an_outage(fake: LiveKitFake, ov: OpenVidu) -> None:
    fake.refuse(True)
    with pytest.raises(ProviderDown, match="connection failed"):
        run(ov.create_room("refused", empty_timeout_seconds=60, max_participants=2))
    assert run(ov.healthy()) is False
    fake.refuse(False)
    assert run(ov.healthy()) is True
    run(ov.create_room("refused", empty_timeout_seconds=60, max_participants=2))
    assert "refused" in fake.rooms


def test_a_4xx_is_a_refusal_not_an_outage(fake: LiveKitFake, ov: OpenVidu) -> None:
    wrong = OpenVidu(fake.url, fake.api_key, "wrong-secret-" + "y" * 24)
    with pytest.raises(ProviderRefused) as refused:
        run(wrong.create_room("r4", empty_timeout_seconds=60, max_participants=2))
    assert refused.value.code == "unauthenticated"
    with pytest.raises(ProviderRefused) as refused:
        run(ov.start_recording("no-such-room", bucket=BUCKET, file_key="x.mp4"))
    assert refused.value.code == "not_found"
    fake.fail_next(1, 500)
    assert run(ov.healthy()) is False


@pytest.fixture(scope="module")
def moto() -> Iterator[aws.Moto]:
    with aws.moto_with_bucket(BUCKET) as m:
        yield m


def test_a_recording_goes_to_the_bucket(fake: LiveKitFake, ov: OpenVidu, configure: Any,
                                        moto: aws.Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", aws.ACCESS_KEY_ID), ("AWS_DEFAULT_REGION", aws.REGION),
                        ("AWS_SECRET_ACCESS_KEY", aws.SECRET_ACCESS_KEY)):
        monkeypatch.setenv(name, value)
    configure(aws_endpoint_url=moto.url)
    run(ov.create_room("recorded", empty_timeout_seconds=60, max_participants=2))
    egress_id, status = run(ov.start_recording("recorded", bucket=BUCKET, file_key="rec/a.mp4"))
    assert status is RecordingStatus.STARTING
    e = fake.egress[egress_id]
    assert e["room_name"] == "recorded" and e["file_key"] == "rec/a.mp4"
    assert e["request"]["file_outputs"][0]["file_type"] == "MP4"
    assert {k: e["s3"][k] for k in ("bucket", "region", "endpoint", "access_key", "force_path_style")} \
        == {"bucket": BUCKET, "region": aws.REGION, "endpoint": moto.url,
            "access_key": aws.ACCESS_KEY_ID, "force_path_style": True}
    start = [c for c in fake.calls if c["method"] == "StartRoomCompositeEgress"][-1]
    assert start["claims"]["video"]["roomRecord"] is True
    fake.activate(egress_id)
    assert run(ov.stop_recording(egress_id)) is RecordingStatus.ENDING
    servers.eventually(lambda: fake.egress[egress_id]["status"] == "EGRESS_COMPLETE", timeout=10)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name=aws.REGION,
                      aws_access_key_id=aws.ACCESS_KEY_ID, aws_secret_access_key=aws.SECRET_ACCESS_KEY)
    assert s3.get_object(Bucket=BUCKET, Key="rec/a.mp4")["Body"].read().startswith(b"\x00\x00\x00\x18ftyp")
    assert run(ov.stop_recording(egress_id)) is RecordingStatus.COMPLETE  # stopping again: its state


def _event(ov: OpenVidu, fake: LiveKitFake, hook: tuple[bytes, dict[str, str]]) -> lk.WebhookEvent:
    return ov.verify_webhook(hook[0], hook[1]["Authorization"])


def test_webhooks_verify_only_as_signed(fake: LiveKitFake, ov: OpenVidu) -> None:
    fake.join(ticket(ov, "hooked", Role.PATIENT))
    body, headers = fake.webhook("participant_joined", room="hooked", identity="pat-1", id="EV_fixed")
    assert headers["Content-Type"] == "application/webhook+json"
    assert not headers["Authorization"].startswith("Bearer")
    event = ov.verify_webhook(body, headers["Authorization"])
    assert (event.event, event.id, event.room.name, event.participant.identity) == (
        "participant_joined", "EV_fixed", "hooked", "pat-1")
    assert event.room.sid == fake.rooms["hooked"]["sid"]
    assert b'"created_at"' in body and b'"createdAt"' not in body  # LiveKit's snake_case JSON

    with pytest.raises(ValueError, match="hash mismatch"):
        ov.verify_webhook(body.replace(b"pat-1", b"pat-2"), headers["Authorization"])
    forged = fake.webhook("participant_joined", room="hooked", identity="pat-1",
                          api_secret="forged-secret-" + "z" * 24)
    with pytest.raises(ValueError, match="Signature verification failed"):
        _event(ov, fake, forged)
    expired = fake.webhook("room_finished", room="hooked", ttl=timedelta(minutes=-5))
    with pytest.raises(ValueError, match="expired"):
        _event(ov, fake, expired)
    with pytest.raises(ValueError, match="UTF-8"):
        ov.verify_webhook(b"\xff" + body, headers["Authorization"])
    with pytest.raises(ValueError):
        ov.verify_webhook(body, "Bearer " + headers["Authorization"])

    keys = {fake.api_key: fake.api_secret, "otherkey": "other-secret"}
    assert verify_openvidu_webhook(body, headers["Authorization"], keys).id == "EV_fixed"
    with pytest.raises(ValueError, match="unknown issuer"):
        verify_openvidu_webhook(body, headers["Authorization"], {"otherkey": "other-secret"})
    with pytest.raises(ValueError, match="not a JWT"):
        verify_openvidu_webhook(body, "nonsense", keys)


def test_egress_webhooks_carry_the_egress(fake: LiveKitFake, ov: OpenVidu) -> None:
    run(ov.create_room("eg-hook", empty_timeout_seconds=60, max_participants=2))
    egress_id, _ = run(ov.start_recording("eg-hook", bucket=BUCKET, file_key="k.mp4"))
    event = _event(ov, fake, fake.webhook("egress_started", egress_id=egress_id))
    assert (event.egress_info.egress_id, event.egress_info.room_name, event.room.name) == (
        egress_id, "eg-hook", "eg-hook")
    assert event.egress_info.status == lk.EgressStatus.EGRESS_STARTING


class _Receiver(FakeServer):
    """Where the fake posts its webhooks (carewire's intake, as far as the fake can tell)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[bytes, dict[str, str]]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        self.received.append((body, headers))
        return Reply(200, {"ok": True})


def test_the_fake_posts_what_happens_in_order(configure: Any) -> None:
    receiver = _Receiver().start()
    fake = LiveKitFake(webhook_url=receiver.url + "/hook").start()
    try:
        ov = OpenVidu(fake.url, fake.api_key, fake.api_secret)
        configure(video_timeout_seconds="2")
        fake.join(ticket(ov, "posted", Role.DOCTOR))
        fake.leave("posted", "doc-1")
        run(ov.close_room("posted"))
        servers.eventually(lambda: len(fake.deliveries) == 4, timeout=10)
        events = [ov.verify_webhook(body, headers["authorization"]) for body, headers in receiver.received]
        assert [e.event for e in events] == ["room_started", "participant_joined", "participant_left",
                                             "room_finished"]
        assert all(e.room.name == "posted" for e in events)
        assert events[1].participant.identity == "doc-1"
        assert {h["content-type"] for _, h in receiver.received} == {"application/webhook+json"}
        assert fake.deliveries == [(e.event, 200) for e in events]
    finally:
        fake.stop()
        receiver.stop()
