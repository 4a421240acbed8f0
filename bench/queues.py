"""Waiting-room benchmark: a clinic day of check-ins and consultations over REST, with every
patient's phone listening on a real Socket.IO socket.

What it does, end to end, all on 127.0.0.1:
  1. Embedded PostgreSQL + Redis (or TEST_DATABASE_URL / TEST_REDIS_URL), `carewire migrate`,
     `create-admin`, one `carewire serve` (the same way as bench/fanout.py). Over REST: a
     clinic with a location, `--doctors` DOCTOR members with all-day schedules, one RECEPTIONIST
     (real password, real login), and `--doctors` x `--patients` PATIENT members, then one
     appointment per patient, `--patients` per doctor, 15 minutes apart, on one day.
  2. Patient tokens. The patients are real PATIENT members created over REST, but without a
     password: 800 argon2 hashes plus 800 argon2 logins would cost this 2-core machine minutes.
     Instead the bench does what a login does after the password check, in this process: one
     row in `sessions` per socket and an access token from the project's own
     `domain.identity.tokens.issue_access_token` (same secret as the server). The hub checks
     those tokens exactly as it checks a login's, so each socket joins `user:{patient id}`.
     `--sockets` above the patient count gives some patients a second device (own session).
  3. `--workers` client processes open the patient sockets (bench/light_client.py), plus one
     waiting-room board socket per queue (board tokens from POST /queues/{id}/board-token).
  4. The day: per doctor, a desk lane checks the patients in (in appointment order) and a
     doctor lane runs call-next -> start -> complete for each, waiting only for someone to be
     checked in. All lanes share `--concurrency` requests in flight (keep-alive HTTP/1.1).
  5. Reports REST operations/s, events committed/s (the clinic's sequence, by type), deliveries
     to the sockets per second (counted in the clients, checked against the events' audiences),
     and check-in -> `queue.position` latency on the checked-in patient's sockets: receipt time
     in the client minus time.time() just before the check-in request was written.

Run (from the repository root, with the project's venv):
    .venv/bin/python bench/queues.py --quick     # 3 doctors x 10 patients, smoke run (~30 s)
    .venv/bin/python bench/queues.py             # 20 doctors x 40 patients, 1,000 sockets
Every phase has a timeout; the run ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:  # run as a script: bench.* and tests.* from the repository
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402  (the path set-up above comes first)
    ADMIN,
    ClientProcesses,
    RawHttp,
    ServerMeter,
    background_load,
    calibrate,
    carewire_servers,
    machine_busy,
    pct,
    prepared_stack,
    raise_fd_limit,
)

DESK_PASSWORD = "desk-password-1"
ALL_DAY = [{"weekday": d, "start": "06:00", "end": "22:00"} for d in range(7)]


# ---------------------------------------------------------------------------------------------
# client worker processes: one Sink per socket, so a receipt is known per socket


def worker_main(conn: Any, host: str, port: int) -> None:
    raise_fd_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop
    import uvloop

    uvloop.run(_worker(conn, host, port))


def _sink_class() -> Any:
    from bench.light_client import Sink

    class EventSink(Sink):
        """Takes every Socket.IO event (not one name): counts by type and keeps the first
        receipt time of `queue.position` per appointment."""

        def __init__(self) -> None:
            super().__init__("")
            self.event = b'42["'
            self.by_type: Counter[str] = Counter()
            self.first_position: dict[str, float] = {}

        def record(self, payload: bytes, now: float) -> None:
            try:
                name, envelope = json.loads(payload[2:])
            except ValueError:
                self.unexpected += 1
                return
            self.total += 1
            self.by_type[name] += 1
            if name == "queue.position":
                self.first_position.setdefault(envelope["data"]["appointment_id"], now)

    return EventSink


async def _worker(conn: Any, host: str, port: int) -> None:
    EventSink = _sink_class()
    loop = asyncio.get_running_loop()
    clients: list[Any] = []
    sinks: list[Any] = []
    while True:
        cmd, args = await loop.run_in_executor(None, conn.recv)
        if cmd == "connect":
            conn.send(await _connect_many(EventSink, sinks, clients, host, port, *args))
        elif cmd == "totals":
            by_type: Counter[str] = Counter()
            for s in sinks:
                by_type.update(s.by_type)
            conn.send({"total": sum(s.total for s in sinks), "by_type": dict(by_type),
                       "connected": sum(s.connected for s in sinks),
                       "closed": sum(s.closed for s in sinks),
                       "unexpected": sum(s.unexpected for s in sinks)})
        elif cmd == "positions":
            conn.send([(aid, t) for s in sinks for aid, t in s.first_position.items()])
        elif cmd == "close":
            for c in clients:
                c.close()
            await asyncio.sleep(0.2)  # let the close frames leave
            conn.send(True)
            return


async def _connect_many(sink_class: Any, sinks: list[Any], clients: list[Any], host: str,
                        port: int, tokens: list[str], concurrency: int, limit: float
                        ) -> dict[str, Any]:
    """One socket per token, `concurrency` connects at a time, each with its own sink."""
    from bench.light_client import open_client

    sem = asyncio.Semaphore(concurrency)
    errors: Counter[str] = Counter()

    async def one(token: str) -> None:
        async with sem:
            sink = sink_class()
            try:
                clients.append(await open_client(sink, host, port, {"token": token}, limit))
                sinks.append(sink)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1

    t0 = time.time()
    await asyncio.gather(*(one(t) for t in tokens))
    return {"ok": len(tokens) - sum(errors.values()), "errors": errors.most_common(3),
            "seconds": time.time() - t0}


class Workers(ClientProcesses):
    def __init__(self, n: int, host: str, port: int) -> None:
        super().__init__(n, worker_main, host, port)

    def totals(self) -> dict[str, Any]:
        rows = self.ask("totals", timeout=30)
        by_type: Counter[str] = Counter()
        for r in rows:
            by_type.update(r["by_type"])
        return {"total": sum(r["total"] for r in rows), "by_type": dict(by_type),
                **{k: sum(r[k] for r in rows) for k in ("connected", "closed", "unexpected")}}


# ---------------------------------------------------------------------------------------------
# the stack


@contextlib.contextmanager
def stack() -> Iterator[tuple[dict[str, str], Any]]:
    with prepared_stack() as env, carewire_servers([env]) as (server,):
        yield env, server


async def _gather_limited(coros: list[Any], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def _call(http: Any, token: str, method: str, path: str, expect: int, **kw: Any) -> Any:
    r = await http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
    if r.status_code != expect:
        raise RuntimeError(f"{method} {path} -> {r.status_code}: {r.text[:300]}")
    return r.json()


async def build_day(base_url: str, doctors: int, patients: int) -> dict[str, Any]:
    """The clinic, its people and the day's appointments, over REST."""
    import httpx

    async with httpx.AsyncClient(base_url=base_url + "/api/v1", timeout=60) as http:
        async def login(email: str, password: str) -> str:
            r = await http.post("/auth/login", json={"email": email, "password": password})
            r.raise_for_status()
            return str(r.json()["access_token"])

        sa = await login(*ADMIN)
        clinic = await _call(http, sa, "POST", "/clinics", 201, json={
            "name": "Bench clinic", "timezone": "UTC", "settings": {"booking_horizon_days": 30}})
        cid = clinic["id"]
        loc = (await _call(http, sa, "POST", f"/clinics/{cid}/locations", 201,
                           json={"name": "Main", "address": "Bench street 1"}))["id"]

        def member(role: str, i: int, **extra: Any) -> Any:
            return _call(http, sa, "POST", f"/clinics/{cid}/members", 201, json={
                "email": f"{role.lower()}-{i}-{secrets.token_hex(3)}@bench.test",
                "name": f"{role.title()} {i}", "role": role, **extra})

        t0 = time.monotonic()
        desk = await member("RECEPTIONIST", 0, location_id=loc, password=DESK_PASSWORD)
        desk_token = await login(desk["email"], DESK_PASSWORD)
        docs = await _gather_limited([member("DOCTOR", i, location_id=loc)
                                      for i in range(doctors)], 8)
        pats = await _gather_limited([member("PATIENT", i) for i in range(doctors * patients)], 8)
        t_members = time.monotonic() - t0
        await _gather_limited([
            _call(http, sa, "PUT", f"/clinics/{cid}/doctors/{d['user_id']}/schedule", 200, json={
                "rules": [{**r, "location_id": loc} for r in ALL_DAY], "slot_minutes": 15})
            for d in docs], 8)

        day = (datetime.now(UTC) + timedelta(days=1)).date()
        first = datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC)
        plan = []  # (doctor index, slot, patient)
        for d in range(doctors):
            for k in range(patients):
                plan.append((d, k, pats[d * patients + k]))
        t0 = time.monotonic()
        booked = await _gather_limited([
            _call(http, desk_token, "POST", "/appointments", 201, json={
                "clinic_id": cid, "doctor_id": docs[d]["user_id"], "patient_id": p["user_id"],
                "type": "in_person", "start": (first + timedelta(minutes=15 * k)).isoformat(),
                "duration_minutes": 15, "location_id": loc})
            for d, k, p in plan], 8)
        t_booking = time.monotonic() - t0
        per_doctor: list[list[dict[str, Any]]] = [[] for _ in range(doctors)]
        for (d, _, p), a in zip(plan, booked, strict=True):
            per_doctor[d].append({"id": a["id"], "patient_id": p["user_id"]})
        return {"clinic_id": cid, "desk_token": desk_token, "sa_token": sa,
                "doctors": [d["user_id"] for d in docs], "per_doctor": per_doctor,
                "patients": [p["user_id"] for p in pats], "t_members": t_members,
                "t_booking": t_booking}


