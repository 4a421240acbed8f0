"""Waiting-room queues on real sockets: each patient hears their own position and call and
nobody else's; staff and boards hear `queue.updated`, which names no one; a board token reads
its one queue and nothing else; a patient's own check-in needs a code, in the window."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.queue_fixtures import (
    board_token,
    book_day,
    check_in,
    find_ids,
    fresh_day,
    make_clinic,
    queue_view,
)
from tests.realtime_client import Recorder

UPDATED_KEYS = {"queue_id", "doctor_id", "location_id", "date", "paused", "called",
                "in_consultation", "waiting"}
BOARD_KEYS = {"queue_id", "date", "paused", "called", "in_consultation", "waiting"}


@pytest.fixture(scope="module")
def clinic(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    return make_clinic(api, sa_token, clinic_factory, member_factory, patients=4)


def rest(api, *args, **kw):
    return asyncio.to_thread(api.as_, *args, **kw)


def new(rec: Recorder, since: int, name: str) -> list[dict[str, Any]]:
    """Envelopes of `name` received after the first `since` events."""
    return [d for e, d in rec.events[since:] if e == name]


def positions_of(rec: Recorder, since: int, appointment_id: str) -> list[dict[str, Any]]:
    return [d["data"] for d in new(rec, since, "queue.position")
            if d["data"]["appointment_id"] == appointment_id]


async def told(api, rec: Recorder, since: int, appointment: dict[str, Any],
               expected: tuple[int, int]) -> dict[str, Any]:
    """The next `queue.position` on the patient's socket: the expected (position, eta), the
    same as the patient reads over REST."""
    await rec.wait_for(lambda: bool(positions_of(rec, since, appointment["id"])))
    event = positions_of(rec, since, appointment["id"])[0]
    position, eta = expected
    assert (event["position"], event["ahead"], event["eta_minutes"], event["status"]) == (
        position, position - 1, eta, "waiting"), event
    r = await rest(api, appointment["patient"]["token"], "GET",
                   f"/appointments/{appointment['id']}/queue-position")
    assert r.status_code == 200, r.text
    mine = r.json()
    assert {k: mine[k] for k in ("queue_id", "ticket", "position", "ahead", "eta_minutes")} == {
        k: event[k] for k in ("queue_id", "ticket", "position", "ahead", "eta_minutes")}
    return event


def test_patients_hear_their_own_position_and_call_only(server, api, clinic) -> None:
    day = fresh_day()
    booked = book_day(api, clinic, n=4, day=day)  # patients 0..3, 08:00 to 08:45
    p0, p1, p2, p3 = booked
    desk = clinic["desk"]["token"]
    other_doctor = clinic["doctors"][1]["user_id"]

    async def scenario() -> None:
        sockets = {a["id"]: Recorder(server.base_url) for a in booked}
        for a in booked:
            await sockets[a["id"]].connect(a["patient"]["token"])
        staff = Recorder(server.base_url)
        await staff.connect(desk)
        for a in booked:
            await asyncio.to_thread(check_in, api, clinic, a)
        queue_id = (await rest(api, desk, "GET", f"/appointments/{p0['id']}/queue-position")
                    ).json()["queue_id"]
        for a, position in zip(booked, (1, 2, 3, 4), strict=True):
            await told(api, sockets[a["id"]], 0, a, (position, 15 * (position - 1)))
        ticket_of = {e["appointment_id"]: e["ticket"]
                     for e in (await asyncio.to_thread(queue_view, api, desk, queue_id))["entries"]}

        # call-next: p0 is called, everyone behind moves up one (one called ahead: +15 min)
        marks = {k: len(s.events) for k, s in sockets.items()}
        staff_mark = len(staff.events)
        r = await rest(api, desk, "POST", f"/queues/{queue_id}/call-next")
        assert r.status_code == 200 and r.json()["appointment_id"] == p0["id"], r.text
        caller = sockets[p0["id"]]
        await caller.wait_for(lambda: bool(new(caller, marks[p0["id"]], "queue.called")))
        called = new(caller, marks[p0["id"]], "queue.called")[0]["data"]
        assert called == {"queue_id": queue_id, "appointment_id": p0["id"],
                          "ticket": ticket_of[p0["id"]]}
        for a, expected in ((p1, (1, 15)), (p2, (2, 30)), (p3, (3, 45))):
            await told(api, sockets[a["id"]], marks[a["id"]], a, expected)
            assert new(sockets[a["id"]], marks[a["id"]], "queue.called") == []

        # staff hear queue.updated: tickets and positions, no one's ids or names
        await staff.wait_for(lambda: bool(new(staff, staff_mark, "queue.updated")))
        update = new(staff, staff_mark, "queue.updated")[0]["data"]
        assert set(update) == UPDATED_KEYS and update["queue_id"] == queue_id
        assert update["called"] == [ticket_of[p0["id"]]] and update["in_consultation"] == []
        assert update["waiting"] == [
            {"ticket": ticket_of[a["id"]], "position": i + 1, "eta_minutes": 15 * (i + 1)}
            for i, a in enumerate((p1, p2, p3))]

        # skip the first in line (p1): p2 and p3 move up, p1 goes to the end
        marks = {k: len(s.events) for k, s in sockets.items()}
        r = await rest(api, desk, "POST", f"/queue-entries/{_entry(api, desk, queue_id, p1)}/skip")
        assert r.status_code == 200, r.text
        for a, expected in ((p2, (1, 15)), (p3, (2, 30)), (p1, (3, 45))):
            await told(api, sockets[a["id"]], marks[a["id"]], a, expected)

        # transfer the first in line (p2) to the other doctor: p3 and p1 move up; p2 is first
        # in the other doctor's queue, under a ticket of that queue
        marks = {k: len(s.events) for k, s in sockets.items()}
        r = await rest(api, desk, "POST",
                       f"/queue-entries/{_entry(api, desk, queue_id, p2)}/transfer",
                       json={"doctor_id": other_doctor})
        assert r.status_code == 200, r.text
        for a, expected in ((p3, (1, 15)), (p1, (2, 30))):
            await told(api, sockets[a["id"]], marks[a["id"]], a, expected)
        moved = await told(api, sockets[p2["id"]], marks[p2["id"]], p2, (1, 0))
        assert moved["queue_id"] != queue_id and moved["ticket"] != ticket_of[p2["id"]]

        # A marker each patient sees, after all of the above: a booking of their own. A socket
        # receives a clinic's events in order, so once it is in, nothing earlier is on its way.
        markers = book_day(api, clinic, n=4, day=fresh_day(), first_hour=10)
        for a, m in zip(booked, markers, strict=True):
            rec = sockets[a["id"]]
            await rec.wait_for(lambda rec=rec, m=m: any(
                d["data"]["appointment_id"] == m["id"] for d in rec.named("appointment.created")))
        await staff.wait_for(lambda: {m["id"] for m in markers} <= {
            d["data"]["appointment_id"] for d in staff.named("appointment.created")})
        for a, m in zip(booked, markers, strict=True):
            seen = [d for _, d in sockets[a["id"]].events]
            assert find_ids(seen, "appointment_id") <= {a["id"], m["id"]}, a["patient"]["email"]
            assert find_ids(seen, "patient_id") <= {a["patient"]["user_id"]}
            text = json.dumps(seen)
            for other in booked:
                if other["patient"]["user_id"] != a["patient"]["user_id"]:
                    assert other["id"] not in text and other["patient"]["user_id"] not in text
            assert sockets[a["id"]].named("queue.updated") == []

        # nothing staff heard in queue.updated names a patient or an appointment
        updates = staff.named("queue.updated")
        assert len(updates) >= 7  # 4 check-ins, call, skip, transfer (two queues)
        text = json.dumps([d["data"] for d in updates])
        for a in (*booked, *markers):
            for secret in (a["id"], a["patient"]["user_id"], a["patient"]["email"],
                           a["patient"]["name"]):
                assert secret not in text
        for d in updates:
            assert set(d["data"]) == UPDATED_KEYS
            assert all(set(t) == {"ticket", "position", "eta_minutes"} for t in d["data"]["waiting"])
        for rec in (*sockets.values(), staff):
            await rec.close()

    asyncio.run(scenario())


def _entry(api, token: str, queue_id: str, appointment: dict[str, Any]) -> str:
    entries = queue_view(api, token, queue_id)["entries"]
    return next(str(e["id"]) for e in entries if e["appointment_id"] == appointment["id"])


def test_a_board_hears_its_queue_and_reads_nothing_else(server, api, clinic) -> None:
    day = fresh_day()
    mine = book_day(api, clinic, n=2, day=day)
    theirs = book_day(api, clinic, n=2, day=day, doctor=1, first_hour=12)
    queues = [{check_in(api, clinic, a)["queue_id"] for a in group} for group in (mine, theirs)]
    assert [len(q) for q in queues] == [1, 1] and queues[0] != queues[1]
    queue_a, queue_b = (str(q.pop()) for q in queues)
    desk = clinic["desk"]["token"]
    token = board_token(api, clinic, queue_a)

    async def scenario() -> dict[str, Any]:
        board, staff = Recorder(server.base_url), Recorder(server.base_url)
        await board.connect(token)
        await staff.connect(desk)
        # Events the board must not hear, then one it must: another queue's call, a booking,
        # this queue's call; another queue's pause, this queue's pause.
        assert (await rest(api, desk, "POST", f"/queues/{queue_b}/call-next")).status_code == 200
        booking = book_day(api, clinic, n=1, day=fresh_day())[0]
        called = await rest(api, desk, "POST", f"/queues/{queue_a}/call-next")
        assert called.status_code == 200, called.text
        assert (await rest(api, desk, "POST", f"/queues/{queue_b}/pause")).status_code == 200
        assert (await rest(api, desk, "POST", f"/queues/{queue_a}/pause")).status_code == 200
        await board.wait_for(lambda: any(d["data"]["paused"] for d in board.named("queue.updated")))
        await staff.wait_for(lambda: len([d for d in staff.named("queue.updated")
                                          if d["data"]["paused"]]) == 2)
        assert any(d["data"]["appointment_id"] == booking["id"]
                   for d in staff.named("appointment.created"))  # it was sent, to staff
        assert {e for e, _ in board.events} == {"queue.updated"}
        updates = [d["data"] for d in board.named("queue.updated")]
        assert [(u["queue_id"], u["paused"], u["called"]) for u in updates] == [
            (queue_a, False, [called.json()["ticket"]]), (queue_a, True, [called.json()["ticket"]])]
        text = json.dumps(board.events)
        for a in (*mine, *theirs, booking):
            assert a["id"] not in text and a["patient"]["user_id"] not in text

        # a board cannot join rooms or replay the log, not even its own queue's
        for room in (f"queue:{queue_b}", f"queue:{queue_a}", f"clinic:{clinic['id']}:staff",
                     f"user:{mine[0]['patient']['user_id']}"):
            ack = await board.call("subscribe", {"room": room})
            assert ack["ok"] is False and ack["error"]["code"] == "not_found", (room, ack)
        ack = await board.call("resume", {"clinic_id": clinic["id"], "after_seq": 0})
        assert ack["ok"] is False and ack["error"]["code"] == "not_found", ack
        assert {e for e, _ in board.events} == {"queue.updated"}
        for rec in (board, staff):
            await rec.close()
        return updates[-1]

    last = asyncio.run(scenario())

    r = api.as_(token, "GET", f"/boards/{queue_a}/state")
    assert r.status_code == 200, r.text
    state = r.json()
    assert set(state) == BOARD_KEYS
    assert {k: state[k] for k in BOARD_KEYS} == {k: last[k] for k in BOARD_KEYS}
    assert state["waiting"] == [{"ticket": queue_view(api, desk, queue_a)["entries"][1]["ticket"],
                                 "position": 1, "eta_minutes": 15}]
    r = api.as_(token, "GET", f"/boards/{queue_b}/state")
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    assert api.as_(None, "GET", f"/boards/{queue_a}/state").status_code == 401
    assert api.as_(desk, "GET", f"/boards/{queue_a}/state").status_code == 401  # a user's token
    for path in (f"/queues/{queue_a}", f"/appointments/{mine[0]['id']}",
                 f"/clinics/{clinic['id']}/members", "/users/me"):
        r = api.as_(token, "GET", path)
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated", (path, r.text)
    r = api.as_(token, "POST", f"/queues/{queue_a}/call-next")
    assert r.status_code == 401, r.text


def test_a_patient_checks_in_with_a_code_in_the_window(api, clinic) -> None:
    patient = clinic["patients"][3]
    later = [a for a in book_day(api, clinic, n=4, day=fresh_day()) if a["patient"] is patient]
    assert len(later) == 1
    appointment = later[0]
    token, desk = patient["token"], clinic["desk"]["token"]
    queue_id = check_in(api, clinic, book_day(api, clinic, n=1, day=fresh_day())[0])["queue_id"]

    r = api.as_(token, "POST", f"/queues/{queue_id}/call-next")
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    r = api.as_(token, "POST", f"/appointments/{appointment['id']}/check-in")
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    r = api.as_(token, "POST", f"/appointments/{appointment['id']}/check-in", json={"reason": "here"})
    assert r.status_code == 403, r.text

    loc = clinic["locations"][0]["id"]
    r = api.as_(desk, "GET", f"/clinics/{clinic['id']}/locations/{loc}/check-in-code")
    assert r.status_code == 200, r.text
    location_code = r.json()
    assert location_code["valid_for"] == "location" and location_code["target_id"] == loc
    assert api.as_(token, "GET", f"/clinics/{clinic['id']}/locations/{loc}/check-in-code"
                   ).status_code == 403
    r = api.as_(token, "POST", f"/appointments/{appointment['id']}/check-in",
                json={"code": location_code["code"]})
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text  # a month early
    assert "reception" in r.json()["detail"]

    # another appointment's link code (of this very patient) does not open this one
    other = book_day(api, clinic, n=4, day=fresh_day())[3]
    assert other["patient"] is patient
    r = api.as_(desk, "GET", f"/appointments/{other['id']}/check-in-code")
    assert r.status_code == 200 and r.json()["valid_for"] == "appointment", r.text
    r = api.as_(token, "POST", f"/appointments/{appointment['id']}/check-in",
                json={"code": r.json()["code"]})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "code", r.text
    r = api.as_(token, "POST", f"/appointments/{appointment['id']}/check-in",
                json={"code": location_code["code"][:-1] + ("B" if location_code["code"][-1] == "A"
                                                            else "A")})
    assert r.status_code == 400, r.text
    status = api.as_(desk, "GET", f"/appointments/{appointment['id']}").json()["status"]
    assert status == "scheduled"
    assert api.as_(desk, "GET", f"/appointments/{appointment['id']}/queue-position"
                   ).status_code == 404

    # within the window (opens an hour before the start): both kinds of code work. The desk
    # books these now, past the doctor's hours if need be (with a reason).
    now = datetime.now(ZoneInfo("UTC")).replace(second=0, microsecond=0)
    soon = []
    for doctor, minutes in ((0, 30), (1, 50)):
        r = api.as_(desk, "POST", "/appointments", json={
            "clinic_id": clinic["id"], "doctor_id": clinic["doctors"][doctor]["user_id"],
            "patient_id": patient["user_id"], "type": "in_person",
            "start": (now + timedelta(minutes=minutes)).isoformat(), "duration_minutes": 15,
            "location_id": loc, "override_reason": "walk-in test"})
        assert r.status_code == 201, r.text
        soon.append(r.json())
    link = api.as_(desk, "GET", f"/appointments/{soon[1]['id']}/check-in-code").json()["code"]
    for a, code in ((soon[0], location_code["code"]), (soon[1], link)):
        r = api.as_(token, "POST", f"/appointments/{a['id']}/check-in", json={"code": code})
        assert r.status_code == 200 and r.json()["status"] == "checked_in", r.text
        r = api.as_(token, "GET", f"/appointments/{a['id']}/queue-position")
        assert r.status_code == 200, r.text
        assert (r.json()["position"], r.json()["ahead"], r.json()["status"]) == (1, 0, "waiting")
    r = api.as_(token, "POST", f"/appointments/{soon[0]['id']}/check-in",
                json={"code": location_code["code"]})
    assert r.status_code == 409, r.text  # once only
