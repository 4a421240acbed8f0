"""Clinics, plans and subscriptions for the plan suites (test_plans, test_subscriptions,
test_quota), made over the REST API as a clinic would."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from tests.queue_fixtures import TZ, make_clinic


def plan_clinic(api: Any, sa_token: str, clinic_factory: Any, member_factory: Any, *,
                doctors: int = 2, patients: int = 3, **billing: Any) -> dict[str, Any]:
    """A clinic whose in-person visits wait for payment (so a covered one visibly moves to
    `scheduled`), with an admin, an accountant and patients who may book many visits."""
    c = make_clinic(api, sa_token, clinic_factory, member_factory, doctors=doctors,
                    patients=patients, patient_max_future_appointments=500,
                    payment_required_types=["in_person"], payment_window_minutes=60,
                    billing={"currency": "INR", "refund_notice_minutes": 1440, **billing})
    c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="padmin")
    c["accountant"] = member_factory(c["id"], "ACCOUNTANT", tag="pacct")
    return c


def make_plan(api: Any, c: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"clinic_id": c["id"], "name": f"Plan {datetime.now().timestamp()}",
            "price": 120000, "interval": "year", **fields}
    r = api.as_(c["admin"]["token"], "POST", "/billing/plans", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def subscribe(api: Any, c: dict[str, Any], plan: dict[str, Any], patient: dict[str, Any],
              token: str | None = None) -> dict[str, Any]:
    r = api.as_(token or patient["token"], "POST", "/billing/subscriptions",
                json={"clinic_id": c["id"], "plan_id": plan["id"],
                      "patient_id": patient["user_id"]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def slot(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).isoformat()


def booking(c: dict[str, Any], patient: dict[str, Any], start: str, *, doctor: int = 0,
            kind: str = "in_person") -> dict[str, Any]:
    return {"clinic_id": c["id"], "doctor_id": c["doctors"][doctor]["user_id"],
            "patient_id": patient["user_id"], "type": kind, "start": start,
            "location_id": c["locations"][0]["id"]}


def soon(days: int) -> date:
    return (datetime.now(TZ) + timedelta(days=days)).date()


async def storm(base: str, token: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Every booking at once, over as many connections as bookings."""
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        return await asyncio.gather(*(client.post(
            "/api/v1/appointments", json=b, headers={"Authorization": f"Bearer {token}"})
            for b in bodies))
