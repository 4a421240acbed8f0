"""Appointments through the real server: no double booking under concurrency, one strict
lifecycle on every path, privacy between patients and clinics, DST-correct availability."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.scheduling.lifecycle import ACTIONS, ALLOWED
from domain.scheduling.models import Status

TZ = ZoneInfo("Asia/Kolkata")
ALL_DAY = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]


@pytest.fixture(scope="module")
def clinic(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    # alice books across the whole module; the patient quota has its own tests in tests/security
    c = clinic_factory(patient_max_future_appointments=500)
    loc = c["locations"][0]["id"]
    c["doctor"] = member_factory(c["id"], "DOCTOR", location_id=loc, tag="doc")
    c["doctor2"] = member_factory(c["id"], "DOCTOR", location_id=loc, tag="doc2")
    c["desk"] = member_factory(c["id"], "RECEPTIONIST", location_id=loc, tag="desk")
    c["alice"] = member_factory(c["id"], "PATIENT", tag="alice")
    c["bob"] = member_factory(c["id"], "PATIENT", tag="bob")
    for doc in (c["doctor"], c["doctor2"]):
        r = api.as_(sa_token, "PUT", f"/clinics/{c['id']}/doctors/{doc['user_id']}/schedule",
                    json={"rules": [{**rule, "location_id": loc} for rule in ALL_DAY],
                          "slot_minutes": 30})
        assert r.status_code == 200, r.text
    return c


_day = iter(range(3, 400))


def fresh_day() -> date:
    """A different future day per test, so tests never share a doctor's time."""
    return (datetime.now(TZ) + timedelta(days=next(_day))).date()


def at(day: date, hhmm: str) -> str:
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=TZ).isoformat()


def booking(c: dict[str, Any], start: str, *, patient: str = "alice", doctor: str = "doctor",
            minutes: int = 30, kind: str = "in_person") -> dict[str, Any]:
    return {"clinic_id": c["id"], "doctor_id": c[doctor]["user_id"],
            "patient_id": c[patient]["user_id"], "type": kind, "start": start,
            "duration_minutes": minutes, "location_id": c["locations"][0]["id"]}


def overlapping_active(db, doctor_id: str) -> int:
    return db.fetch(
        """SELECT count(*) AS n FROM appointments a JOIN appointments b
           ON a.doctor_id = b.doctor_id AND a.id < b.id
          AND tstzrange(a.starts_at, a.ends_at, '[)') && tstzrange(b.starts_at, b.ends_at, '[)')
           WHERE a.doctor_id = $1 AND a.status NOT IN ('cancelled', 'no_show', 'expired')
             AND b.status NOT IN ('cancelled', 'no_show', 'expired')""",
        uuid.UUID(doctor_id))[0]["n"]


async def storm(base: str, token: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(
            "/api/v1/appointments", json=b, headers={"Authorization": f"Bearer {token}"})
            for b in bodies))


def test_200_concurrent_bookings_of_one_slot(server, db, clinic) -> None:
    day = fresh_day()
    bodies = [booking(clinic, at(day, "10:00"), patient=("alice", "bob")[i % 2])
              for i in range(200)]
    answers = asyncio.run(storm(server.base_url, clinic["desk"]["token"], bodies))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 1 and codes.count(409) == 199, codes
    refused = next(r for r in answers if r.status_code == 409).json()
    assert refused["code"] == "conflict"
    assert 1 <= len(refused["alternatives"]) <= 5
    assert all(a["start"] != at(day, "10:00") for a in refused["alternatives"])
    assert overlapping_active(db, clinic["doctor"]["user_id"]) == 0


