"""Who may join a video session, with which rights, and when (POST /video/sessions/{id}/token):
every role against every appointment state, paid and unpaid, inside and outside the join
window; the grants in the returned tokens, read back by decoding them and by the OpenVidu fake
verifying them as the real server does."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest

from tests.conftest import JITSI_SECRET, Api
from tests.video.fakes.livekit import LiveKitFake
from tests.video.world import CLOSES, Clinic

#: Appointment states a call can still be joined in; the ones it cannot.
OPEN = ("scheduled", "confirmed", "checked_in", "in_progress", "paid")
CLOSED = ("completed", "cancelled", "no_show", "expired")
#: The lifecycle actions (by reception) that reach each state after the session exists.
ACTIONS = {"scheduled": (), "confirmed": ("confirm",), "checked_in": ("check-in",),
           "in_progress": ("check-in", "start"), "completed": ("check-in", "start", "complete"),
           "cancelled": ("cancel",), "no_show": ("no-show",)}
JOINERS = {"doctor": "doctor", "patient": "patient", "nurse": "observer"}


def _table() -> list[tuple[str, str, int, str | None]]:
    """(state, who, HTTP status, role in the call)."""
    rows: list[tuple[str, str, int, str | None]] = []
    for who, role in JOINERS.items():
        rows += [(state, who, 200, role) for state in OPEN]
        rows += [(state, who, 409, None) for state in (*CLOSED, "early", "past")]
        rows.append(("unpaid", who, 402 if who == "patient" else 200,
                     None if who == "patient" else role))
    # everyone else: no video:join (403), or not their appointment / clinic (404)
    rows += [("scheduled", who, status, None) for who, status in (
        ("desk", 403), ("admin", 403), ("doctor2", 404), ("other_patient", 404),
        ("other:doctor", 404), ("other:patient", 404), ("other:nurse", 404))]
    return rows


class Sessions:
    """One session per appointment state, made on first use."""

    def __init__(self, world: Clinic, paid: Clinic) -> None:
        self.world, self.paid, self.made = world, paid, {}

    def __call__(self, state: str) -> dict[str, Any]:
        if state not in self.made:
            self.made[state] = self._make(state)
        return self.made[state]

    def _make(self, state: str) -> dict[str, Any]:
        c = self.paid if state in ("paid", "unpaid", "expired") else self.world
        when = state if state in ("early", "past") else "now"
        a = c.book(when)
        s = c.session(a["id"])
        if state == "paid":
            c.pay_at_desk(a["id"])
        elif state == "expired":
            c.expire(a["id"])
        else:
            c.move(a["id"], *ACTIONS.get(state, ()))
        expected = {"paid": "scheduled", "unpaid": "pending_payment", "early": "scheduled",
                    "past": "scheduled"}.get(state, state)
        assert c.appointment_status(a["id"]) == expected
        return {"clinic": c, "appointment": a, "session": s}


@pytest.fixture(scope="module")
def sessions(world: Clinic, paid_world: Clinic) -> Sessions:
    return Sessions(world, paid_world)


@pytest.mark.parametrize(("state", "who", "status", "role"), _table())
def test_join_rules(sessions: Sessions, other_world: Clinic, state: str, who: str, status: int,
                    role: str | None) -> None:
    made = sessions(state)
    c: Clinic = made["clinic"]
    token = other_world.token(who.split(":")[1]) if who.startswith("other:") else c.token(who)
    r = c.vapi.as_(token, "POST", f"/video/sessions/{made['session']['id']}/token")
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json()["role"] == role
    else:
        assert r.headers["content-type"].startswith("application/problem+json")
    if status == 402:
        assert r.json()["code"] == "payment_required"
    if status == 404:
        assert "video session" in r.json()["detail"]


def test_the_window_is_named_and_the_closed_states_too(sessions: Sessions) -> None:
    made = sessions("early")
    r = made["clinic"].join(made["session"]["id"], "patient")
    assert r.status_code == 409 and "join window" in r.json()["detail"]
    made = sessions("cancelled")
    r = made["clinic"].join(made["session"]["id"], "doctor")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]


def _effective(video: dict[str, Any]) -> tuple[bool, bool, bool, bool]:
    """LiveKit's meaning of a `video` claim (publish and subscribe default to true)."""
    return (video.get("canPublish", True), video.get("canSubscribe", True),
            bool(video.get("roomAdmin")), bool(video.get("roomRecord")))


