"""One patient cannot empty a doctor's calendar: patients book only the slot length the schedule
offers, hold a bounded number of upcoming appointments per clinic and book bounded series, even
when they fire their bookings all at once. Staff booking for a patient are not bound."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

TZ = ZoneInfo("Asia/Kolkata")
ALL_DAY = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]


@pytest.fixture(scope="module")
def clinic(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    c = clinic_factory(patient_max_future_appointments=3, patient_max_series_occurrences=4)
    loc = c["locations"][0]["id"]
    c["doctor"] = member_factory(c["id"], "DOCTOR", location_id=loc, tag="doc")
    c["desk"] = member_factory(c["id"], "RECEPTIONIST", location_id=loc, tag="desk")
    r = api.as_(sa_token, "PUT", f"/clinics/{c['id']}/doctors/{c['doctor']['user_id']}/schedule",
                json={"rules": [{**rule, "location_id": loc} for rule in ALL_DAY],
                      "slot_minutes": 30})
    assert r.status_code == 200, r.text
    return c


def day(offset: int) -> date:
    return (datetime.now(TZ) + timedelta(days=offset)).date()


def at(d: date, hhmm: str) -> str:
    h, m = map(int, hhmm.split(":"))
    return datetime(d.year, d.month, d.day, h, m, tzinfo=TZ).isoformat()


def body(c: dict[str, Any], patient: dict[str, Any], start: str, **extra: Any) -> dict[str, Any]:
    return {"clinic_id": c["id"], "doctor_id": c["doctor"]["user_id"],
            "patient_id": patient["user_id"], "type": "in_person", "start": start,
            "location_id": c["locations"][0]["id"], **extra}


def upcoming(db, patient_id: str) -> int:
    return db.fetch("""SELECT count(*) AS n FROM appointments WHERE patient_id = $1::uuid
                       AND status NOT IN ('cancelled', 'no_show', 'expired')""",
                    patient_id)[0]["n"]


def test_a_patient_books_only_the_schedules_slot_length(api, db, clinic, member_factory) -> None:
    patient = member_factory(clinic["id"], "PATIENT", tag="long")
    r = api.as_(patient["token"], "POST", "/appointments",
                json=body(clinic, patient, at(day(3), "09:00"), duration_minutes=480))
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "duration_minutes"
    assert "30 minutes" in r.json()["errors"][0]["message"]
    assert upcoming(db, patient["user_id"]) == 0
    # the slot length itself, or no length at all, is fine
    r = api.as_(patient["token"], "POST", "/appointments",
                json=body(clinic, patient, at(day(3), "09:00"), duration_minutes=30))
    assert r.status_code == 201, r.text
    r = api.as_(patient["token"], "POST", "/appointments",
                json=body(clinic, patient, at(day(3), "10:00")))
    assert r.status_code == 201, r.text
    # nor can a reschedule stretch it
    r = api.as_(patient["token"], "POST", f"/appointments/{r.json()['id']}/reschedule",
                json={"start": at(day(3), "11:00"), "duration_minutes": 240})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "duration_minutes"


def test_a_patient_books_bounded_series(api, db, clinic, member_factory) -> None:
    patient = member_factory(clinic["id"], "PATIENT", tag="series")
    r = api.as_(patient["token"], "POST", "/appointments/series",
                json=body(clinic, patient, at(day(5), "12:00"),
                          repeat={"every_days": 1, "count": 52}))
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "repeat.count"
    assert upcoming(db, patient["user_id"]) == 0


def test_a_patient_holds_a_bounded_number_of_upcoming_appointments(
        api, db, clinic, member_factory) -> None:
    patient = member_factory(clinic["id"], "PATIENT", tag="many")
    for i in range(3):
        r = api.as_(patient["token"], "POST", "/appointments",
                    json=body(clinic, patient, at(day(7 + i), "13:00")))
        assert r.status_code == 201, r.text
    r = api.as_(patient["token"], "POST", "/appointments",
                json=body(clinic, patient, at(day(11), "13:00")))
    assert r.status_code == 409, r.text
    assert "at most 3 upcoming" in r.json()["detail"]
    assert upcoming(db, patient["user_id"]) == 3
    # a cancelled one frees its place
    first = api.as_(patient["token"], "GET", "/appointments",
                    params={"clinic_id": clinic["id"]}).json()["items"][0]
    assert api.as_(patient["token"], "POST", f"/appointments/{first['id']}/cancel",
                   json={"reason": "x"}).status_code == 200
    r = api.as_(patient["token"], "POST", "/appointments",
                json=body(clinic, patient, at(day(11), "13:00")))
    assert r.status_code == 201, r.text


def test_concurrent_bookings_cannot_overrun_the_limit(server, api, db, clinic,
                                                      member_factory) -> None:
    patient = member_factory(clinic["id"], "PATIENT", tag="burst")
    bodies = [body(clinic, patient, at(day(20 + i), "15:00")) for i in range(12)]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            return await asyncio.gather(*(client.post(
                "/api/v1/appointments", json=b,
                headers={"Authorization": f"Bearer {patient['token']}"}) for b in bodies))

    answers = asyncio.run(fire())
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 3 + [409] * 9, codes
    assert upcoming(db, patient["user_id"]) == 3


def test_staff_are_not_bound(api, db, clinic, member_factory) -> None:
    patient = member_factory(clinic["id"], "PATIENT", tag="staffbooked")
    r = api.as_(clinic["desk"]["token"], "POST", "/appointments/series",
                json=body(clinic, patient, at(day(40), "08:00"), duration_minutes=60,
                          repeat={"every_days": 1, "count": 6}))
    assert r.status_code == 201, r.text
    assert upcoming(db, patient["user_id"]) == 6
