"""Waiting-room queues through the real server: one ticket per appointment, one order in every
view, call-next that never calls anyone twice, and the actions around it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.queue_fixtures import book_day, check_in, make_clinic


@pytest.fixture(scope="module")
def clinic(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    return make_clinic(api, sa_token, clinic_factory, member_factory, queue_max_skips=2)


def queue(api, c, queue_id: str) -> dict[str, Any]:
    r = api.as_(c["desk"]["token"], "GET", f"/queues/{queue_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def waiting(q: dict[str, Any]) -> list[str]:
    return [e["ticket"] for e in q["entries"] if e["status"] == "waiting"]


def test_check_in_hands_out_one_ticket_and_orders_by_appointment_time(api, clinic) -> None:
    booked = book_day(api, clinic, n=4)
    # arrive in reverse: on-time arrivals still queue by their appointment time
    positions = [check_in(api, clinic, a) for a in reversed(booked)]
    queue_id = positions[0]["queue_id"]
    assert all(p["queue_id"] == queue_id for p in positions)
    assert [p["ticket"] for p in positions] == ["A-001", "A-002", "A-003", "A-004"]
    q = queue(api, clinic, queue_id)
    assert waiting(q) == ["A-004", "A-003", "A-002", "A-001"]
    assert [e["position"] for e in q["entries"]] == [1, 2, 3, 4]
    assert q["eta"] == {"method": "slot_length", "minutes_per_patient": 15.0, "samples": 0}
    assert [e["eta_minutes"] for e in q["entries"]] == [0, 15, 30, 45]
    again = api.as_(clinic["desk"]["token"], "POST", f"/appointments/{booked[0]['id']}/check-in")
    assert again.status_code == 409 and "checked_in" in again.json()["detail"]
    assert queue(api, clinic, queue_id)["stats"]["waiting"] == 4


def test_actions_keep_positions_one_to_n(api, clinic) -> None:
    booked = book_day(api, clinic, n=5)
    for a in booked:
        check_in(api, clinic, a)
    queue_id = api.as_(clinic["desk"]["token"], "GET",
                       f"/appointments/{booked[0]['id']}/queue-position").json()["queue_id"]
    token = clinic["desk"]["token"]
    entries = {e["appointment_id"]: e for e in queue(api, clinic, queue_id)["entries"]}
    first, second, third = (entries[a["id"]] for a in booked[:3])

    r = api.as_(token, "POST", f"/queue-entries/{first['id']}/skip")
    assert r.status_code == 200 and r.json()["position"] == 5, r.text
    r = api.as_(token, "POST", f"/queue-entries/{third['id']}/priority",
                json={"priority": "emergency", "reason": "chest pain"})
    assert r.status_code == 200 and r.json()["position"] == 1, r.text
    r = api.as_(token, "POST", f"/queue-entries/{third['id']}/priority", json={"priority": "urgent"})
    assert r.status_code == 400 and "reason" in r.text
    called = api.as_(token, "POST", f"/queues/{queue_id}/call-next")
    assert called.status_code == 200 and called.json()["id"] == third["id"], called.text
    assert called.json()["status"] == "called"
    q = queue(api, clinic, queue_id)
    assert [e["position"] for e in q["entries"] if e["status"] == "waiting"] == [1, 2, 3, 4]
    assert q["entries"][0]["id"] == third["id"]  # the called one leads the listing

    # the second skip reaches this clinic's limit (2): out of the queue, then back at the end
    r = api.as_(token, "POST", f"/queue-entries/{first['id']}/skip")
    assert r.status_code == 200 and r.json()["status"] == "removed"
    assert r.json()["removed_reason"] == "skipped_out"
    assert api.as_(token, "POST", f"/queue-entries/{first['id']}/skip").status_code == 409
    r = api.as_(token, "POST", f"/queue-entries/{first['id']}/requeue")
    assert r.status_code == 200 and r.json()["position"] == 4, r.text

    # pause: call-next refused with a reason; resume: it works again
    assert api.as_(token, "POST", f"/queues/{queue_id}/pause").json()["paused"] is True
    r = api.as_(token, "POST", f"/queues/{queue_id}/call-next")
    assert r.status_code == 409 and "paused" in r.json()["detail"]
    assert api.as_(token, "POST", f"/queues/{queue_id}/resume").json()["paused"] is False

    # transfer to the other doctor: a ticket of that queue, same time to queue by
    other = clinic["doctors"][1]["user_id"]
    r = api.as_(token, "POST", f"/queue-entries/{second['id']}/transfer", json={"doctor_id": other})
    assert r.status_code == 200, r.text
    moved = api.as_(token, "GET", f"/appointments/{booked[1]['id']}/queue-position").json()
    assert moved["queue_id"] != queue_id and moved["ticket"].startswith("B-") and moved["position"] == 1
    assert [e["position"] for e in queue(api, clinic, queue_id)["entries"]
            if e["status"] == "waiting"] == [1, 2, 3]

    # the consultation: start and complete move the appointment; the measured time feeds ETAs
    r = api.as_(token, "POST", f"/queue-entries/{third['id']}/start")
    assert r.status_code == 200 and r.json()["status"] == "in_consultation", r.text
    assert api.as_(token, "GET", f"/appointments/{booked[2]['id']}").json()["status"] == "in_progress"
    r = api.as_(token, "POST", f"/queue-entries/{third['id']}/complete")
    assert r.status_code == 200 and r.json()["status"] == "done"
    q = queue(api, clinic, queue_id)
    assert q["eta"]["method"] == "measured" and q["eta"]["samples"] == 1
    assert q["stats"]["consultations_done"] == 1 and q["stats"]["no_shows"] == 0
    assert q["stats"]["average_wait_minutes"] is not None

    # cancelling an appointment takes its entry out, and the rest close ranks
    r = api.as_(token, "POST", f"/appointments/{booked[3]['id']}/cancel", json={"reason": "left"})
    assert r.status_code == 200, r.text
    q = queue(api, clinic, queue_id)
    assert [e["position"] for e in q["entries"] if e["status"] == "waiting"] == [1, 2]


def test_concurrent_call_next_calls_each_entry_once_in_order(server, api, clinic) -> None:
    booked = book_day(api, clinic, n=12)
    for a in booked:
        check_in(api, clinic, a)
    queue_id = api.as_(clinic["desk"]["token"], "GET",
                       f"/appointments/{booked[0]['id']}/queue-position").json()["queue_id"]
    expected = waiting(queue(api, clinic, queue_id))

    async def storm() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {clinic['desk']['token']}"}
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=60) as client:
            return await asyncio.gather(*(client.post(f"/queues/{queue_id}/call-next",
                                                      headers=headers) for _ in range(30)))

    answers = asyncio.run(storm())
    ok = [r.json() for r in answers if r.status_code == 200]
    assert len(ok) == 12 and sorted(r.status_code for r in answers).count(409) == 18
    assert len({e["id"] for e in ok}) == 12
    q = queue(api, clinic, queue_id)
    by_call = sorted((e for e in q["entries"] if e["status"] == "called"), key=lambda e: e["called_at"])
    assert [e["ticket"] for e in by_call] == expected