GRANTS = {"doctor": (True, True, True, True), "patient": (True, True, False, False),
          "nurse": (False, True, False, False)}
#: On OpenVidu a patient not admitted yet is in the waiting room: in the call, no media at all.
WAITING = (False, False, False, False)


def test_openvidu_tokens_carry_each_role_s_grants_until_the_window_ends(
        world: Clinic, openvidu: LiveKitFake) -> None:
    a = world.book()
    s = world.session(a["id"])
    assert s["provider"] == "openvidu" and s["room_ready_at"]
    window_end = datetime.fromisoformat(a["end"]) + timedelta(minutes=CLOSES)
    for who, role_grants in GRANTS.items():
        grants = WAITING if who == "patient" else role_grants  # nobody admitted them yet
        r = world.join(s["id"], who)
        assert r.status_code == 200, r.text
        join = r.json()
        assert (join["provider"], join["server_url"]) == ("openvidu", openvidu.url)
        assert datetime.fromisoformat(join["expires_at"]) == window_end
        claims = jwt.decode(join["token"], openvidu.api_secret, algorithms=["HS256"],
                            options={"verify_aud": False})
        assert claims["exp"] == int(window_end.timestamp())
        assert claims["sub"] == world.user_id(who) and claims["name"] == world[who]["name"]
        assert claims["video"]["room"] == s["room"] and claims["video"]["roomJoin"]
        assert _effective(claims["video"]) == grants
        participant = openvidu.join(join["token"])  # the server's own check
        assert participant["identity"] == world.user_id(who)
        assert _effective(participant["grants"]) == grants
        assert participant["grants"].get("canPublishData", True) == grants[0]
    assert set(openvidu.participants[s["room"]]) == {world.user_id(w) for w in GRANTS}


def test_jitsi_tokens_make_only_the_doctor_moderator(world: Clinic, api: Api) -> None:
    """The shared server has no OpenVidu: its sessions are on Jitsi from the start."""
    a = world.book()
    r = api.as_(world.token("doctor"), "POST", "/video/sessions", json={"appointment_id": a["id"]})
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["provider"], s["switched_from"]) == ("jitsi", None) and s["room_ready_at"]
    window_end = datetime.fromisoformat(a["end"]) + timedelta(minutes=CLOSES)
    for who, (_, _, moderate, record) in GRANTS.items():
        r = api.as_(world.token(who), "POST", f"/video/sessions/{s['id']}/token")
        assert r.status_code == 200, r.text
        join = r.json()
        assert join["url"] == f"https://meet.carewire.test/{s['room']}?jwt={join['token']}"
        claims = jwt.decode(join["token"], JITSI_SECRET, algorithms=["HS256"],
                            audience="carewire-test")
        assert (claims["room"], claims["exp"]) == (s["room"], int(window_end.timestamp()))
        user = claims["context"]["user"]
        assert (user["id"], user["moderator"]) == (world.user_id(who), str(moderate).lower())
        assert claims["context"]["features"]["recording"] == str(record).lower()


def test_a_patient_joining_first_waits(world: Clinic) -> None:
    a = world.book()
    s = world.session(a["id"], who="patient")  # the patient may open the room too
    r = world.join(s["id"], "patient")
    assert r.status_code == 200 and r.json()["admitted"] is False
    row = world.row(s["id"])
    assert row["status"] == "waiting" and row["patient_waiting_at"] is not None
    first = row["patient_waiting_at"]
    assert world.join(s["id"], "patient").status_code == 200  # a reload: still the first wait
    assert world.row(s["id"])["patient_waiting_at"] == first
    assert world.join(s["id"], "doctor").json()["admitted"] is False
    assert world.act(s["id"], "admit").status_code == 200
    assert world.join(s["id"], "patient").json()["admitted"] is True


def test_joins_are_audited_without_the_token(world: Clinic) -> None:
    a = world.book()
    s = world.session(a["id"])
    join = world.join(s["id"], "nurse").json()
    rows = world.db.fetch("SELECT actor_id::text, detail::text FROM audit_log WHERE "
                          "action = 'video:join' AND resource_id = $1", s["id"])
    assert [r["actor_id"] for r in rows] == [world.user_id("nurse")]
    assert '"observer"' in rows[0]["detail"] and join["token"] not in rows[0]["detail"]
