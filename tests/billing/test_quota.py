"""Plan coverage of bookings: quota claimed atomically (never above the quota, never below
zero), a covered `pending_payment` booking moves to `scheduled`, and a cancellation inside the
clinic's refund policy gives the unit back, once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.billing.plan_fixtures import (
    booking,
    make_plan,
    plan_clinic,
    slot,
    soon,
    storm,
    subscribe,
)
from tests.queue_fixtures import fresh_day


@pytest.fixture(scope="module")
def clinic(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    return plan_clinic(api, sa_token, clinic_factory, member_factory, doctors=5, patients=4,
                       refund_notice_minutes=4 * 1440)


def usage(api: Any, token: str, sub: dict[str, Any]) -> dict[str, Any]:
    r = api.as_(token, "GET", f"/billing/subscriptions/{sub['id']}")
    assert r.status_code == 200, r.text
    return {u["appointment_type"]: u for u in r.json()["usage"]}


def claims(db: Any, sub: dict[str, Any]) -> list[dict[str, Any]]:
    return db.fetch("SELECT * FROM billing_quota_claims WHERE subscription_id = $1",
                    uuid.UUID(sub["id"]))


def book(api: Any, c: dict[str, Any], patient: dict[str, Any], start: str, **kw: Any
         ) -> dict[str, Any]:
    r = api.as_(patient["token"], "POST", "/appointments", json=booking(c, patient, start, **kw))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_50_concurrent_bookings_cover_exactly_k(server, api, db, clinic) -> None:
    k = 7
    patient = clinic["patients"][0]
    plan = make_plan(api, clinic, quotas={"in_person": k}, trial_days=30)
    sub = subscribe(api, clinic, plan, patient)
    assert sub["status"] == "trialing"
    day = fresh_day()
    bodies = [booking(clinic, patient, slot(day, 8 + i // 4, 15 * (i % 4)), doctor=d)
              for d in range(5) for i in range(10)]
    answers = asyncio.run(storm(server.base_url, patient["token"], bodies))
    assert [r.status_code for r in answers] == [201] * 50, [r.text for r in answers
                                                            if r.status_code != 201][:3]
    statuses = [r.json()["status"] for r in answers]
    assert statuses.count("scheduled") == k and statuses.count("pending_payment") == 50 - k
    use = usage(api, patient["token"], sub)["in_person"]
    assert use == {"appointment_type": "in_person", "quota": k, "used": k}
    held = claims(db, sub)
    covered = {r.json()["id"] for r in answers if r.json()["status"] == "scheduled"}
    assert {str(c["appointment_id"]) for c in held} == covered
    rows = db.fetch("SELECT used FROM billing_quota_usage WHERE subscription_id = $1",
                    uuid.UUID(sub["id"]))
    assert [r["used"] for r in rows] == [k]
    # the covered ones carry the reason in their history; the others still wait for payment
    first = api.as_(patient["token"], "GET", f"/appointments/{next(iter(covered))}").json()
    assert [h["to_status"] for h in first["history"]] == ["pending_payment", "scheduled"]


def test_cancel_inside_policy_gives_the_unit_back_once(api, db, clinic) -> None:
    patient = clinic["patients"][1]
    plan = make_plan(api, clinic, quotas={"in_person": 2}, trial_days=10)
    sub = subscribe(api, clinic, plan, patient)
    day = fresh_day()  # a month ahead: inside the 4-day notice
    a = book(api, clinic, patient, slot(day, 9))
    b = book(api, clinic, patient, slot(day, 10))
    c = book(api, clinic, patient, slot(day, 11))
    assert [a["status"], b["status"], c["status"]] == ["scheduled", "scheduled", "pending_payment"]
    assert usage(api, patient["token"], sub)["in_person"]["used"] == 2
    r = api.as_(patient["token"], "POST", f"/appointments/{a['id']}/cancel", json={"reason": "x"})
    assert r.status_code == 200, r.text
    assert usage(api, patient["token"], sub)["in_person"]["used"] == 1
    again = api.as_(clinic["desk"]["token"], "POST", f"/appointments/{a['id']}/cancel",
                    json={"reason": "again"})
    assert again.status_code == 409
    assert usage(api, patient["token"], sub)["in_person"]["used"] == 1
    released = [x for x in claims(db, sub) if x["released_at"] is not None]
    assert [str(x["appointment_id"]) for x in released] == [a["id"]]
    d = book(api, clinic, patient, slot(day, 12))
    assert d["status"] == "scheduled"
    assert usage(api, patient["token"], sub)["in_person"]["used"] == 2


def test_cancel_outside_policy_keeps_the_unit_used(api, db, clinic) -> None:
    patient = clinic["patients"][2]
    plan = make_plan(api, clinic, quotas={"in_person": 3}, trial_days=10)
    sub = subscribe(api, clinic, plan, patient)
    late = book(api, clinic, patient, slot(soon(2), 9), doctor=4)  # 2 days < 4 days' notice
    assert late["status"] == "scheduled"
    r = api.as_(clinic["desk"]["token"], "POST", f"/appointments/{late['id']}/cancel",
                json={"reason": "late"})
    assert r.status_code == 200, r.text
    assert usage(api, patient["token"], sub)["in_person"]["used"] == 1
    assert [x["released_at"] for x in claims(db, sub)] == [None]


def test_unlimited_uncovered_types_and_cancelled_subscriptions(api, db, clinic) -> None:
    patient = clinic["patients"][3]
    plan = make_plan(api, clinic, quotas={"in_person": None}, trial_days=10)
    sub = subscribe(api, clinic, plan, patient)
    day = fresh_day()
    booked = [book(api, clinic, patient, slot(day, 8, 15 * i), doctor=1) for i in range(4)]
    assert {b["status"] for b in booked} == {"scheduled"}
    assert usage(api, patient["token"], sub)["in_person"] == {
        "appointment_type": "in_person", "quota": None, "used": 4}
    video = book(api, clinic, patient, slot(day, 12), doctor=1, kind="video")
    assert video["status"] == "scheduled"  # video needs no payment here, and no plan covers it
    assert len(claims(db, sub)) == 4
    r = api.as_(patient["token"], "POST", f"/billing/subscriptions/{sub['id']}/cancel",
                json={"at_period_end": False})
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    after = book(api, clinic, patient, slot(day, 13), doctor=1)
    assert after["status"] == "pending_payment"
    assert len(claims(db, sub)) == 4


def test_50_concurrent_desk_bookings_across_doctors_cover_exactly_k(server, api, db, clinic,
                                                                     member_factory) -> None:
    """Staff bookings for one patient with five doctors run side by side (no patient turn, one
    lock per doctor): only the guarded claim keeps the quota."""
    k = 11
    patient = member_factory(clinic["id"], "PATIENT", tag="desk-quota")
    plan = make_plan(api, clinic, quotas={"in_person": k}, trial_days=30)
    sub = subscribe(api, clinic, plan, patient)
    day = fresh_day()
    bodies = [{**booking(clinic, patient, slot(day, 8 + i // 4, 15 * (i % 4)), doctor=d),
               "duration_minutes": 15}
              for i in range(10) for d in range(5)]
    answers = asyncio.run(storm(server.base_url, clinic["desk"]["token"], bodies))
    assert [r.status_code for r in answers] == [201] * 50, [r.text for r in answers
                                                            if r.status_code != 201][:3]
    assert [r.json()["status"] for r in answers].count("scheduled") == k
    assert usage(api, patient["token"], sub)["in_person"]["used"] == k
    assert len(claims(db, sub)) == k


def test_concurrent_cancels_and_bookings_keep_used_equal_to_held_claims(
        server, api, db, clinic, member_factory) -> None:
    """Cancels (inside the policy) and new bookings at once: every unit given back once, and
    `used` is always the claims still held, never above the quota nor below zero."""
    k = 6
    patient = member_factory(clinic["id"], "PATIENT", tag="churn")
    plan = make_plan(api, clinic, quotas={"in_person": k}, trial_days=30)
    sub = subscribe(api, clinic, plan, patient)
    day = fresh_day()
    first = [book(api, clinic, patient, slot(day, 8 + i // 5), doctor=i % 5) for i in range(k)]
    assert {a["status"] for a in first} == {"scheduled"}
    headers = {"Authorization": f"Bearer {clinic['desk']['token']}"}

    async def churn() -> list[Any]:
        import httpx

        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=120,
                                     limits=httpx.Limits(max_connections=60)) as client:
            cancels = [client.post(f"/appointments/{a['id']}/cancel", json={"reason": "churn"},
                                   headers=headers) for a in first for _ in range(3)]
            books = [client.post("/appointments", headers=headers, json={
                **booking(clinic, patient, slot(day, 12 + i // 4, 15 * (i % 4)), doctor=i % 5),
                "duration_minutes": 15}) for i in range(20)]
            return list(await asyncio.gather(*cancels, *books))

    answers = asyncio.run(churn())
    codes = [r.status_code for r in answers]
    assert all(c < 500 for c in codes), codes
    cancel_codes = codes[:3 * k]
    assert cancel_codes.count(200) == k and cancel_codes.count(409) == 2 * k, cancel_codes
    assert codes[3 * k:] == [201] * 20
    held = [c for c in claims(db, sub) if c["released_at"] is None]
    released = [c for c in claims(db, sub) if c["released_at"] is not None]
    assert {str(c["appointment_id"]) for c in released} == {a["id"] for a in first}
    used = usage(api, patient["token"], sub)["in_person"]["used"]
    assert used == len(held) <= k
    # the bookings that came after the cancels got the units back: all k are in use again
    covered_new = [r for r in answers[3 * k:] if r.json()["status"] == "scheduled"]
    assert len(covered_new) == len(held)
