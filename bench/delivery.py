"""Outbound delivery: messages per second through one worker, with the whole pipeline in the
path (claim, suppression, chain, the shared Redis breaker, the shared rate limit, the send, the
delivery log), to the local sink or to a local server speaking ZeptoMail's API.

    .venv/bin/python -m bench.delivery                       # 5,000 messages, local sink
    .venv/bin/python -m bench.delivery --provider zeptomail  # through HTTP to the ZeptoMail fake
    .venv/bin/python -m bench.delivery --messages 20000 --concurrency 100

The messages are enqueued before the worker starts; the figure is messages sent divided by the
time from the first send to the last (worker start-up excluded). CPU-seconds per process over
the same span show where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import cpu_by_process, other_cpu, prepared_stack


async def _enqueue(env: dict[str, str], clinic_id: uuid.UUID, n: int) -> None:
    os.environ.update(env)
    from domain import db, settings

    settings.get.cache_clear()
    from domain.communication.commands.messages import Content, enqueue

    db.engine().config["dsn"] = env["DATABASE_URL"]
    await db.engine().start_connection_pool(min_size=1, max_size=8)
    try:
        async def some(k: int) -> None:
            for i in range(k):
                await enqueue(clinic_id=clinic_id, channel="email", kind="bench",
                              address=f"patient{i}@bench.test",
                              content=Content(subject="Reminder", text="See you tomorrow at 10:00"))
        await asyncio.gather(*(some(n // 8 + (1 if j < n % 8 else 0)) for j in range(8)))
    finally:
        await db.engine().close_connection_pool()


def _db(env: dict[str, str]) -> Any:
    from tests.conftest import Db

    return Db(env["DATABASE_URL"])


@contextmanager
def _provider(kind: str) -> Iterator[dict[str, str]]:
    """Extra environment for the worker: the provider chain (global default) to use."""
    if kind == "local":
        yield {}
        return
    from tests.communication.fakes.zeptomail import zeptomail_server

    with zeptomail_server("bench-zeptomail-token") as fake:
        defaults = {"email": {"providers": ["zeptomail"],
                              "sender": {"from_address": "clinic@bench.test", "from_name": "Bench"},
                              "rate_per_second": 10000},
                    "credentials": {"zeptomail": {"api_key": fake.token}}}
        yield {"CAREWIRE_ZEPTOMAIL_URL": fake.url,
               "CAREWIRE_COMMUNICATION_DEFAULTS": json.dumps(defaults)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=50, help="the worker's --concurrency")
    ap.add_argument("--provider", choices=["local", "zeptomail"], default="local")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--profile", metavar="FILE", help="py-spy the worker into FILE (needs py-spy)")
    args = ap.parse_args()

    with prepared_stack() as env, _provider(args.provider) as extra:
        env = {**env, **extra}
        db = _db(env)
        clinic_id = uuid.uuid4()
        db.fetch("INSERT INTO clinics (id, name, timezone) VALUES ($1, 'Bench', 'Asia/Kolkata')",
                 clinic_id)
        started = time.perf_counter()
        asyncio.run(_enqueue(env, clinic_id, args.messages))
        print(f"enqueued {args.messages} messages in {time.perf_counter() - started:.1f} s")
        before = cpu_by_process()
        worker = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker",
                                   "--delivery-concurrency", str(args.concurrency)], env=env)
        spy = subprocess.Popen(["py-spy", "record", "-p", str(worker.pid), "-o", args.profile,
                                "-f", "raw", "-r", "200"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) \
            if args.profile else None
        try:
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                left = db.fetch("SELECT count(*) AS n FROM communication_messages "
                                "WHERE status IN ('queued', 'sending')")[0]["n"]
                if left == 0:
                    break
                time.sleep(0.5)  # polling another process's progress
            after = cpu_by_process()
        finally:
            if spy:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            worker.terminate()
            worker.wait()
        span = db.fetch(
            """SELECT count(*) AS n, extract(epoch FROM max(sent_at) - min(sent_at)) AS s,
                      count(*) FILTER (WHERE status <> 'sent') AS not_sent
               FROM communication_messages""")[0]
        lat = db.fetch("""SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
                                 percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
                          FROM communication_attempts""")[0]
        seconds = float(span["s"] or 0)
        wcpu = after.get(worker.pid, ("", 0.0))[1] - before.get(worker.pid, ("", 0.0))[1]
        print(f"provider {args.provider}, concurrency {args.concurrency}: {span['n']} messages, "
              f"{span['not_sent']} not sent, {seconds:.2f} s first→last send: "
              f"{span['n'] / seconds if seconds else float('nan'):,.0f} messages/s per worker")
        print(f"provider call p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms")
        print(f"worker CPU {wcpu:.1f} s ({wcpu / max(span['n'], 1) * 1e6:,.0f} µs per message); "
              f"others: {other_cpu(before, after, {worker.pid, os.getpid()})}")


if __name__ == "__main__":
    main()