def test_partly_overlapping_ranges_and_back_to_back(server, api, db, clinic) -> None:
    day = fresh_day()
    bodies = [booking(clinic, at(day, f"12:{m:02d}"), minutes=30) for m in (0, 10, 15, 20, 25)] * 40
    answers = asyncio.run(storm(server.base_url, clinic["desk"]["token"], bodies))
    assert sorted(r.status_code for r in answers).count(201) == 1
    assert overlapping_active(db, clinic["doctor"]["user_id"]) == 0
    token = clinic["desk"]["token"]
    first = api.as_(token, "POST", "/appointments", json=booking(clinic, at(day, "14:00")))
    second = api.as_(token, "POST", "/appointments", json=booking(clinic, at(day, "14:30")))
    assert first.status_code == second.status_code == 201
    # A cancelled slot can be booked again.
    assert api.as_(token, "POST", f"/appointments/{first.json()['id']}/cancel",
                   json={"reason": "patient called"}).status_code == 200
    again = api.as_(token, "POST", "/appointments", json=booking(clinic, at(day, "14:00"),
                                                                   patient="bob"))
    assert again.status_code == 201, again.text


def drive_to(api, token: str, appointment_id: str, status: Status) -> None:
    path = {
        Status.SCHEDULED: [], Status.CONFIRMED: ["confirm"], Status.CHECKED_IN: ["check-in"],
        Status.IN_PROGRESS: ["check-in", "start"], Status.COMPLETED: ["check-in", "start", "complete"],
        Status.CANCELLED: ["cancel"], Status.NO_SHOW: ["no-show"],
    }[status]
    for action in path:
        r = api.as_(token, "POST", f"/appointments/{appointment_id}/{action}")
        assert r.status_code == 200, r.text


REACHABLE = [Status.SCHEDULED, Status.CONFIRMED, Status.CHECKED_IN, Status.IN_PROGRESS,
             Status.COMPLETED, Status.CANCELLED, Status.NO_SHOW]


@pytest.mark.parametrize("status", REACHABLE)
def test_every_transition_follows_the_table(api, clinic, status: Status) -> None:
    token = clinic["desk"]["token"]
    day = fresh_day()
    for i, (action, target) in enumerate(ACTIONS.items()):
        r = api.as_(token, "POST", "/appointments",
                    json=booking(clinic, at(day, f"{8 + i}:00")))
        assert r.status_code == 201, r.text
        appointment_id = r.json()["id"]
        drive_to(api, token, appointment_id, status)
        answer = api.as_(token, "POST", f"/appointments/{appointment_id}/{action}")
        if target in ALLOWED.get(status, frozenset()):
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == target.value
        else:
            assert answer.status_code == 409, (status, action, answer.text)
            assert status.value in answer.json()["detail"]
        moved = api.as_(token, "POST", f"/appointments/{appointment_id}/reschedule",
                        json={"start": at(day, f"{8 + i}:30")})
        current = Status(api.as_(token, "GET", f"/appointments/{appointment_id}").json()["status"])
        if current in (Status.SCHEDULED, Status.CONFIRMED):
            assert moved.status_code == 200, moved.text
        else:
            assert moved.status_code == 409 and current.value in moved.json()["detail"]


def test_history_of_transitions_and_reschedule_keeps_the_id(api, clinic) -> None:
    token = clinic["desk"]["token"]
    day = fresh_day()
    r = api.as_(token, "POST", "/appointments", json=booking(clinic, at(day, "09:00")))
    appointment_id = r.json()["id"]
    moved = api.as_(token, "POST", f"/appointments/{appointment_id}/reschedule",
                    json={"start": at(day, "11:00"), "reason": "doctor late"})
    assert moved.json()["id"] == appointment_id and moved.json()["reschedule_count"] == 1
    api.as_(token, "POST", f"/appointments/{appointment_id}/confirm")
    full = api.as_(token, "GET", f"/appointments/{appointment_id}").json()
    assert [(h["from_status"], h["to_status"]) for h in full["history"]] == [
        (None, "scheduled"), ("scheduled", "scheduled"), ("scheduled", "confirmed")]
    assert full["history"][1]["reason"] == "doctor late"
    assert all(h["actor_id"] == clinic["desk"]["user_id"] for h in full["history"])


