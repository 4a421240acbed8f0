"""A clinic with doctors, a desk, patients and a day of appointments: shared by the queue suites."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Kolkata")
ALL_DAY = [{"weekday": d, "start": "06:00", "end": "22:00"} for d in range(7)]
_days = count(30)  # one day per call; each suite makes its own clinic


def fresh_day() -> date:
    return (datetime.now(TZ) + timedelta(days=next(_days))).date()


def make_clinic(api: Any, sa_token: str, clinic_factory: Any, member_factory: Any, *,
                doctors: int = 2, patients: int = 6, **settings: Any) -> dict[str, Any]:
    c = clinic_factory(**{"booking_horizon_days": 730, **settings})
    loc = c["locations"][0]["id"]
    c["doctors"] = [member_factory(c["id"], "DOCTOR", location_id=loc, tag=f"qdoc{i}")
                    for i in range(doctors)]
    c["desk"] = member_factory(c["id"], "RECEPTIONIST", location_id=loc, tag="qdesk")
    c["patients"] = [member_factory(c["id"], "PATIENT", tag=f"qpat{i}") for i in range(patients)]
    for doc in c["doctors"]:
        r = api.as_(sa_token, "PUT", f"/clinics/{c['id']}/doctors/{doc['user_id']}/schedule",
                    json={"rules": [{**rule, "location_id": loc} for rule in ALL_DAY],
                          "slot_minutes": 15})
        assert r.status_code == 200, r.text
    return c


def book_day(api: Any, c: dict[str, Any], *, n: int | None = None, doctor: int = 0,
             day: date | None = None, first_hour: int = 8) -> list[dict[str, Any]]:
    """n appointments (default: one per patient) 15 minutes apart with one doctor."""
    day = day or fresh_day()
    booked = []
    for i in range(n if n is not None else len(c["patients"])):
        patient = c["patients"][i % len(c["patients"])]
        start = datetime(day.year, day.month, day.day, first_hour, 0, tzinfo=TZ) + timedelta(minutes=15 * i)
        r = api.as_(c["desk"]["token"], "POST", "/appointments", json={
            "clinic_id": c["id"], "doctor_id": c["doctors"][doctor]["user_id"],
            "patient_id": patient["user_id"], "type": "in_person", "start": start.isoformat(),
            "duration_minutes": 15, "location_id": c["locations"][0]["id"]})
        assert r.status_code == 201, r.text
        booked.append({**r.json(), "patient": patient})
    return booked


def check_in(api: Any, c: dict[str, Any], appointment: dict[str, Any]) -> dict[str, Any]:
    r = api.as_(c["desk"]["token"], "POST", f"/appointments/{appointment['id']}/check-in")
    assert r.status_code == 200, r.text
    r = api.as_(c["desk"]["token"], "GET", f"/appointments/{appointment['id']}/queue-position")
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- added for the live and property suites ---------------------------------------------------

def queue_view(api: Any, token: str, queue_id: str) -> dict[str, Any]:
    """GET /queues/{id} as `token`, asserted 200."""
    r = api.as_(token, "GET", f"/queues/{queue_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def board_token(api: Any, c: dict[str, Any], queue_id: str) -> str:
    """A waiting-room board's token for the queue, issued by the desk."""
    r = api.as_(c["desk"]["token"], "POST", f"/queues/{queue_id}/board-token")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["queue_id"] == queue_id and body["url"] == f"/boards/{queue_id}#token={body['token']}"
    return str(body["token"])


def find_ids(value: Any, key: str) -> set[str]:
    """Every value of `key`, at any depth of a JSON document."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key and isinstance(v, str):
                found.add(v)
            found |= find_ids(v, key)
    elif isinstance(value, list):
        for v in value:
            found |= find_ids(v, key)
    return found
