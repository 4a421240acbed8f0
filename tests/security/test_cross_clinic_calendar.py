"""A doctor who works in two clinics is one person with one calendar, but each clinic sees only
its own appointments: the other clinic's time shows as "not free" and nothing more (no id,
patient, reason, clinic or time of it) in availability, booking conflicts, lists, history and
events."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.realtime_client import Recorder

TZ = ZoneInfo("Asia/Kolkata")  # clinic_factory's time zone
WEEK = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]
SECRET_REASON = "clinic A private reason: chest pain follow-up"


def at(days: int, hhmm: str) -> datetime:
    day = datetime.now(TZ).date() + timedelta(days=days)
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=TZ)


def same_instant(a: str, b: datetime) -> bool:
    return datetime.fromisoformat(a) == b


@pytest.fixture(scope="module")
def shared(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    """Clinic A, clinic B, and a doctor who joined B by accepting B's invitation; both have set
    his hours. A has booked him at 10:00 in five days for one of A's patients."""
    a = clinic_factory("Clinic A Hidden Name")
    b = clinic_factory()
    doctor = member_factory(a["id"], "DOCTOR", tag="two-clinic-doc")
    a_patient = member_factory(a["id"], "PATIENT", tag="a-patient")
    b_admin = member_factory(b["id"], "CLINIC_ADMIN", tag="b-cal-admin")
    b_patient = member_factory(b["id"], "PATIENT", tag="b-patient")
    r = api.as_(b_admin["token"], "POST", f"/clinics/{b['id']}/members",
                json={"email": doctor["email"], "name": "x", "role": "DOCTOR"})
    assert r.status_code == 202, r.text
    r = api.as_(doctor["token"], "POST",
                f"/users/me/invitations/{r.json()['invitation_id']}/accept")
    assert r.status_code == 200, r.text
    for clinic, token in ((a, sa_token), (b, b_admin["token"])):
        r = api.as_(token, "PUT", f"/clinics/{clinic['id']}/doctors/{doctor['user_id']}/schedule",
                    json={"rules": WEEK, "slot_minutes": 30})
        assert r.status_code == 200, r.text
    start = at(5, "10:00")
    r = api.as_(sa_token, "POST", "/appointments", json={
        "clinic_id": a["id"], "doctor_id": doctor["user_id"], "patient_id": a_patient["user_id"],
        "type": "in_person", "start": start.isoformat(), "duration_minutes": 30,
        "location_id": a["locations"][0]["id"], "reason": SECRET_REASON})
    assert r.status_code == 201, r.text
    return {"a": a, "b": b, "doctor": doctor, "a_patient": a_patient, "b_admin": b_admin,
            "b_patient": b_patient, "start": start, "a_appointment": r.json()}


def secrets(s: dict[str, Any]) -> list[str]:
    """What clinic B must never learn about A's appointment."""
    return [s["a_appointment"]["id"], s["a_patient"]["user_id"], s["a_patient"]["email"],
            s["a_patient"]["name"], SECRET_REASON, s["a"]["id"], s["a"]["name"]]


def assert_hidden(text: str, s: dict[str, Any]) -> None:
    for secret in secrets(s):
        assert secret not in text, (secret, text)


def booking(s: dict[str, Any], start: datetime, **more: Any) -> dict[str, Any]:
    return {"clinic_id": s["b"]["id"], "doctor_id": s["doctor"]["user_id"],
            "patient_id": s["b_patient"]["user_id"], "type": "in_person",
            "start": start.isoformat(), "duration_minutes": 30,
            "location_id": s["b"]["locations"][0]["id"], **more}


def test_availability_shows_the_other_clinics_time_as_not_free_only(api, shared):
    s = shared
    r = api.as_(s["b_admin"]["token"], "GET",
                f"/clinics/{s['b']['id']}/doctors/{s['doctor']['user_id']}/availability",
                params={"from": at(5, "09:00").isoformat(), "to": at(5, "12:00").isoformat()})
    assert r.status_code == 200, r.text
    starts = [datetime.fromisoformat(x["start"]) for x in r.json()["slots"]]
    assert s["start"] not in starts  # busy ...
    assert at(5, "09:30") in starts and at(5, "10:30") in starts  # ... and only that
    assert_hidden(r.text, s)