def test_patients_see_and_touch_only_their_own(api, clinic, clinic_factory, member_factory) -> None:
    day = fresh_day()
    alice, bob = clinic["alice"], clinic["bob"]
    mine = api.as_(alice["token"], "POST", "/appointments", json=booking(clinic, at(day, "10:00")))
    assert mine.status_code == 201, mine.text
    for_bob = api.as_(alice["token"], "POST", "/appointments",
                      json=booking(clinic, at(day, "11:00"), patient="bob"))
    assert for_bob.status_code == 403
    bobs = api.as_(clinic["desk"]["token"], "POST", "/appointments",
                   json=booking(clinic, at(day, "12:00"), patient="bob")).json()
    for method, path, body in [("GET", f"/appointments/{bobs['id']}", None),
                               ("POST", f"/appointments/{bobs['id']}/cancel", {"reason": "x"}),
                               ("POST", f"/appointments/{bobs['id']}/reschedule",
                                {"start": at(day, "15:00")})]:
        assert api.as_(alice["token"], method, path, json=body).status_code == 404
    listed = api.as_(alice["token"], "GET", "/appointments", params={"clinic_id": clinic["id"]})
    assert {a["patient_id"] for a in listed.json()["items"]} == {alice["user_id"]}
    assert api.as_(alice["token"], "POST", f"/appointments/{mine.json()['id']}/start"
                   ).status_code == 403
    history = api.as_(alice["token"], "GET", f"/patients/{bob['user_id']}/history",
                      params={"clinic_id": clinic["id"]})
    assert history.status_code == 404
    # Another clinic's staff get 404 for this clinic's appointment.
    other = clinic_factory()
    stranger = member_factory(other["id"], "CLINIC_ADMIN", tag="stranger")
    assert api.as_(stranger["token"], "GET", f"/appointments/{bobs['id']}").status_code == 404


def test_outside_hours_needs_an_audited_override(api, db, clinic) -> None:
    day = fresh_day()
    late = booking(clinic, at(day, "21:00"))
    refused = api.as_(clinic["alice"]["token"], "POST", "/appointments", json=late)
    assert refused.status_code == 409 and refused.json()["alternatives"]
    sneaky = api.as_(clinic["alice"]["token"], "POST", "/appointments",
                     json={**late, "override_reason": "please"})
    assert sneaky.status_code == 409  # patients cannot override
    staff = api.as_(clinic["desk"]["token"], "POST", "/appointments",
                    json={**late, "override_reason": "emergency slot"})
    assert staff.status_code == 201, staff.text
    audit = db.fetch("SELECT detail FROM audit_log WHERE action = 'appointments:create' "
                     "AND resource_id = $1", staff.json()["id"])
    assert "emergency slot" in audit[0]["detail"]


def test_follow_ups_link_both_ways_and_history_lists_them(api, clinic) -> None:
    token = clinic["desk"]["token"]
    day = fresh_day()
    parent = api.as_(token, "POST", "/appointments", json=booking(clinic, at(day, "09:00"))).json()
    early = api.as_(token, "POST", f"/appointments/{parent['id']}/follow-up",
                    json={"after_days": 7})
    assert early.status_code == 409  # no visit yet
    drive_to(api, token, parent["id"], Status.COMPLETED)
    child = api.as_(token, "POST", f"/appointments/{parent['id']}/follow-up",
                    json={"after_days": 7, "reason": "review"})
    assert child.status_code == 201, child.text
    assert child.json()["parent_id"] == parent["id"]
    assert datetime.fromisoformat(child.json()["start"]) >= datetime.fromisoformat(
        parent["start"]) + timedelta(days=7)
    again = api.as_(token, "GET", f"/appointments/{parent['id']}").json()
    assert again["follow_up_ids"] == [child.json()["id"]]
    history = api.as_(token, "GET", f"/patients/{clinic['alice']['user_id']}/history",
                      params={"clinic_id": clinic["id"]}).json()
    starts = [a["start"] for a in history]
    assert starts == sorted(starts, reverse=True)
    assert {parent["id"], child.json()["id"]} <= {a["id"] for a in history}


