"""Video sessions over HTTP: created once per appointment (also 20 at once), the waiting room's
admission moves the appointment to in_progress through check-in, ending completes it with the
measured duration (its queue entry done, so the ETA uses it), and a random concurrent mix of
every action keeps one live session per appointment and never answers 5xx."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.video.fakes.livekit import LiveKitFake
from tests.video.world import Clinic


def test_create_is_idempotent_and_readable(world: Clinic, openvidu: LiveKitFake) -> None:
    a = world.book()
    first = world.create(a["id"])
    assert first.status_code == 201, first.text
    s = first.json()
    assert (s["appointment_id"], s["status"], s["provider"]) == (a["id"], "open", "openvidu")
    assert (s["doctor_id"], s["patient_id"]) == (world.user_id("doctor"), world.user_id("patient"))
    assert s["room_ready_at"] and s["room"] in openvidu.rooms
    again = world.create(a["id"], who="admin")
    assert again.status_code == 200 and again.json()["id"] == s["id"]
    for who in ("doctor", "patient", "nurse", "desk", "admin"):
        r = world.get(s["id"], who)
        assert r.status_code == 200 and r.json() == again.json(), (who, r.text)
    r = world.vapi.as_(world.token("desk"), "GET", f"/appointments/{a['id']}/video-sessions")
    assert r.status_code == 200 and [x["id"] for x in r.json()] == [s["id"]]
    assert world.db.fetch("SELECT count(*) AS n FROM audit_log WHERE action = 'video:create' "
                          "AND resource_id = $1", s["id"])[0]["n"] == 1


def test_create_refuses_what_has_no_call(world: Clinic, other_world: Clinic) -> None:
    in_person = world.book(kind="in_person")
    r = world.create(in_person["id"])
    assert r.status_code == 409 and "in_person" in r.json()["detail"]
    cancelled = world.book()
    world.move(cancelled["id"], "cancel")
    r = world.create(cancelled["id"])
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    a = world.book()
    assert world.create(a["id"], who="desk").status_code == 403  # no video:join nor manage
    for who in ("other_patient", "doctor2"):
        assert world.create(a["id"], who=who).status_code == 404
    assert other_world.create(a["id"], who="admin").status_code == 404
    assert world.create(str(uuid.uuid4())).status_code == 404
    assert world.db.fetch("SELECT count(*) AS n FROM video_sessions WHERE appointment_id = ANY($1)",
                          [uuid.UUID(x["id"]) for x in (in_person, cancelled, a)])[0]["n"] == 0


def test_twenty_concurrent_creations_make_one_room(world: Clinic, openvidu: LiveKitFake) -> None:
    a = world.book()
    who = ["doctor", "patient", "admin", "nurse"]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: world.create(a["id"], who[i % 4]), range(20)))
    assert all(r.status_code in (200, 201) for r in answers), [r.text for r in answers]
    assert Counter(r.status_code for r in answers)[201] == 1
    assert len({r.json()["id"] for r in answers}) == 1
    rows = world.db.fetch("SELECT room FROM video_sessions WHERE appointment_id = $1",
                          uuid.UUID(a["id"]))
    assert len(rows) == 1 and openvidu.rooms_created[rows[0]["room"]] == 1


def test_admit_starts_and_end_completes_the_visit_with_its_duration(world: Clinic) -> None:
    a = world.book()
    s = world.session(a["id"])
    r = world.act(s["id"], "admit")
    assert r.status_code == 409 and "no patient is waiting" in r.json()["detail"]
    assert world.join(s["id"], "patient").status_code == 200
    for who in ("patient", "nurse", "desk"):
        assert world.act(s["id"], "admit", who).status_code == 403, who
    assert world.act(s["id"], "admit", "doctor2").status_code == 404
    r = world.act(s["id"], "admit")
    assert r.status_code == 200, r.text
    live = r.json()
    assert live["status"] == "live" and live["admitted_at"]
    assert world.appointment_status(a["id"]) == "in_progress"
    [entry] = world.db.fetch("SELECT status, started_at FROM queue_entries WHERE appointment_id = $1",
                             uuid.UUID(a["id"]))
    assert entry["status"] == "in_consultation" and entry["started_at"] is not None
    assert world.act(s["id"], "admit").status_code == 409  # already live
    r = world.act(s["id"], "end")
    assert r.status_code == 200, r.text
    ended = r.json()
    assert ended["status"] == "ended" and ended["duration_seconds"] is not None
    assert ended["duration_seconds"] >= 0
    assert world.appointment_status(a["id"]) == "completed"
    [entry] = world.db.fetch("SELECT status, finished_at FROM queue_entries "
                             "WHERE appointment_id = $1", uuid.UUID(a["id"]))
    assert entry["status"] == "done" and entry["finished_at"] is not None
    r = world.act(s["id"], "end")
    assert r.status_code == 409 and "already ended" in r.json()["detail"]
    assert world.join(s["id"], "doctor").status_code == 409
    # the appointment is over: no new session either
    assert world.create(a["id"]).status_code == 409


def test_ending_before_admission_has_no_duration_and_frees_a_new_session(world: Clinic) -> None:
    a = world.book()
    s = world.session(a["id"])
    ended = world.act(s["id"], "end").json()
    assert ended["status"] == "ended" and ended["duration_seconds"] is None
    assert world.appointment_status(a["id"]) == "scheduled"
    again = world.create(a["id"])
    assert again.status_code == 201 and again.json()["id"] != s["id"]
    r = world.vapi.as_(world.token("patient"), "GET", f"/appointments/{a['id']}/video-sessions")
    assert [x["status"] for x in r.json()] == ["ended", "open"]


@pytest.mark.parametrize("action", ["cancel", "no-show"])
def test_cancelling_or_a_no_show_ends_the_call(world: Clinic, action: str) -> None:
    a = world.book()
    s = world.session(a["id"])
    world.move(a["id"], action)
    row = world.row(s["id"])
    assert row["status"] == "ended" and row["ended_at"] is not None
    assert world.db.fetch("SELECT count(*) AS n FROM events WHERE type = 'video.session_ended' "
                          "AND data->>'session_id' = $1", s["id"])[0]["n"] == 1


def test_an_expired_unpaid_visit_ends_its_call(paid_world: Clinic, domain_layer: Any) -> None:
    """The expiry job's own path (scheduling.expire_unpaid and its expiry handlers)."""
    from domain.scheduling.commands import expire_unpaid

    c = paid_world
    a = c.book()
    s = c.session(a["id"], who="doctor")
    c.db.fetch("UPDATE appointments SET payment_due_at = now() - interval '1 minute' "
               "WHERE id = $1", uuid.UUID(a["id"]))
    assert domain_layer.run(expire_unpaid()) >= 1
    assert c.appointment_status(a["id"]) == "expired"
    assert c.row(s["id"])["status"] == "ended"


