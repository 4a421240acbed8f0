"""Scheduling figures through the real server: availability latency (1 doctor x 30 days,
20 doctors x 7 days) and bookings per second with many concurrent clients.

    .venv/bin/python -m bench.scheduling [--bookings 2000] [--concurrency 50]

Starts its own embedded PostgreSQL and Redis (or TEST_DATABASE_URL / TEST_REDIS_URL) and one
`carewire serve`; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests import servers

TZ = ZoneInfo("Asia/Kolkata")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main(bookings: int, concurrency: int, rounds: int) -> None:
    with servers.database() as dsn, servers.redis() as redis_url:
        env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis_url,
               "CAREWIRE_JWT_SECRET": secrets.token_urlsafe(48), "CAREWIRE_LOG_LEVEL": "WARNING",
               "CAREWIRE_LOGIN_ATTEMPTS_PER_IP": "100000"}
        for args in (["migrate"], ["create-admin", "--email", "b@bench.test", "--password",
                                   "bench-password-1"]):
            assert servers.cli(env, *args).returncode == 0
        srv = servers.Server(env)
        srv.start()
        try:
            asyncio.run(measure(srv.base_url, bookings, concurrency, rounds))
        finally:
            srv.stop()


async def measure(base_url: str, bookings: int, concurrency: int, rounds: int) -> None:
    if True:
        if True:
            async with httpx.AsyncClient(base_url=base_url + "/api/v1", timeout=60,
                                         limits=httpx.Limits(max_connections=concurrency)) as c:
                tok = (await c.post("/auth/login", json={"email": "b@bench.test",
                                                         "password": "bench-password-1"})
                       ).json()["access_token"]
                h = {"Authorization": f"Bearer {tok}"}
                clinic = (await c.post("/clinics", headers=h,
                                       json={"name": "Bench", "timezone": "Asia/Kolkata"})).json()
                cid = clinic["id"]
                loc = (await c.post(f"/clinics/{cid}/locations", headers=h,
                                    json={"name": "Main"})).json()["id"]
                doctors = []
                for i in range(20):
                    d = (await c.post(f"/clinics/{cid}/members", headers=h, json={
                        "email": f"doc{i}@bench.test", "name": f"Doc {i}", "role": "DOCTOR",
                        "location_id": loc})).json()["user_id"]
                    await c.put(f"/clinics/{cid}/doctors/{d}/schedule", headers=h, json={
                        "rules": [{"weekday": w, "start": s, "end": e, "location_id": loc}
                                  for w in range(6) for s, e in (("09:00", "13:00"),
                                                                 ("14:00", "18:00"))],
                        "slot_minutes": 15})
                    doctors.append(d)
                patient = (await c.post(f"/clinics/{cid}/members", headers=h, json={
                    "email": "p@bench.test", "name": "Pat", "role": "PATIENT"})).json()["user_id"]

                start = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
                start += timedelta(days=1)
                slots = [(d, start + timedelta(days=day, hours=9, minutes=15 * k))
                         for d in doctors for day in range(0, 60) for k in range(16)
                         if (start + timedelta(days=day)).weekday() < 6]  # no Sunday hours
                slots = slots[:bookings]
                sem = asyncio.Semaphore(concurrency)
                latencies: list[float] = []

                async def book(doctor: str, when: datetime) -> int:
                    async with sem:
                        t = time.perf_counter()
                        r = await c.post("/appointments", headers=h, json={
                            "clinic_id": cid, "doctor_id": doctor, "patient_id": patient,
                            "type": "in_person", "location_id": loc, "start": when.isoformat()})
                        latencies.append((time.perf_counter() - t) * 1000)
                        return r.status_code

                t0 = time.perf_counter()
                codes = await asyncio.gather(*(book(d, w) for d, w in slots))
                elapsed = time.perf_counter() - t0
                ok = codes.count(201)
                print(f"bookings: {ok}/{len(codes)} created in {elapsed:.1f} s -> "
                      f"{ok / elapsed:.0f} bookings/s at concurrency {concurrency}; latency "
                      f"p50 {pct(latencies, .5):.1f} ms, p95 {pct(latencies, .95):.1f} ms")

                async def availability(doctor: str, days: int) -> float:
                    t = time.perf_counter()
                    r = await c.get(f"/clinics/{cid}/doctors/{doctor}/availability", headers=h,
                                    params={"from": start.isoformat(),
                                            "to": (start + timedelta(days=days)).isoformat()})
                    assert r.status_code == 200, r.text
                    return (time.perf_counter() - t) * 1000

                one = [await availability(doctors[0], 30) for _ in range(rounds)]
                print(f"availability, 1 doctor x 30 days: p50 {pct(one, .5):.1f} ms, "
                      f"p95 {pct(one, .95):.1f} ms ({rounds} requests)")
                twenty = []
                for _ in range(max(rounds // 5, 5)):
                    t = time.perf_counter()
                    await asyncio.gather(*(availability(d, 7) for d in doctors))
                    twenty.append((time.perf_counter() - t) * 1000)
                print(f"availability, 20 doctors x 7 days (20 parallel requests): p50 "
                      f"{pct(twenty, .5):.1f} ms, p95 {pct(twenty, .95):.1f} ms; mean per "
                      f"request {statistics.mean(one):.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bookings", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    a = parser.parse_args()
    main(a.bookings, a.concurrency, a.rounds)