def test_a_series_books_all_or_none(api, db, clinic) -> None:
    token = clinic["desk"]["token"]
    day = fresh_day()
    blocker = api.as_(token, "POST", "/appointments",
                      json=booking(clinic, at(day + timedelta(days=14), "16:00"), patient="bob"))
    assert blocker.status_code == 201
    body = {**booking(clinic, at(day, "16:00")), "repeat": {"every_days": 7, "count": 6}}
    refused = api.as_(token, "POST", "/appointments/series", json=body)
    assert refused.status_code == 409
    assert refused.json()["conflicts"] == [at(day + timedelta(days=14), "16:00")]
    occurrences = [datetime.fromisoformat(at(day + timedelta(days=7 * i), "16:00"))
                   for i in range(6)]
    count = db.fetch("SELECT count(*) AS n FROM appointments WHERE doctor_id = $1 "
                     "AND starts_at = ANY($2::timestamptz[]) AND patient_id = $3",
                     uuid.UUID(clinic["doctor"]["user_id"]), occurrences,
                     uuid.UUID(clinic["alice"]["user_id"]))
    assert count[0]["n"] == 0  # none of the five free occurrences was kept
    ok = api.as_(token, "POST", "/appointments/series",
                 json={**body, "start": at(day, "17:00")})
    assert ok.status_code == 201, ok.text
    assert len(ok.json()["items"]) == 6 and ok.json()["series_id"]


def test_availability_excludes_booked_slots_and_time_off(api, clinic) -> None:
    token = clinic["desk"]["token"]
    day = fresh_day()
    doc = clinic["doctor2"]["user_id"]
    base = f"/clinics/{clinic['id']}/doctors/{doc}"
    window = {"from": at(day, "00:00"), "to": at(day + timedelta(days=1), "00:00")}
    before = api.as_(token, "GET", base + "/availability", params=window).json()["slots"]
    assert len(before) == 24 and before[0]["start"] == at(day, "08:00")
    api.as_(token, "POST", "/appointments", json=booking(clinic, at(day, "08:00"), doctor="doctor2"))
    api.as_(token, "POST", base + "/time-off",
            json={"start": at(day, "12:00"), "end": at(day, "14:00"), "reason": "training"})
    after = api.as_(token, "GET", base + "/availability", params=window).json()["slots"]
    assert len(after) == 24 - 1 - 4
    assert at(day, "08:00") not in {s["start"] for s in after}


def test_availability_across_a_dst_change(api, sa_token, clinic_factory, member_factory) -> None:
    london = ZoneInfo("Europe/London")
    c = clinic_factory()
    api.as_(sa_token, "PATCH", f"/clinics/{c['id']}", json={"timezone": "Europe/London"})
    doc = member_factory(c["id"], "DOCTOR", tag="dst")
    api.as_(sa_token, "PUT", f"/clinics/{c['id']}/doctors/{doc['user_id']}/schedule",
            json={"rules": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(7)],
                  "slot_minutes": 30})
    start = datetime(2027, 3, 27, tzinfo=london)  # clocks go forward on 28 March 2027
    r = api.as_(sa_token, "GET", f"/clinics/{c['id']}/doctors/{doc['user_id']}/availability",
                params={"from": start.isoformat(), "to": (start + timedelta(days=3)).isoformat()})
    assert r.status_code == 200, r.text
    slots = [datetime.fromisoformat(s["start"]) for s in r.json()["slots"]]
    by_day: dict[date, list[datetime]] = {}
    for s in slots:
        by_day.setdefault(s.astimezone(london).date(), []).append(s)
    assert sorted(by_day) == [date(2027, 3, 27), date(2027, 3, 28), date(2027, 3, 29)]
    for day_slots in by_day.values():
        assert len(day_slots) == 16
        assert day_slots[0].astimezone(london).hour == 9
    assert by_day[date(2027, 3, 27)][0].astimezone(UTC).hour == 9
    assert by_day[date(2027, 3, 29)][0].astimezone(UTC).hour == 8


