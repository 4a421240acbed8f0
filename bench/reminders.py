"""Reminder drift: the time from a reminder's due time to the provider receiving its mail, with
10,000 reminders falling due within the same minute and two workers sharing them.

    .venv/bin/python -m bench.reminders                        # 10,000 over 60 s, 2 workers
    .venv/bin/python -m bench.reminders --reminders 2000 --spread 10
    .venv/bin/python -m bench.reminders --profile /tmp/r       # + py-spy of each worker

The path measured is the production one from the job table on: the scheduler (sleeping until
the next due job), Taskiq on Redis Streams, the reminder job (claim_once, the appointment read,
dispatch: preferences, facts, templates, the messages enqueued with NOTIFY, the inbox row), the
delivery loop and an HTTP server speaking ZeptoMail's API in this process, which stamps each
arrival. Set-up goes around the slow parts: the clinic, its provider and its people over REST,
the appointments by one SQL statement (one doctor, 5 minutes apart, months ahead), and the
reminders planned by `reminders.sync` in this process with an offset per appointment chosen so
that the due times are spread evenly over `--spread` seconds starting `--lead` seconds after
planning begins. Drift = arrival at the provider - due time (`scheduled_jobs.run_at`); the
stages (due -> job started -> marked sent by the delivery loop -> arrival) show where it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.harness import ADMIN, carewire_servers, cpu_by_process, other_cpu, prepared_stack

TOKEN = "bench-zeptomail-token"
DAY = 86400


class Stamped(list[dict[str, Any]]):
    """The fake's accepted mails, each stamped with the wall-clock time it arrived."""

    def append(self, item: dict[str, Any]) -> None:
        item["received_at"] = time.time()
        super().append(item)