async def patient_tokens(env: dict[str, str], patient_ids: list[str], sockets: int
                         ) -> tuple[list[str], dict[str, int]]:
    """One session row and one access token per socket (socket i belongs to patient i mod n):
    what a login does after its argon2 check, with the project's own token code."""
    import asyncpg

    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CAREWIRE_JWT_SECRET",
                                           "CAREWIRE_ACCESS_TOKEN_TTL_SECONDS")})
    from domain import settings
    from domain.identity.tokens import issue_access_token

    settings.get.cache_clear()
    owners = [patient_ids[i % len(patient_ids)] for i in range(sockets)]
    rows = [(uuid.uuid4(), uuid.UUID(o)) for o in owners]
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        await conn.executemany(
            "INSERT INTO sessions (id, user_id, expires_at, ip, user_agent) "
            "VALUES ($1, $2, now() + interval '1 day', '127.0.0.1', 'bench/queues.py')", rows)
    finally:
        await conn.close()
    return [issue_access_token(u, s)[0] for s, u in rows], dict(Counter(owners))


async def board_tokens(base_url: str, desk_token: str, queue_ids: list[str]) -> list[str]:
    import httpx

    async with httpx.AsyncClient(base_url=base_url + "/api/v1", timeout=60) as http:
        issued = await _gather_limited([
            _call(http, desk_token, "POST", f"/queues/{q}/board-token", 201) for q in queue_ids], 8)
    return [b["token"] for b in issued]


