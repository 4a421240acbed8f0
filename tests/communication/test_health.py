"""GET /clinics/{id}/communication/health: each provider of the clinic's chains (and of the
defaults it falls back to), its breaker as every worker sees it, and its last five minutes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain import settings
from domain.communication import breakers
from domain.communication.providers.base import Unavailable


@pytest.fixture(scope="module")
def clinic(capi, clinic_factory, member_factory, sa_token) -> dict[str, Any]:
    c = clinic_factory()
    r = capi.as_(sa_token, "PUT", f"/clinics/{c['id']}/communication/config", json={
        "channels": {"email": {"providers": ["zeptomail", "local"],
                               "sender": {"from_address": "desk@health.test"}}},
        "credentials": {"zeptomail": {"api_key": "health-key-0001"}}})
    assert r.status_code == 200, r.text
    return {"id": c["id"], "admin": member_factory(c["id"], "CLINIC_ADMIN", tag="health-admin"),
            "doctor": member_factory(c["id"], "DOCTOR", tag="health-doc"),
            "other": member_factory(clinic_factory()["id"], "CLINIC_ADMIN", tag="health-other")}


def _health(capi, token: str, clinic_id: str) -> dict[str, Any]:
    r = capi.as_(token, "GET", f"/clinics/{clinic_id}/communication/health")
    assert r.status_code == 200, r.text
    return {p["provider"]: p for p in r.json()["providers"]} | {"_": r.json()}


def p95(values: list[float]) -> float:
    """percentile_cont(0.95): linear interpolation between the closest ranks."""
    v = sorted(values)
    pos = 0.95 * (len(v) - 1)
    low = int(pos)
    high = min(low + 1, len(v) - 1)
    return v[low] + (v[high] - v[low]) * (pos - low)


def _attempts(db, clinic_id: str, provider: str, rows: list[tuple[str, float, str]]) -> None:
    cid = uuid.UUID(clinic_id)
    message = uuid.uuid4()
    db.fetch("""INSERT INTO communication_messages (id, clinic_id, channel, kind, address, status)
                VALUES ($1, $2, 'email', 'test', 'health@x.test', 'sent')""", message, cid)
    for outcome, latency, age in rows:
        db.fetch("""INSERT INTO communication_attempts (message_id, clinic_id, provider, outcome,
                        latency_ms, at) VALUES ($1, $2, $3, $4, $5, now() - $6::text::interval)""",
                 message, cid, provider, outcome, latency, age)


def test_every_provider_in_use_with_its_breaker_and_last_five_minutes(capi, db, clinic,
                                                                      domain_layer):
    shown = _health(capi, clinic["admin"]["token"], clinic["id"])
    assert shown["_"]["window_seconds"] == 300
    assert set(shown) - {"_"} == {"zeptomail", "local"}
    assert shown["zeptomail"]["channels"] == ["email"]
    assert sorted(shown["local"]["channels"]) == ["email", "push", "sms", "whatsapp"]
    for name in ("zeptomail", "local"):
        assert shown[name]["breaker"] == {"state": "closed", "failure_count": 0, "opened_at": None}
        assert (shown[name]["attempts"], shown[name]["errors"]) == (0, 0)
        assert shown[name]["error_rate"] is None and shown[name]["p95_latency_ms"] is None

    recent = [float(10 * i) for i in range(1, 21)]  # 10 .. 200 ms
    outcomes = ["unavailable"] * 3 + ["unknown"] + ["rejected"] + ["sent"] * 15
    _attempts(db, clinic["id"], "zeptomail",
              [(o, lat, "1 second") for o, lat in zip(outcomes, recent, strict=True)]
              + [("skipped", 9999.0, "1 second")] * 2  # no request made: not an attempt
              + [("unavailable", 9999.0, "6 minutes")] * 5)  # outside the window
    _attempts(db, clinic["id"], "local", [("sent", 1.0, "2 seconds"), ("sent", 3.0, "2 seconds")])
    shown = _health(capi, clinic["admin"]["token"], clinic["id"])
    mail = shown["zeptomail"]
    assert (mail["attempts"], mail["errors"]) == (20, 4)
    assert mail["error_rate"] == 0.2
    assert mail["p95_latency_ms"] == pytest.approx(p95(recent)) == pytest.approx(190.5)
    assert (shown["local"]["attempts"], shown["local"]["errors"]) == (2, 0)
    assert shown["local"]["error_rate"] == 0.0
    assert shown["local"]["p95_latency_ms"] == pytest.approx(p95([1.0, 3.0]))

    # the breaker as the workers share it: opened by failures in this process, seen by the server
    threshold = settings.get().breaker_threshold

    async def trip() -> None:
        factory = await breakers.factory()
        # the threshold named: the process's factory may have been made under other settings
        # (another module of this process configured its own)
        breaker = await factory.get_breaker(breakers.circuit(uuid.UUID(clinic["id"]), "zeptomail"),
                                            threshold=threshold,
                                            ttl=settings.get().breaker_open_seconds)
        for _ in range(threshold):
            try:
                async with breaker:
                    raise Unavailable("down")
            except Unavailable:
                pass

    domain_layer.run(trip())
    shown = _health(capi, clinic["admin"]["token"], clinic["id"])
    assert shown["zeptomail"]["breaker"]["state"] == "opened"
    assert shown["zeptomail"]["breaker"]["opened_at"] is not None
    assert shown["local"]["breaker"]["state"] == "closed"  # per provider
    other = _health(capi, clinic["other"]["token"], _other_clinic(clinic))
    assert all(p["breaker"]["state"] == "closed" for k, p in other.items() if k != "_")


def _other_clinic(clinic: dict[str, Any]) -> str:
    return str(clinic["other"]["clinic_id"])


def test_who_may_read_it(capi, clinic):
    path = f"/clinics/{clinic['id']}/communication/health"
    assert capi.as_(clinic["doctor"]["token"], "GET", path).status_code == 403
    r = capi.as_(clinic["other"]["token"], "GET", path)
    assert r.status_code == 404 and clinic["id"] not in r.text
    assert capi.as_(None, "GET", path).status_code == 401