def _setup(base_url: str, patients: int, provider: str) -> tuple[str, str, list[str]]:
    """A clinic sending email through the ZeptoMail fake (or the local sink, the default chain),
    a doctor and patients (REST)."""
    with httpx.Client(base_url=base_url + "/api/v1", timeout=60) as http:
        r = http.post("/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        r.raise_for_status()
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = http.post("/clinics", headers=auth, json={"name": "Bench", "timezone": "Asia/Kolkata"})
        r.raise_for_status()
        clinic = r.json()["id"]
        if provider == "zeptomail":
            r = http.put(f"/clinics/{clinic}/communication/config", headers=auth, json={
                "channels": {"email": {"providers": ["zeptomail"],
                                       "sender": {"from_address": "desk@bench.test"},
                                       "rate_per_second": 10000}},
                "credentials": {"zeptomail": {"api_key": TOKEN}}})
            r.raise_for_status()
        people = []
        for role, n in (("DOCTOR", 1), ("PATIENT", patients)):
            for i in range(n):
                r = http.post(f"/clinics/{clinic}/members", headers=auth, json={
                    "email": f"{role.lower()}{i}@bench.test", "name": f"{role.title()} {i}",
                    "role": role})
                r.raise_for_status()
                people.append(r.json()["user_id"])
        return clinic, people[0], people[1:]


async def _plan(env: dict[str, str], clinic: str, doctor: str, patients: list[str], n: int,
                first_due: datetime, spread: float) -> float:
    """Insert the appointments and plan one reminder each; returns the seconds planning took."""
    os.environ.update(env)
    from domain import db, settings

    settings.get.cache_clear()
    from domain.notifications import reminders
    from domain.scheduling.queries import load_appointment

    db.engine().config["dsn"] = env["DATABASE_URL"]
    await db.engine().start_connection_pool(min_size=1, max_size=8)
    try:
        started = time.perf_counter()
        dues = [first_due + timedelta(seconds=spread * i / n) for i in range(n)]
        # months ahead, 5 minutes apart: offset i = start i - due i, a whole number of seconds
        offsets = [60 * DAY + 300 * i for i in range(n)]
        ids = [uuid.uuid4() for _ in range(n)]
        await db.fetch(
            """INSERT INTO appointments (id, clinic_id, doctor_id, patient_id, type, status,
                                         starts_at, ends_at)
               SELECT x.id, $1, $2, x.p, 'video', 'scheduled', x.s, x.s + interval '5 minutes'
               FROM unnest($3::uuid[], $4::uuid[], $5::timestamptz[]) AS x(id, p, s)""",
            uuid.UUID(clinic), uuid.UUID(doctor), ids,
            [uuid.UUID(patients[i % len(patients)]) for i in range(n)],
            [d + timedelta(seconds=o) for d, o in zip(dues, offsets, strict=True)])
        queue = list(zip(ids, offsets, strict=True))

        async def planner() -> None:
            while queue:
                appointment_id, offset = queue.pop()
                async with db.transaction():
                    await reminders.sync(await load_appointment(appointment_id), [offset])
        await asyncio.gather(*(planner() for _ in range(8)))
        return time.perf_counter() - started
    finally:
        await db.engine().close_connection_pool()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: none"
    return (f"{name}: p50 {_pct(values, 50) * 1000:7.1f} ms  p95 {_pct(values, 95) * 1000:7.1f} ms"
            f"  p99 {_pct(values, 99) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reminders", type=int, default=10000)
    ap.add_argument("--spread", type=float, default=60.0, help="seconds their due times span")
    ap.add_argument("--lead", type=float, default=45.0,
                    help="seconds from the start of planning to the first due time")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=10, help="each worker's --concurrency")
    ap.add_argument("--delivery-concurrency", type=int, default=50)
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--provider", choices=["zeptomail", "local"], default="zeptomail",
                    help="zeptomail: the HTTP fake in this process stamps arrivals; local: the "
                         "local sink, and 'receipt' is the time the delivery loop marked it sent "
                         "(no fake competing for the CPU)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--profile", metavar="PREFIX",
                    help="py-spy each worker into PREFIX.<n>.txt (raw stacks; needs py-spy)")
    args = ap.parse_args()

    from tests.communication.fakes.zeptomail import zeptomail_server
    from tests.conftest import Db

    with prepared_stack() as env, zeptomail_server(TOKEN) as zepto:
        zepto.accepted = Stamped()
        env = {**env, "CAREWIRE_ZEPTOMAIL_URL": zepto.url,  # the clinic's key is stored sealed
               "CAREWIRE_CREDENTIALS_KEY": f"b1:{base64.b64encode(secrets.token_bytes(32)).decode()}"}
        with carewire_servers([env]) as (srv,):
            clinic, doctor, patients = _setup(srv.base_url, args.patients, args.provider)
        db = Db(env["DATABASE_URL"])
        log = tempfile.NamedTemporaryFile(prefix="bench-reminders-", suffix=".log", delete=False)
        procs = [subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker",
                                   "--concurrency", str(args.concurrency),
                                   "--delivery-concurrency", str(args.delivery_concurrency)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
                 for _ in range(args.workers)]
        spies: list[subprocess.Popen[bytes]] = []
        try:
            deadline = time.monotonic() + 30
            while not db.fetch("SELECT 1 FROM scheduled_jobs WHERE task = 'events.prune'"):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start")
                time.sleep(0.1)  # polling another process's start-up
            time.sleep(1)  # both workers up (the first scheduled the periodic jobs)
            first_due = datetime.now(UTC) + timedelta(seconds=args.lead)
            took = asyncio.run(_plan(env, clinic, doctor, patients, args.reminders, first_due,
                                     args.spread))
            late = (datetime.now(UTC) - first_due).total_seconds()
            print(f"planned {args.reminders} reminders in {took:.1f} s; first due "
                  f"{-late:.1f} s later, the last {args.spread:.0f} s after it")
            if args.profile:
                spies = [subprocess.Popen(["py-spy", "record", "-p", str(p.pid), "-o",
                                           f"{args.profile}.{i}.txt", "-f", "raw", "-r", "100"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for i, p in enumerate(procs)]
            before = cpu_by_process()
            deadline = time.monotonic() + args.spread + args.lead + args.timeout
            while time.monotonic() < deadline:
                got = db.fetch("SELECT count(*) AS n FROM communication_messages "
                               "WHERE kind = 'appointment.reminder' AND status = 'sent'")[0]["n"]
                if got >= args.reminders and (args.provider == "local"
                                              or len(zepto.accepted) >= args.reminders):
                    break
                time.sleep(0.5)  # polling the workers' progress
            after = cpu_by_process()
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
        _report(db, zepto.accepted, args, before, after, {p.pid for p in procs})


def _report(db: Any, accepted: list[dict[str, Any]], args: argparse.Namespace,
            before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
            pids: set[int]) -> None:
    rows = db.fetch(
        """SELECT m.id::text AS id, j.job_key, extract(epoch FROM j.run_at)::float8 AS due,
                  extract(epoch FROM r.finished_at)::float8 AS started,
                  extract(epoch FROM m.sent_at)::float8 AS sent
           FROM scheduled_jobs j
           JOIN job_runs r ON r.job_key = j.job_key
           JOIN communication_messages m  -- dedupe_key: {job_key}:{user}:{channel}
             ON m.kind = 'appointment.reminder'
            AND regexp_replace(m.dedupe_key, ':[^:]+:[^:]+$', '') = j.job_key
           WHERE j.task = 'notifications.reminder' AND j.attempt = 1""")
    by_message = {r["id"]: r for r in rows}
    arrivals: dict[str, list[float]] = {}
    for mail in list(accepted):
        arrivals.setdefault(mail["body"]["client_reference"], []).append(mail["received_at"])
    if args.provider == "local":
        arrivals = {r["id"]: [r["sent"]] for r in rows if r["sent"] is not None}
    drift, to_job, to_sent, to_provider = [], [], [], []
    duplicates = 0
    for message_id, row in by_message.items():
        got = arrivals.get(message_id)
        if not got:
            continue
        duplicates += len(got) - 1
        drift.append(min(got) - row["due"])
        to_job.append(row["started"] - row["due"])
        if row["sent"] is not None:
            to_sent.append(row["sent"] - row["started"])
            to_provider.append(min(got) - row["started"])
    planned = db.fetch("SELECT count(*) AS n FROM scheduled_jobs "
                       "WHERE task = 'notifications.reminder'")[0]["n"]
    wcpu = sum(after.get(p, ("", 0.0))[1] - before.get(p, ("", 0.0))[1] for p in pids)
    print(f"{args.reminders} reminders over {args.spread:.0f} s, {args.workers} workers "
          f"(--concurrency {args.concurrency}): {planned} planned, {len(drift)} received, "
          f"{duplicates} duplicates, {planned - len(drift)} missing")
    print(_line("drift (due -> provider receipt)", drift))
    print(_line("  due -> job started          ", to_job))
    print(_line("  job started -> provider     ", to_provider))
    print(_line("  job started -> marked sent  ", to_sent))
    print(f"workers' CPU {wcpu:.1f} s ({wcpu / max(len(drift), 1) * 1e6:,.0f} µs per reminder); "
          f"others: {other_cpu(before, after, pids | {os.getpid()})}")


if __name__ == "__main__":
    main()