async def clinic_seq(dsn: str, clinic_id: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(
            "SELECT coalesce(max(last_seq), 0) FROM clinic_sequences WHERE clinic_id = $1",
            uuid.UUID(clinic_id)))
    finally:
        await conn.close()


async def events_after(dsn: str, clinic_id: str, after: int) -> list[tuple[str, list[str]]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT type, audience FROM events WHERE clinic_id = $1 AND seq > $2",
                                uuid.UUID(clinic_id), after)
    finally:
        await conn.close()
    return [(r["type"], list(r["audience"])) for r in rows]


# ---------------------------------------------------------------------------------------------
# the day


async def open_queues(port: int, day: dict[str, Any]) -> dict[int, str]:
    """A queue opens with its first check-in: check in each doctor's first patient (before the
    sockets connect and the clock starts) and note the queue."""
    headers = {"Authorization": f"Bearer {day['desk_token']}"}
    queue_of: dict[int, str] = {}
    http = RawHttp("127.0.0.1", port)
    try:
        for d, appointments in enumerate(day["per_doctor"]):
            a = appointments[0]["id"]
            for method, path in (("POST", f"/api/v1/appointments/{a}/check-in"),
                                 ("GET", f"/api/v1/appointments/{a}/queue-position")):
                status, body = await http.request(method, path, b"", headers)
                if status != 200:
                    raise RuntimeError(f"{method} {path} -> {status}: {body[:300]!r}")
            queue_of[d] = json.loads(body)["queue_id"]
    finally:
        await http.close()
    return queue_of