def test_a_random_concurrent_mix_keeps_one_live_session_and_no_5xx(world: Clinic) -> None:
    rnd = random.Random(14)
    appointments = [world.book(doctor=d)["id"] for d in ("doctor", "doctor2") for _ in range(3)]
    doctor_of = {a: ("doctor" if i < 3 else "doctor2") for i, a in enumerate(appointments)}

    def sessions_of(a: str) -> list[dict[str, Any]]:
        r = world.vapi.as_(world.token("desk"), "GET", f"/appointments/{a}/video-sessions")
        return list(r.json())

    def step(i: int) -> httpx.Response:
        a = rnd.choice(appointments)
        action = rnd.choice(["create", "create", "token", "token", "admit", "end", "cancel"])
        if action == "create":
            return world.create(a, rnd.choice(["patient", doctor_of[a]]))
        if action == "cancel":
            return world.vapi.as_(world.token("desk"), "POST", f"/appointments/{a}/cancel")
        live = [s for s in sessions_of(a) if s["status"] != "ended"]
        if not live:
            return world.create(a, doctor_of[a])
        if action == "token":
            return world.join(live[0]["id"], rnd.choice(["patient", doctor_of[a], "nurse"]))
        return world.act(live[0]["id"], action, doctor_of[a])

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(step, range(120)))
    assert [r.status_code for r in answers if r.status_code >= 500] == []
    assert {r.status_code for r in answers} <= {200, 201, 402, 409}, \
        Counter(r.status_code for r in answers)
    for a in appointments:
        sessions = sessions_of(a)
        status = world.appointment_status(a)
        live = [s for s in sessions if s["status"] != "ended"]
        assert len(live) <= 1
        if status in ("cancelled", "completed"):
            assert live == [], (status, sessions)
        for s in live:
            assert (s["status"] == "live") == (status == "in_progress"), (status, s)
        for s in sessions:
            if s["status"] == "ended" and s["admitted_at"] is None:
                assert s["duration_seconds"] is None
