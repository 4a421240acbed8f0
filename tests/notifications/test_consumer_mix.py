"""Two workers consume one clinic's event log while a random mix of bookings, reschedules,
cancellations and queue calls hits a live server from several threads: every event that means
a notification becomes exactly one per kind and recipient, none is read twice or skipped (the
cursor ends at the head), and nothing answers 5xx or fails in a worker."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.queue_fixtures import TZ, fresh_day, make_clinic
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # two workers of its own

#: what each event becomes for the patient (the doctor's kinds are counted apart)
PATIENT_KIND = {"appointment.created": "appointment.booked",
                "appointment.rescheduled": "appointment.rescheduled",
                "appointment.cancelled": "appointment.cancelled",
                "queue.called": "queue.called"}


def test_a_random_mix_is_notified_once_each(api, sa_token, clinic_factory, member_factory, env,
                                            db, tmp_path: Path) -> None:
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=3, patients=6,
                    patient_max_future_appointments=500)
    desk, cid = c["desk"]["token"], uuid.UUID(c["id"])
    day = fresh_day()
    rng = random.Random(20261203)
    slots = [datetime(day.year, day.month, day.day, 8, tzinfo=TZ) + timedelta(minutes=15 * i)
             for i in range(40)]
    booked: list[dict[str, Any]] = []
    statuses: list[int] = []

    def book(i: int) -> None:
        r = api.as_(desk, "POST", "/appointments", json={
            "clinic_id": c["id"], "doctor_id": c["doctors"][i % 3]["user_id"],
            "patient_id": c["patients"][i % 6]["user_id"], "type": "in_person",
            "start": slots[i // 3].isoformat(), "duration_minutes": 15,
            "location_id": c["locations"][0]["id"]})
        statuses.append(r.status_code)
        if r.status_code == 201:
            booked.append(r.json())

    def act(step: int) -> None:
        if not booked:
            return
        a = rng.choice(booked)
        action = rng.choice(["reschedule", "cancel", "call"])
        if action == "reschedule":
            r = api.as_(desk, "POST", f"/appointments/{a['id']}/reschedule", json={
                "start": (slots[-1] + timedelta(minutes=15 * (step + 1))).isoformat(),
                "duration_minutes": 15})
        elif action == "cancel":
            r = api.as_(desk, "POST", f"/appointments/{a['id']}/cancel", json={"reason": "mix"})
        else:
            r = api.as_(desk, "POST", f"/appointments/{a['id']}/check-in")
            if r.status_code == 200:
                queue = api.as_(desk, "GET", f"/appointments/{a['id']}/queue-position").json()
                r = api.as_(desk, "POST", f"/queues/{queue['queue_id']}/call-next")
        statuses.append(r.status_code)

    log = tmp_path / "workers.log"
    with workers(env, 2, output=log):
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(book, range(60)))
            list(pool.map(act, range(40)))

        def caught_up() -> bool:
            head = db.fetch("SELECT last_seq FROM clinic_sequences WHERE clinic_id = $1", cid)
            cur = db.fetch("SELECT last_seq FROM notification_cursors WHERE clinic_id = $1", cid)
            return bool(cur) and cur[0]["last_seq"] == head[0]["last_seq"]

        eventually(caught_up, timeout=60)
    assert not [s for s in statuses if s >= 500]
    assert len(booked) >= 30
    events = db.fetch("SELECT id, type, data FROM events WHERE clinic_id = $1", cid)
    expected: dict[str, int] = {}
    for e in events:
        kind = PATIENT_KIND.get(e["type"])
        if kind is None:
            continue
        data = e["data"] if isinstance(e["data"], dict) else __import__("json").loads(e["data"])
        if e["type"] == "appointment.created" and data["status"] != "scheduled":
            continue
        expected[kind] = expected.get(kind, 0) + 1
    rows = db.fetch("SELECT kind, count(*) AS n, count(DISTINCT dedupe_key) AS keys "
                    "FROM notifications WHERE clinic_id = $1 GROUP BY kind", cid)
    found = {r["kind"]: r["n"] for r in rows}
    assert all(r["n"] == r["keys"] for r in rows)
    # a booking cancelled or moved before the consumer read it is told as it now stands: the
    # booking is not confirmed, its cancellation is; so at most one per event, and the others
    # exactly one each
    assert found.get("appointment.cancelled", 0) == expected.get("appointment.cancelled", 0)
    assert found.get("queue.called", 0) == expected.get("queue.called", 0)
    assert 0 < found.get("appointment.booked", 0) <= expected["appointment.booked"]
    assert found.get("appointment.rescheduled", 0) <= expected.get("appointment.rescheduled", 0)
    messages = db.fetch("SELECT count(*) AS n, count(DISTINCT dedupe_key) AS keys "
                        "FROM communication_messages WHERE clinic_id = $1", cid)[0]
    assert messages["n"] == messages["keys"] > 0
    mail = db.fetch("SELECT kind, data->'headers' AS headers FROM communication_messages "
                    "WHERE clinic_id = $1 AND channel = 'email'", cid)
    assert mail and all("/api/v1/unsubscribe/" in m["headers"] and "One-Click" in m["headers"]
                        for m in mail)
    assert "failed; skipped" not in log.read_text()