async def run_day(port: int, day: dict[str, Any], queue_of: dict[int, str], concurrency: int,
                  limit: float) -> dict[str, Any]:
    """Per doctor, a desk lane (check-ins, in appointment order) and a doctor lane (call-next,
    start, complete, as soon as someone is waiting); `concurrency` requests in flight overall.
    Each doctor's first patient is already waiting (open_queues)."""
    headers = {"Authorization": f"Bearer {day['desk_token']}"}
    sem = asyncio.Semaphore(concurrency)
    checkin_sent: dict[str, float] = {}
    op_ms: dict[str, list[float]] = {"check-in": [], "call-next": [], "start": [], "complete": []}
    retried: Counter[str] = Counter()
    reconnects: Counter[str] = Counter()

    async def op(http: RawHttp, kind: str, path: str, stamp: str | None = None) -> Any:
        """One operation; a 500 (a deadlock between check-in and call-next, see the server log)
        rolled the whole transaction back, so it is retried, counted, up to 5 times. The time
        recorded runs from the first attempt."""
        async with sem:
            t_wall = time.time()
            t0 = time.perf_counter()
            for _ in range(6):
                try:
                    status, body = await http.request("POST", path, b"", headers)
                except (asyncio.IncompleteReadError, ConnectionError):
                    # uvicorn closes a keep-alive connection idle for 5 s (a lane that waited
                    # that long for its turn): the request was not read; open a new one
                    await http.close()
                    http.writer = None
                    reconnects[kind] += 1
                    status, body = await http.request("POST", path, b"", headers)
                if status != 500:
                    break
                retried[kind] += 1
            op_ms[kind].append(1000 * (time.perf_counter() - t0))
        if status != 200:
            raise RuntimeError(f"{kind} {path} -> {status}: {body[:300]!r}")
        if stamp is not None:
            checkin_sent[stamp] = t_wall
        return json.loads(body)

    async def doctor(d: int) -> None:
        appointments = day["per_doctor"][d]
        arrived = asyncio.Semaphore(1)  # the first one, checked in by open_queues

        async def desk() -> None:
            http = RawHttp("127.0.0.1", port)
            try:
                for a in appointments[1:]:
                    await op(http, "check-in", f"/api/v1/appointments/{a['id']}/check-in", a["id"])
                    arrived.release()
            finally:
                await http.close()

        async def consult() -> None:
            http = RawHttp("127.0.0.1", port)
            try:
                for _ in appointments:
                    await arrived.acquire()
                    entry = await op(http, "call-next", f"/api/v1/queues/{queue_of[d]}/call-next")
                    await op(http, "start", f"/api/v1/queue-entries/{entry['id']}/start")
                    await op(http, "complete", f"/api/v1/queue-entries/{entry['id']}/complete")
            finally:
                await http.close()

        await asyncio.gather(desk(), consult())

    finished = True
    try:
        await asyncio.wait_for(
            asyncio.gather(*(doctor(d) for d in range(len(day["per_doctor"])))), limit)
    except TimeoutError:  # report what was done; the figures say the day did not finish
        finished = False
    return {"finished": finished, "checkin_sent": checkin_sent, "op_ms": op_ms,
            "retried": dict(retried),
            "reconnects": dict(reconnects)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"doctors": args.doctors, "patients_per_doctor": args.patients,
                           "sockets": args.sockets, "concurrency": args.concurrency,
                           "workers": args.workers}
    t_setup = time.monotonic()
    with stack() as (env, server):
        dsn = env["DATABASE_URL"]
        meter = ServerMeter([server.proc.pid])
        print(f"[setup] carewire on port {server.port} ready in {time.monotonic() - t_setup:.1f}s",
              flush=True)
        day = asyncio.run(build_day(server.base_url, args.doctors, args.patients))
        n_pat = len(day["patients"])
        print(f"[setup] {args.doctors} doctors, {n_pat} patients in {day['t_members']:.1f}s; "
              f"{n_pat} appointments in {day['t_booking']:.1f}s", flush=True)
        t0 = time.monotonic()
        sockets = max(args.sockets, n_pat)
        tokens, per_patient = asyncio.run(patient_tokens(env, day["patients"], sockets))
        res["t_tokens"] = time.monotonic() - t0

        queue_of = asyncio.run(open_queues(server.port, day))
        boards = asyncio.run(board_tokens(server.base_url, day["desk_token"],
                                          list(queue_of.values())))
        workers = Workers(args.workers, "127.0.0.1", server.port)
        try:
            return day_phase(args, res, server, meter, day, queue_of, tokens, per_patient, boards,
                             workers, dsn)
        finally:
            workers.close()