def test_a_conflicting_booking_says_busy_and_nothing_else(api, shared):
    s = shared
    r = api.as_(s["b_admin"]["token"], "POST", "/appointments",
                json=booking(s, s["start"], reason="B's visit"))
    assert r.status_code == 409, r.text
    assert_hidden(r.text, s)
    alternatives = [datetime.fromisoformat(x["start"]) for x in r.json()["alternatives"]]
    assert alternatives and s["start"] not in alternatives
    # overlapping by a quarter of an hour: the same answer
    r = api.as_(s["b_admin"]["token"], "POST", "/appointments",
                json=booking(s, s["start"] + timedelta(minutes=15), override_reason="squeeze in"))
    assert r.status_code == 409, r.text
    assert_hidden(r.text, s)


def test_a_conflicting_series_or_reschedule_says_busy_and_nothing_else(api, shared):
    s = shared
    r = api.as_(s["b_admin"]["token"], "POST", "/appointments/series",
                json=booking(s, s["start"] - timedelta(days=1),
                             repeat={"every_days": 1, "count": 2}))
    assert r.status_code == 409, r.text
    assert_hidden(r.text, s)
    assert [datetime.fromisoformat(c) for c in r.json()["conflicts"]] == [s["start"]]
    own = api.as_(s["b_admin"]["token"], "POST", "/appointments",
                  json=booking(s, at(5, "15:00")))
    assert own.status_code == 201, own.text
    r = api.as_(s["b_admin"]["token"], "POST", f"/appointments/{own.json()['id']}/reschedule",
                json={"start": s["start"].isoformat()})
    assert r.status_code == 409, r.text
    assert_hidden(r.text, s)


def test_lists_history_and_reads_show_only_the_clinics_own(api, shared):
    s = shared
    token = s["b_admin"]["token"]
    r = api.as_(token, "GET", "/appointments",
                params={"clinic_id": s["b"]["id"], "doctor_id": s["doctor"]["user_id"],
                        "limit": 200})
    assert r.status_code == 200, r.text
    assert all(x["clinic_id"] == s["b"]["id"] for x in r.json()["items"])
    assert_hidden(r.text, s)
    for method, path, params in (
            ("GET", "/appointments", {"clinic_id": s["a"]["id"]}),
            ("GET", f"/appointments/{s['a_appointment']['id']}", None),
            ("GET", f"/patients/{s['a_patient']['user_id']}/history",
             {"clinic_id": s["a"]["id"]}),
            ("GET", f"/clinics/{s['a']['id']}/doctors/{s['doctor']['user_id']}/schedule", None)):
        r = api.as_(token, method, path, params=params)
        assert r.status_code == 404, (path, r.text)
        assert_hidden(r.text, s)
    r = api.as_(token, "GET", f"/patients/{s['a_patient']['user_id']}/history",
                params={"clinic_id": s["b"]["id"]})
    assert r.status_code == 404 or r.json().get("items") == [], r.text
    assert_hidden(r.text, s)
    r = api.as_(token, "GET", f"/clinics/{s['b']['id']}/events", params={"limit": 200})
    assert r.status_code == 200, r.text
    assert_hidden(r.text, s)


def test_the_other_clinics_booking_never_reaches_the_clinics_sockets(server, api, sa_token,
                                                                     shared):
    s = shared

    async def scenario() -> None:
        staff_b, doctor = Recorder(server.base_url), Recorder(server.base_url)
        await staff_b.connect(s["b_admin"]["token"])
        await doctor.connect(s["doctor"]["token"])
        try:
            r = await asyncio.to_thread(api.as_, sa_token, "POST", "/appointments", json={
                "clinic_id": s["a"]["id"], "doctor_id": s["doctor"]["user_id"],
                "patient_id": s["a_patient"]["user_id"], "type": "in_person",
                "start": at(6, "11:00").isoformat(), "location_id": s["a"]["locations"][0]["id"],
                "reason": SECRET_REASON})
            assert r.status_code == 201, r.text
            new_id = r.json()["id"]
            # the doctor hears of it: the hub has handled the event for every socket
            await doctor.wait_for(lambda: any(e["data"]["appointment_id"] == new_id
                                              for e in doctor.named("appointment.created")))
            # a marker clinic B's staff see, sent after it: their socket receives in order
            r = await asyncio.to_thread(api.as_, s["b_admin"]["token"], "PATCH",
                                        f"/clinics/{s['b']['id']}", json={"name": s["b"]["name"]})
            assert r.status_code == 200, r.text
            await staff_b.wait_for(lambda: bool(staff_b.named("clinic.updated")))
            seen = repr(staff_b.events)
            assert new_id not in seen
            assert_hidden(seen, s)
        finally:
            await staff_b.close()
            await doctor.close()

    asyncio.run(scenario())
