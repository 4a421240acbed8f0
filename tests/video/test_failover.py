"""OpenVidu failing under a session: at creation (5xx, a hang, a refused connection) the new
session is on Jitsi with the switch recorded; at token time an existing OpenVidu session moves
once, whoever asks at the same moment, and both sides get Jitsi links; once the breaker's open
period is over and OpenVidu answers again, new sessions are on OpenVidu again.

The clinic runs its own OpenVidu (a LiveKitFake of its own, stored through the clinic's video
credentials route), so the breaker these tests open is its own and the deployment's stays
closed. Each test starts from a healthy OpenVidu (`healthy`: a session lands there), whatever
the one before left."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest

from tests.conftest import JITSI_SECRET, Api, Db
from tests.servers import eventually
from tests.video.fakes.livekit import LiveKitFake
from tests.video.world import Clinic, make_clinic


@pytest.fixture(scope="module")
def own(api: Api, vapi: Api, db: Db, sa_token: str, clinic_factory: Any,
        member_factory: Any) -> Iterator[tuple[Clinic, LiveKitFake]]:
    c = make_clinic(api, vapi, db, sa_token, clinic_factory, member_factory,
                    people=("doctor", "nurse", "patient"))
    fake = LiveKitFake().start()
    r = vapi.as_(sa_token, "PUT", f"/clinics/{c.id}/video/credentials/openvidu",
                 json={"credentials": fake.credentials()})
    assert r.status_code == 200, r.text
    yield c, fake
    fake.stop()


def healthy(c: Clinic, fake: LiveKitFake, when: str = "early") -> dict[str, Any]:
    """A new session on OpenVidu, once the breaker lets calls through again (its open period
    is 2 s here); the fake's faults cleared."""
    fake.refuse(False)
    fake.fail_next(0)
    fake.hang_next(0)

    def on_openvidu() -> dict[str, Any] | None:
        s = c.session(c.book(when)["id"])
        return s if s["provider"] == "openvidu" else None

    found: dict[str, Any] = eventually(on_openvidu, timeout=15)
    assert found["switched_from"] is None and found["room"] in fake.rooms
    return found


def switches(db: Db, session_id: str) -> int:
    return int(db.fetch("SELECT count(*) AS n FROM events WHERE type = 'video.provider_switched' "
                        "AND data->>'session_id' = $1", session_id)[0]["n"])


def assert_on_jitsi(c: Clinic, session: dict[str, Any]) -> None:
    assert (session["provider"], session["switched_from"]) == ("jitsi", "openvidu"), session
    assert session["switched_at"] and session["room_ready_at"]
    row = c.row(session["id"])
    assert row["switch_reason"].startswith("openvidu unavailable")
    assert switches(c.db, session["id"]) == 1


@pytest.mark.parametrize("fault", ["5xx", "hang", "refused"])
def test_a_failing_openvidu_at_creation_gives_a_jitsi_session(own: tuple[Clinic, LiveKitFake],
                                                              fault: str) -> None:
    c, fake = own
    healthy(c, fake)
    if fault == "5xx":
        fake.fail_next(1, status=503)
    elif fault == "hang":
        fake.hang_next(1)
    else:
        fake.refuse(True)
    a = c.book("early")
    r = c.create(a["id"])
    assert r.status_code == 201, r.text
    assert_on_jitsi(c, r.json())
    assert r.json()["room"] not in fake.rooms
    fake.refuse(False)


def test_an_openvidu_session_failing_at_token_time_switches_once(
        own: tuple[Clinic, LiveKitFake]) -> None:
    c, fake = own
    s = healthy(c, fake, when="now")
    fake.fail_next(10, status=500)  # every room call fails until the breaker opens
    who = ["doctor", "patient", "nurse", "doctor"]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda w: c.join(s["id"], w), who))
    assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
    assert {r.json()["provider"] for r in answers} == {"jitsi"}
    session = c.get(s["id"]).json()
    assert_on_jitsi(c, session)
    for w, r in zip(who, answers, strict=True):
        join = r.json()
        assert join["url"].startswith(f"https://meet.carewire.test/{s['room']}?jwt=")
        claims = jwt.decode(join["token"], JITSI_SECRET, algorithms=["HS256"],
                            audience="carewire-test")
        assert claims["context"]["user"]["id"] == c.user_id(w)
    # later joins stay on Jitsi and nothing switches again
    assert c.join(s["id"], "patient").json()["provider"] == "jitsi"
    assert switches(c.db, s["id"]) == 1


def test_new_sessions_return_to_openvidu_once_it_recovers(own: tuple[Clinic, LiveKitFake]) -> None:
    c, fake = own
    healthy(c, fake)
    fake.fail_next(2, status=502)  # the breaker's threshold here (tests/video/conftest.py)
    for _ in range(2):
        assert_on_jitsi(c, c.session(c.book("early")["id"]))
    calls = len(fake.calls)
    opened = c.session(c.book("early")["id"])  # the breaker is open: OpenVidu is not asked
    assert_on_jitsi(c, opened)
    assert c.row(opened["id"])["switch_reason"] == "openvidu unavailable: circuit open"
    assert len(fake.calls) == calls
    back = healthy(c, fake)  # after the open period, the trial call succeeds
    assert fake.rooms_created[back["room"]] == 1


def test_a_refusal_is_not_an_outage_the_session_stays_on_openvidu(
        own: tuple[Clinic, LiveKitFake]) -> None:
    """OpenVidu answering 4xx is up and said no (our bug): no failover, 503 for now, and the
    next join opens the room there."""
    c, fake = own
    healthy(c, fake)
    a = c.book()
    fake.fail_next(1, status=403)
    r = c.create(a["id"])
    assert r.status_code == 503 and "openvidu refused" in r.json()["detail"], r.text
    [row] = c.db.fetch("SELECT id, provider, room, room_ready_at, switched_from FROM video_sessions "
                       "WHERE appointment_id = $1::uuid", a["id"])
    assert (row["provider"], row["room_ready_at"], row["switched_from"]) == ("openvidu", None, None)
    join = c.join(str(row["id"]), "doctor")
    assert join.status_code == 200 and join.json()["provider"] == "openvidu", join.text
    assert row["room"] in fake.rooms and c.row(str(row["id"]))["room_ready_at"] is not None
    assert switches(c.db, str(row["id"])) == 0