def day_phase(args: argparse.Namespace, res: dict[str, Any], server: Any, meter: Any,
              day: dict[str, Any], queue_of: dict[int, str], tokens: list[str],
              per_patient: dict[str, int], boards: list[str], workers: Workers,
              dsn: str) -> dict[str, Any]:
    W = args.workers
    everyone = tokens + boards
    per_worker = [everyone[k::W] for k in range(W)]
    conc = max(1, args.connect_concurrency // W)
    t0 = time.monotonic()
    rows = workers.ask("connect", [[chunk, conc, args.connect_timeout] for chunk in per_worker],
                       timeout=args.connect_timeout + len(everyone) / 20 + 60)
    connected = sum(r["ok"] for r in rows)
    errors: Counter[str] = Counter()
    for r in rows:
        for e, n in r["errors"]:
            errors[e] += n
    t_connect = time.monotonic() - t0
    print(f"[connect] {connected}/{len(everyone)} sockets ({len(tokens)} patient, {len(boards)} "
          f"board) in {t_connect:.1f}s" + (f"; errors: {errors.most_common(3)}" if errors else ""),
          flush=True)
    if connected < len(everyone):
        raise RuntimeError(f"only {connected} of {len(everyone)} sockets connected: {errors}")
    res["connect"] = {"sockets": connected, "seconds": t_connect}
    time.sleep(1.0)  # let connects settle before the clock starts

    # the day -----------------------------------------------------------------------------------
    seq0 = asyncio.run(clinic_seq(dsn, day["clinic_id"]))
    base = workers.totals()["total"]
    cpu0, (busy0, idle0) = meter.cpu(), machine_busy()
    t_start = time.time()
    done = asyncio.run(run_day(server.port, day, queue_of, args.concurrency, args.phase_timeout))
    t_rest = time.time() - t_start
    cpu_rest = meter.cpu() - cpu0
    seq1 = asyncio.run(clinic_seq(dsn, day["clinic_id"]))
    committed = asyncio.run(events_after(dsn, day["clinic_id"], seq0))

    # what the connected sockets should get: each event once per socket in its audience rooms
    # (a patient's sockets are in user:{id}; a board socket is in queue:{id}, nothing else)
    per_room = {f"user:{p}": n for p, n in per_patient.items()}
    per_room.update({f"queue:{q}": 1 for q in queue_of.values()})
    expected = sum(per_room.get(r, 0) for _, audience in committed for r in set(audience))
    t = _wait(workers, base + expected, args.stall, time.monotonic() + args.phase_timeout)
    cpu1, (busy1, idle1) = meter.cpu(), machine_busy()
    delivered = t["total"] - base
    last = t["last_change"]
    span = last - t_start

    # check-in -> queue.position receipt, on the checked-in patient's sockets
    sent = done["checkin_sent"]
    lat = [1000 * (recv - sent[aid]) for rows_ in workers.ask("positions", timeout=60)
           for aid, recv in rows_ if aid in sent]
    n_ops = sum(len(v) for v in done["op_ms"].values())
    by_type = Counter(typ for typ, _ in committed)
    res["day"] = {
        "finished": done["finished"], "rest_ops": n_ops, "retried_500": done["retried"],
        "reconnects": done["reconnects"],
        "deadlocks_in_server_log": Path(server.log).read_text(errors="replace").count(
            "DeadlockDetectedError"), "rest_seconds": t_rest, "ops_per_s": n_ops / t_rest,
        "op_p50_ms": {k: pct(v, 50) for k, v in done["op_ms"].items()},
        "op_p99_ms": {k: pct(v, 99) for k, v in done["op_ms"].items()},
        "events_committed": seq1 - seq0, "committed_by_type": dict(by_type.most_common()),
        "committed_per_s": (seq1 - seq0) / t_rest,
        "deliveries_expected": expected, "deliveries": delivered,
        "delivered_by_type": t["by_type"],
        "delivery_seconds": span, "deliveries_per_s": delivered / span if span > 0 else math.nan,
        "server_cpu_s": cpu1 - cpu0, "server_cpu_s_rest_phase": cpu_rest,
        "machine_busy": (busy1 - busy0) / ((busy1 - busy0) + (idle1 - idle0) or 1),
        "checkins": len(sent), "position_receipts": len(lat),
        "position_receipts_expected": sum(per_patient.get(_patient_of(day, aid), 0)
                                          for aid in sent),
        "position_p50_ms": pct(lat, 50), "position_p90_ms": pct(lat, 90),
        "position_p99_ms": pct(lat, 99), "position_max_ms": max(lat) if lat else math.nan,
        "sockets_closed": t["closed"], "unexpected_frames": t["unexpected"],
    }
    return res


def _patient_of(day: dict[str, Any], appointment_id: str) -> str:
    index = day.setdefault("_patient_of", {a["id"]: a["patient_id"]
                                           for appts in day["per_doctor"] for a in appts})
    return str(index[appointment_id])


def _wait(workers: Workers, expected: int, stall: float, deadline: float) -> dict[str, Any]:
    """Poll the client workers until `expected` deliveries arrived, nothing arrived for `stall`
    seconds, or the deadline passed; `last_change` is the wall time the count last grew."""
    last_total, last_change, last_wall = -1, time.monotonic(), time.time()
    while True:
        t = workers.totals()
        now = time.monotonic()
        if t["total"] != last_total:
            last_total, last_change, last_wall = t["total"], now, time.time()
        if t["total"] >= expected or now - last_change > stall or now > deadline:
            return {**t, "last_change": last_wall}
        time.sleep(0.01)  # polling client counters, bounded by stall and deadline


def report(res: dict[str, Any]) -> str:
    d = res["day"]
    rows = [
        ("clinic day", f"{res['doctors']} doctors x {res['patients_per_doctor']} patients; "
                       f"{res['connect']['sockets']:,} sockets ({res['sockets']:,} patient + "
                       f"{res['doctors']} boards)"),
        ("REST operations", f"{d['rest_ops']:,} in {d['rest_seconds']:.1f} s = "
                            f"{d['ops_per_s']:,.0f}/s at concurrency {res['concurrency']}"
                            + ("" if d["finished"] else "  (NOT FINISHED: --phase-timeout hit)")),
        ("  500s retried", (", ".join(f"{k} {v}" for k, v in d["retried_500"].items()) or "none")
         + f"  (deadlocks in the server log: {d['deadlocks_in_server_log']}; idle keep-alive "
         f"connections reopened: {sum(d['reconnects'].values())})"),
        ("  p50 / p99 ms", "; ".join(f"{k} {d['op_p50_ms'][k]:.0f} / {d['op_p99_ms'][k]:.0f}"
                                     for k in d["op_p50_ms"])),
        ("events committed", f"{d['events_committed']:,} = {d['committed_per_s']:,.0f}/s  ("
                             + ", ".join(f"{k} {v:,}" for k, v in d["committed_by_type"].items())
                             + ")"),
        ("deliveries to sockets", f"{d['deliveries']:,} of {d['deliveries_expected']:,} expected "
                                  f"in {d['delivery_seconds']:.1f} s = "
                                  f"{d['deliveries_per_s']:,.0f}/s"),
        ("  by type", ", ".join(f"{k} {v:,}" for k, v in sorted(d["delivered_by_type"].items()))),
        ("check-in -> queue.position", f"p50 {d['position_p50_ms']:.0f} / p90 "
                                       f"{d['position_p90_ms']:.0f} / p99 {d['position_p99_ms']:.0f}"
                                       f" ms (max {d['position_max_ms']:.0f}); "
                                       f"{d['position_receipts']:,} receipts of "
                                       f"{d['position_receipts_expected']:,} expected, "
                                       f"{d['checkins']} check-ins"),
        ("server CPU", f"{d['server_cpu_s']:.1f} s = {100 * d['server_cpu_s'] / d['delivery_seconds']:.0f}%"
                       f" of a core; machine {100 * d['machine_busy']:.0f}% busy (2 cores)"),
        ("sockets closed / odd frames", f"{d['sockets_closed']} / {d['unexpected_frames']}"),
    ]
    width = max(len(k) for k, _ in rows)
    head = f"carewire waiting-room day ({res['workers']} client processes)"
    out = [head, "-" * len(head)] + [f"{k:<{width}}  {v}" for k, v in rows]
    out.append(f"(machine {100 * res['background_load']:.0f}% busy before the run; speed check "
               f"{res['speed_ms_before']:.0f} ms before / {res['speed_ms_after']:.0f} ms after: a "
               "1M-step Python loop, lower is faster)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="carewire waiting-room benchmark: a clinic day over REST, patients on sockets",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 doctors x 10 patients, 38 sockets")
    parser.add_argument("--doctors", type=int, default=20)
    parser.add_argument("--patients", type=int, default=40, help="per doctor")
    parser.add_argument("--sockets", type=int, default=1000,
                        help="patient sockets (at least one per patient; the rest are second "
                        "devices)")
    parser.add_argument("--concurrency", type=int, default=20, help="REST requests in flight")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="per socket")
    parser.add_argument("--stall", type=float, default=10.0,
                        help="stop waiting for deliveries after this long without progress")
    parser.add_argument("--phase-timeout", type=float, default=600.0,
                        help="upper bound on the day (and on waiting for its deliveries)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.doctors, args.patients, args.sockets = 3, 10, 38
    raise_fd_limit()
    load = background_load()
    speed = calibrate()
    if load > 0.1:
        print(f"[warning] the machine was {100 * load:.0f}% busy before the run; figures will be "
              "low and noisy", flush=True)
    res = measure(args)
    res.update(background_load=load, speed_ms_before=speed, speed_ms_after=calibrate())
    print()
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
