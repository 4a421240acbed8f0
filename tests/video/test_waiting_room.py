"""The virtual waiting room enforced at OpenVidu: a patient who joins before the doctor admitted
them is in the room (the doctor sees them there) but may not publish, subscribe or send data;
admission promotes them in place (UpdateParticipant) and later tokens carry the full grants.
A patient not connected at admission, or an OpenVidu failing at the promotion, never fails the
admission (a clinic with its own OpenVidu fake breaks, so the deployment's breaker stays
closed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.conftest import Api, Db
from tests.video.fakes.livekit import LiveKitFake
from tests.video.world import Clinic, make_clinic

#: (canPublish, canSubscribe, canPublishData)
FULL = (True, True, True)
WAITING = (False, False, False)


def media(video: dict[str, Any]) -> tuple[bool, bool, bool]:
    """What a `video` claim (or the fake's recorded grants) lets one do with media, as LiveKit
    reads it (absent = true)."""
    return (video.get("canPublish", True), video.get("canSubscribe", True),
            video.get("canPublishData", True))


def claims(fake: LiveKitFake, join: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(join["token"], fake.api_secret, algorithms=["HS256"],
                                         options={"verify_aud": False})
    return decoded


def waiting_patient(c: Clinic, fake: LiveKitFake, *, connect: bool = True) -> dict[str, Any]:
    """An OpenVidu session whose patient asked a token before admission (and connected to the
    fake with it unless `connect` is false), the doctor connected too."""
    s = c.session(c.book()["id"])
    assert s["provider"] == "openvidu" and s["room"] in fake.rooms, s
    r = c.join(s["id"], "patient")
    assert r.status_code == 200, r.text
    join = r.json()
    assert join["admitted"] is False and media(claims(fake, join)["video"]) == WAITING
    assert claims(fake, join)["video"]["roomJoin"] and claims(fake, join)["video"]["room"] == s["room"]
    fake.join(c.join(s["id"], "doctor").json()["token"])
    if connect:
        participant = fake.join(join["token"])
        assert media(participant["grants"]) == WAITING
    return s


def test_a_waiting_patient_is_in_the_room_without_media_until_admitted(
        world: Clinic, openvidu: LiveKitFake) -> None:
    s = waiting_patient(world, openvidu)
    patient, doctor = world.user_id("patient"), world.user_id("doctor")
    room = openvidu.participants[s["room"]]
    assert set(room) == {patient, doctor}  # the doctor sees the patient in the room
    assert media(room[patient]["grants"]) == WAITING
    r = world.join(s["id"], "patient")  # a reload while waiting: still waiting
    assert media(claims(openvidu, r.json())["video"]) == WAITING

    r = world.act(s["id"], "admit")
    assert r.status_code == 200 and r.json()["status"] == "live", r.text
    assert media(openvidu.participants[s["room"]][patient]["grants"]) == FULL  # promoted in place
    assert media(openvidu.participants[s["room"]][doctor]["grants"]) == FULL
    [update] = [c for c in openvidu.calls if c["method"] == "UpdateParticipant"
                and c["request"]["room"] == s["room"]]
    assert update["request"]["identity"] == patient
    assert (update["claims"]["video"]["roomAdmin"], update["claims"]["video"]["room"]) == (True, s["room"])

    join = world.join(s["id"], "patient").json()  # a reconnect after admission
    assert join["admitted"] is True and media(claims(openvidu, join)["video"]) == FULL
    assert media(openvidu.join(join["token"])["grants"]) == FULL


def test_admitting_a_patient_not_connected_succeeds_and_their_next_token_is_full(
        world: Clinic, openvidu: LiveKitFake) -> None:
    s = waiting_patient(world, openvidu, connect=False)
    patient = world.user_id("patient")
    assert patient not in openvidu.participants[s["room"]]
    r = world.act(s["id"], "admit")
    assert r.status_code == 200 and r.json()["status"] == "live", r.text
    asked = [c for c in openvidu.calls if c["method"] == "UpdateParticipant"
             and c["request"]["room"] == s["room"]]
    assert [c["request"]["identity"] for c in asked] == [patient]  # answered not_found
    join = world.join(s["id"], "patient").json()
    assert join["admitted"] is True and media(claims(openvidu, join)["video"]) == FULL
    assert media(openvidu.join(join["token"])["grants"]) == FULL


@pytest.fixture(scope="module")
def own(api: Api, vapi: Api, db: Db, sa_token: str, clinic_factory: Any,
        member_factory: Any) -> Iterator[tuple[Clinic, LiveKitFake]]:
    """A clinic on its own OpenVidu fake (its own breaker)."""
    c = make_clinic(api, vapi, db, sa_token, clinic_factory, member_factory,
                    people=("doctor", "nurse", "patient"))
    fake = LiveKitFake().start()
    r = vapi.as_(sa_token, "PUT", f"/clinics/{c.id}/video/credentials/openvidu",
                 json={"credentials": fake.credentials()})
    assert r.status_code == 200, r.text
    yield c, fake
    fake.stop()


@pytest.mark.parametrize("fault", ["5xx", "refused"])
def test_openvidu_failing_at_the_promotion_still_admits(own: tuple[Clinic, LiveKitFake],
                                                        fault: str) -> None:
    c, fake = own
    s = waiting_patient(c, fake)
    patient = c.user_id("patient")
    a_id = s["appointment_id"]
    if fault == "5xx":
        fake.fail_next(1, 503)
    else:
        fake.refuse(True)
    try:
        r = c.act(s["id"], "admit")
    finally:
        fake.fail_next(0)
        fake.refuse(False)
    assert r.status_code == 200 and r.json()["status"] == "live", r.text
    assert c.row(s["id"])["status"] == "live" and c.appointment_status(a_id) == "in_progress"
    # still waiting at OpenVidu: the app, told video.admitted, asks a new token
    assert media(fake.participants[s["room"]][patient]["grants"]) == WAITING
    join = c.join(s["id"], "patient").json()
    assert join["provider"] == "openvidu" and join["admitted"] is True
    assert media(claims(fake, join)["video"]) == FULL
    assert media(fake.join(join["token"])["grants"]) == FULL