OPS = st.lists(st.tuples(st.sampled_from(["book", "cancel", "reschedule", "confirm"]),
                         st.integers(0, 11), st.integers(0, 5)), min_size=1, max_size=10)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_random_sequences_keep_the_invariants(api, db, clinic, ops) -> None:
    token = clinic["desk"]["token"]
    day = fresh_day()
    made: list[str] = []
    for op, slot, pick in ops:
        start = at(day, f"{8 + slot // 2}:{30 * (slot % 2):02d}")
        if op == "book" or not made:
            r = api.as_(token, "POST", "/appointments", json=booking(clinic, start, minutes=45))
            assert r.status_code in (201, 409), r.text
            if r.status_code == 201:
                made.append(r.json()["id"])
            continue
        target = made[pick % len(made)]
        if op == "reschedule":
            r = api.as_(token, "POST", f"/appointments/{target}/reschedule", json={"start": start})
        else:
            r = api.as_(token, "POST", f"/appointments/{target}/{op}")
        assert r.status_code in (200, 409), r.text
    assert overlapping_active(db, clinic["doctor"]["user_id"]) == 0
    rows = db.fetch("SELECT t.from_status, t.to_status FROM appointment_transitions t "
                    "WHERE t.appointment_id = ANY($1::uuid[])", [uuid.UUID(m) for m in made])
    for row in rows:
        if row["from_status"] and row["from_status"] != row["to_status"]:
            assert Status(row["to_status"]) in ALLOWED[Status(row["from_status"])]


def test_unpaid_bookings_expire_exactly_once_with_two_workers(env, api, db, sa_token,
                                                              clinic_factory, member_factory):
    from tests.jobs.test_worker import eventually, workers

    c = clinic_factory(payment_required_types=["video"])
    doc = member_factory(c["id"], "DOCTOR", tag="pay-doc")
    patient = member_factory(c["id"], "PATIENT", tag="pay-patient")
    api.as_(sa_token, "PUT", f"/clinics/{c['id']}/doctors/{doc['user_id']}/schedule",
            json={"rules": ALL_DAY, "slot_minutes": 30})
    day = fresh_day()
    body = {"clinic_id": c["id"], "doctor_id": doc["user_id"], "patient_id": patient["user_id"],
            "type": "video", "start": at(day, "10:00")}
    r = api.as_(patient["token"], "POST", "/appointments", json=body)
    assert r.status_code == 201 and r.json()["status"] == "pending_payment", r.text
    appointment_id = uuid.UUID(r.json()["id"])
    assert api.as_(patient["token"], "POST", "/appointments", json=body).status_code == 409
    db.fetch("UPDATE appointments SET payment_due_at = now() - interval '1 second' WHERE id = $1",
             appointment_id)  # the payment window has passed
    key = f"expire-{uuid.uuid4().hex[:8]}"
    with workers(env, 2):
        db.fetch("INSERT INTO scheduled_jobs (id, task, job_key, schedule_key, run_at) VALUES "
                 "(gen_random_uuid(), 'appointments.expire_unpaid', $1, $1 || '#1', "
                 "now() - interval '1 year')", key)  # before what other tests left due
        eventually(lambda: db.fetch("SELECT 1 FROM job_runs WHERE job_key = $1", key) or db.fetch(
            "SELECT 1 FROM appointments WHERE id = $1 AND status = 'expired'", appointment_id))
    moves = db.fetch("SELECT from_status, to_status FROM appointment_transitions "
                     "WHERE appointment_id = $1 ORDER BY id", appointment_id)
    assert [(m["from_status"], m["to_status"]) for m in moves] == [
        (None, "pending_payment"), ("pending_payment", "expired")]
    again = api.as_(patient["token"], "POST", "/appointments", json=body)
    assert again.status_code == 201  # the slot is free again


def test_appointment_events_reach_staff_doctor_and_patient_only(server, api, clinic):
    from tests.realtime_client import Recorder

    day = fresh_day()

    async def scenario() -> None:
        doctor, alice, bob = (Recorder(server.base_url) for _ in range(3))
        await doctor.connect(clinic["doctor"]["token"])
        await alice.connect(clinic["alice"]["token"])
        await bob.connect(clinic["bob"]["token"])
        r = await asyncio.to_thread(api.as_, clinic["desk"]["token"], "POST", "/appointments",
                                    json={**booking(clinic, at(day, "10:00")),
                                          "reason": "chest pain since Tuesday"})
        assert r.status_code == 201
        mine = r.json()["id"]
        for rec in (doctor, alice):
            await rec.wait_for(lambda rec=rec: any(
                d["data"]["appointment_id"] == mine for d in rec.named("appointment.created")))
        envelope = next(d for d in alice.named("appointment.created")
                        if d["data"]["appointment_id"] == mine)
        assert "chest pain" not in str(envelope) and "reason" not in envelope["data"]
        marker = await asyncio.to_thread(api.as_, clinic["desk"]["token"], "POST", "/appointments",
                                         json=booking(clinic, at(day, "11:00"), patient="bob"))
        await bob.wait_for(lambda: any(d["data"]["appointment_id"] == marker.json()["id"]
                                       for d in bob.named("appointment.created")))
        assert all(d["data"]["appointment_id"] != mine for d in bob.named("appointment.created"))
        await asyncio.to_thread(api.as_, clinic["desk"]["token"], "POST",
                                f"/appointments/{mine}/cancel", json={"reason": "x"})
        await alice.wait_for(lambda: bool(alice.named("appointment.cancelled")))
        for rec in (doctor, alice, bob):
            await rec.close()

    asyncio.run(scenario())


def test_clinic_policies_bind_patients_not_staff(api, sa_token, clinic_factory, member_factory):
    c = clinic_factory(min_cancel_notice_minutes=60 * 24 * 7, max_reschedules=1)
    loc = c["locations"][0]["id"]
    doc = member_factory(c["id"], "DOCTOR", location_id=loc, tag="pol-doc")
    desk = member_factory(c["id"], "RECEPTIONIST", location_id=loc, tag="pol-desk")
    pat = member_factory(c["id"], "PATIENT", tag="pol-pat")
    api.as_(sa_token, "PUT", f"/clinics/{c['id']}/doctors/{doc['user_id']}/schedule",
            json={"rules": ALL_DAY, "slot_minutes": 30})
    day = (datetime.now(TZ) + timedelta(days=3)).date()  # inside the week's notice
    body = {"clinic_id": c["id"], "doctor_id": doc["user_id"], "patient_id": pat["user_id"],
            "type": "video", "start": at(day, "10:00")}
    appt = api.as_(pat["token"], "POST", "/appointments", json=body).json()
    late = api.as_(pat["token"], "POST", f"/appointments/{appt['id']}/cancel", json={"reason": "x"})
    assert late.status_code == 409 and "notice" in late.json()["detail"]
    once = api.as_(pat["token"], "POST", f"/appointments/{appt['id']}/reschedule",
                   json={"start": at(day, "11:00")})
    assert once.status_code == 200, once.text
    twice = api.as_(pat["token"], "POST", f"/appointments/{appt['id']}/reschedule",
                    json={"start": at(day, "12:00")})
    assert twice.status_code == 409 and "rescheduled 1 times" in twice.json()["detail"]
    staff = api.as_(desk["token"], "POST", f"/appointments/{appt['id']}/reschedule",
                    json={"start": at(day, "12:00"), "override_reason": "patient asked at desk"})
    assert staff.status_code == 200
    assert api.as_(desk["token"], "POST", f"/appointments/{appt['id']}/cancel",
                   json={"reason": "x"}).status_code == 200
    paused = api.as_(sa_token, "PATCH", f"/clinics/{c['id']}", json={"settings": {"booking_paused": True}})
    assert paused.status_code == 200
    refused = api.as_(pat["token"], "POST", "/appointments", json={**body, "start": at(day, "15:00")})
    assert refused.status_code == 409 and "paused" in refused.json()["detail"]


def test_a_double_tapped_booking_returns_the_first_result(api, db, clinic):
    day = fresh_day()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = booking(clinic, at(day, "13:00"))
    first = api.as_(clinic["alice"]["token"], "POST", "/appointments", json=body, headers=key)
    second = api.as_(clinic["alice"]["token"], "POST", "/appointments", json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert db.fetch("SELECT count(*) AS n FROM appointments WHERE doctor_id = $1 AND starts_at = $2",
                    uuid.UUID(clinic["doctor"]["user_id"]),
                    datetime.fromisoformat(at(day, "13:00")))[0]["n"] == 1
