"""Socket.IO fan-out benchmark for carewire (and, with --baseline, for stock python-socketio or,
with --baseline node, for the Node.js socket.io server).

What it does, end to end, all on 127.0.0.1:
  1. carewire mode: embedded PostgreSQL + Redis (or TEST_DATABASE_URL / TEST_REDIS_URL),
     `carewire migrate`, `create-admin`, then `--processes` x `carewire serve`; over REST a
     clinic, a RECEPTIONIST member of it and that member's access token.
     --baseline: `--processes` x bench/plain_server.py (stock python-socketio; with more than one
     process they share rooms through Redis' AsyncRedisManager).
     --baseline node: one bench/node_server/server.js (socket.io 4.8, same room and trigger;
     `npm ci` into bench/node_server/node_modules first).
  2. `--workers` client processes open `--clients` real Socket.IO websocket connections in all
     (bench/light_client.py: hand-made Engine.IO/Socket.IO over raw asyncio + uvloop), spread
     round-robin over the server processes. Every socket is in the one broadcast room:
     clinic:{id}:staff for carewire, one room for the baseline.
  3. Measures
     (a) connects/s and server CPU-s per 1,000 connects;
     (b) server RSS per connection (psutil, before/after, after a small warm-up batch);
     (c) broadcast throughput: `--broadcasts` triggers (carewire: PATCH /api/v1/clinics/{id};
         baseline: POST /emit) sent `--trigger-concurrency` at a time, deliveries/s counted in the
         clients until all arrived, plus server CPU-s per 1,000 deliveries;
     (d) write -> socket latency with every client connected: `--samples` triggers one at a
         time (each waits for its full fan-out, then `--gap`), latency = receipt time in the
         client - time.time() just before the request, over every delivery.

Run (from the repository root, with the project's venv):
    .venv/bin/python bench/fanout.py                       # carewire, 5000 clients (~2-4 min)
    .venv/bin/python bench/fanout.py --clients 500         # quick run (~30 s)
    .venv/bin/python bench/fanout.py --baseline            # stock python-socketio, same load
    .venv/bin/python bench/fanout.py --baseline node       # Node.js socket.io 4.8, same load
    .venv/bin/python bench/fanout.py --processes 2         # two gateway processes
    .venv/bin/python bench/fanout.py --trigger-process     # + hub-only CPU: triggers and the
                                                           # relay in a second process
    .venv/bin/python bench/fanout.py --profile /tmp/p.txt  # py-spy the server during (c)
Add --json FILE to keep the figures. Every phase has a timeout; the run ends by itself.
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
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
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
    cpu_by_process,
    machine_busy,
    other_cpu,
    own_cpu,
    pct,
    prepared_stack,
    raise_fd_limit,
)

EVENT = "clinic.updated"


# ---------------------------------------------------------------------------------------------
# client worker processes


def worker_main(conn: Any, host: str, ports: list[int], auth: dict[str, Any]) -> None:
    raise_fd_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when we stop
    import uvloop

    uvloop.run(_worker(conn, host, ports, auth))


async def _worker(conn: Any, host: str, ports: list[int], auth: dict[str, Any]) -> None:
    from bench.light_client import Sink, SioClient

    loop = asyncio.get_running_loop()
    sink = Sink(EVENT)
    clients: list[SioClient] = []
    while True:
        cmd, args = await loop.run_in_executor(None, conn.recv)
        if cmd == "connect":
            conn.send(await _connect_many(sink, clients, host, ports, auth, *args))
        elif cmd == "reset":
            sink.reset(keep_times=bool(args))
            conn.send(True)
        elif cmd == "total":
            last = max((e[2] for e in sink.per_seq.values()), default=0.0)
            conn.send({"total": sink.total, "last": last,
                       "max_seq": max(sink.per_seq, default=0), "connected": sink.connected,
                       "closed": sink.closed, "unexpected": sink.unexpected})
        elif cmd == "stats":
            conn.send({seq: (e[0], e[1], e[2], e[3]) for seq, e in sink.per_seq.items()})
        elif cmd == "close":
            for c in clients:
                c.close()
            await asyncio.sleep(0.2)  # let the close frames leave
            conn.send(True)
            return


async def _connect_many(sink: Any, clients: list[Any], host: str, ports: list[int],
                        auth: dict[str, Any], first: int, count: int, concurrency: int,
                        limit: float) -> dict[str, Any]:
    """Open `count` sockets, `concurrency` at a time; socket i goes to ports[i % len(ports)]."""
    from bench.light_client import open_client

    sem = asyncio.Semaphore(concurrency)
    errors: Counter[str] = Counter()

    async def one(index: int) -> None:
        async with sem:
            try:
                clients.append(await open_client(sink, host, ports[index % len(ports)], auth,
                                                 limit))
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1

    t0 = time.time()
    await asyncio.gather(*(one(first + k) for k in range(count)))
    return {"ok": count - sum(errors.values()), "failed": sum(errors.values()),
            "errors": errors.most_common(3), "t0": t0, "t1": time.time()}


class Workers(ClientProcesses):
    def __init__(self, n: int, host: str, ports: list[int], auth: dict[str, Any]) -> None:
        super().__init__(n, worker_main, host, ports, auth)

    def totals(self) -> dict[str, Any]:
        rows = self.ask("total", timeout=30)
        return {"total": sum(r["total"] for r in rows), "last": max(r["last"] for r in rows),
                "max_seq": max(r["max_seq"] for r in rows),
                "connected": sum(r["connected"] for r in rows),
                "closed": sum(r["closed"] for r in rows),
                "unexpected": sum(r["unexpected"] for r in rows)}

    def cpu(self) -> float:
        import psutil

        total = 0.0
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(p.pid).cpu_times()
                total += t.user + t.system
        return total


# ---------------------------------------------------------------------------------------------
# the system under test


class Target:
    """Servers plus how to trigger one broadcast."""

    name = ""
    pids: list[int]
    ports: list[int]
    auth: dict[str, Any]
    #: Where the triggers go (default: the first socket server).
    trigger_port: int | None = None
    #: --trigger-process: the processes that hold the sockets (the hub), measured on their own;
    #: `pids` then also holds the trigger process.
    hub_pids: list[int] | None = None

    def trigger_request(self, i: int) -> tuple[str, str, dict[str, Any], dict[str, str]]:
        raise NotImplementedError


GC_STATS = str(Path(tempfile.gettempdir()) / f"carewire-bench-gc-{os.getpid()}")


def server_env(env: dict[str, str], gc_spec: str | None, gc_stats: bool) -> dict[str, str]:
    """--server-gc / --gc-stats: tune or time the servers' garbage collector through
    bench/gc_tune/sitecustomize.py (the application is not touched)."""
    if not gc_spec and not gc_stats:
        return env
    path = os.pathsep.join(p for p in (str(BENCH / "gc_tune"), env.get("PYTHONPATH")) if p)
    env = {**env, "PYTHONPATH": path, "CAREWIRE_BENCH_GC": gc_spec or ""}
    if gc_stats:
        env["CAREWIRE_BENCH_GC_STATS"] = GC_STATS
    return env


def gc_seconds(pids: list[int]) -> tuple[float, list[int], list[float]] | None:
    """Seconds the servers spent collecting garbage so far, and collections and seconds per
    generation."""
    total, counts, per_gen = 0.0, [0, 0, 0], [0.0, 0.0, 0.0]
    for pid in pids:
        try:
            data = json.loads(Path(f"{GC_STATS}.{pid}").read_text())
        except (OSError, ValueError):
            return None
        total += sum(data["seconds"])
        counts = [a + b for a, b in zip(counts, data["count"], strict=True)]
        per_gen = [a + b for a, b in zip(per_gen, data["seconds"], strict=True)]
    return total, counts, per_gen


@contextlib.contextmanager
def carewire_target(processes: int, gc_spec: str | None = None, gc_stats: bool = False,
                    trigger_process: bool = False) -> Iterator[Target]:
    import httpx

    with prepared_stack() as env:
        admin_email, admin_password = ADMIN
        hub_env = server_env(env, gc_spec, gc_stats)
        if trigger_process:
            # the socket processes only listen to Redis and fan out; the relay runs in the
            # trigger process, which takes every REST write and holds no socket
            hub_env = {**hub_env, "CAREWIRE_RELAY_IN_PROCESS": "false"}
        envs = [hub_env] * processes
        if trigger_process:
            envs.append(server_env(env, gc_spec, gc_stats))
        with carewire_servers(envs) as procs:
            api = procs[-1 if trigger_process else 0].base_url + "/api/v1"
            with httpx.Client(base_url=api, timeout=30) as http:
                def login(email: str, password: str) -> str:
                    r = http.post("/auth/login", json={"email": email, "password": password})
                    r.raise_for_status()
                    return str(r.json()["access_token"])

                sa = login(admin_email, admin_password)
                bearer = {"Authorization": f"Bearer {sa}"}
                r = http.post("/clinics", headers=bearer, json={
                    "name": "Bench clinic", "timezone": "UTC", "settings": {}})
                r.raise_for_status()
                clinic = r.json()["id"]
                staff_email = f"staff-{secrets.token_hex(4)}@bench.test"
                r = http.post(f"/clinics/{clinic}/members", headers=bearer, json={
                    "email": staff_email, "name": "Bench staff", "role": "RECEPTIONIST",
                    "password": "staff-password-1"})
                r.raise_for_status()
                staff = login(staff_email, "staff-password-1")

            target = Target()
            target.name = "carewire"
            target.pids = [s.proc.pid for s in procs if s.proc]
            target.ports = [s.port for s in procs[:processes]]
            target.auth = {"token": staff}
            if trigger_process:
                target.trigger_port = procs[-1].port
                target.hub_pids = target.pids[:processes]

            def trigger(i: int) -> tuple[str, str, dict[str, Any], dict[str, str]]:
                return ("PATCH", f"/api/v1/clinics/{clinic}", {"name": f"Bench clinic {i}"}, bearer)

            target.trigger_request = trigger  # type: ignore[method-assign]
            target.logs = [str(s.log) for s in procs]  # type: ignore[attr-defined]
            yield target


NODE_SERVER = BENCH / "node_server"


def node_command() -> list[str]:
    """`node bench/node_server/server.js`, after `npm ci` there (pinned by its package-lock)."""
    import shutil

    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise RuntimeError("--baseline node needs node and npm on PATH")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=NODE_SERVER, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"npm ci in {NODE_SERVER} failed:\n{done.stdout}{done.stderr}")
    return [node, str(NODE_SERVER / "server.js")]


@contextlib.contextmanager
def baseline_target(processes: int, gc_spec: str | None = None, gc_stats: bool = False,
                    kind: str = "python") -> Iterator[Target]:
    import httpx

    from tests import servers

    if kind == "node" and processes != 1:
        raise SystemExit("--baseline node runs one server process (no shared adapter)")
    base_cmd = node_command() if kind == "node" else [sys.executable, str(BENCH / "plain_server.py")]

    @contextlib.contextmanager
    def maybe_redis() -> Iterator[str | None]:
        if processes == 1:
            yield None
        else:
            with servers.redis() as url:
                yield url

    with maybe_redis() as redis_url:
        procs: list[tuple[subprocess.Popen[bytes], int, Path]] = []
        try:
            for _ in range(processes):
                port = servers.free_port()
                log = Path(tempfile.mkstemp(prefix=f"{kind}-sio-", suffix=".log")[1])
                cmd = [*base_cmd, "--port", str(port)]
                if redis_url:
                    cmd += ["--redis-url", redis_url]
                with log.open("ab") as out:
                    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                            env=server_env(dict(os.environ), gc_spec, gc_stats))
                procs.append((proc, port, log))
            for proc, port, log in procs:
                deadline = time.monotonic() + 30
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{kind} baseline server exited:\n{log.read_text()[-2000:]}")
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{kind} baseline server not ready:\n{log.read_text()[-2000:]}")
                    time.sleep(0.05)  # polling readiness, bounded by the deadline
            target = Target()
            target.name = "Node.js socket.io" if kind == "node" else "plain python-socketio"
            target.pids = [p.pid for p, _, _ in procs]
            target.ports = [port for _, port, _ in procs]
            target.auth = {"token": "bench"}

            def trigger(i: int) -> tuple[str, str, dict[str, Any], dict[str, str]]:
                return ("POST", "/emit", {"i": i}, {})

            target.trigger_request = trigger  # type: ignore[method-assign]
            target.logs = [str(log) for _, _, log in procs]  # type: ignore[attr-defined]
            yield target
        finally:
            for proc, _, _ in procs:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


# ---------------------------------------------------------------------------------------------
# measurements


def wait_for_deliveries(workers: Workers, expected: int, stall: float, deadline: float
                        ) -> dict[str, Any]:
    """Poll the client workers until `expected` deliveries arrived, nothing arrived for `stall`
    seconds, or the deadline passed."""
    last_total, last_change = -1, time.monotonic()
    while True:
        t = workers.totals()
        now = time.monotonic()
        if t["total"] != last_total:
            last_total, last_change = t["total"], now
        if t["total"] >= expected or now - last_change > stall or now > deadline:
            return t
        time.sleep(0.005 if expected - t["total"] < 1000 else 0.05)  # polling client counters


async def trigger(target: Target, http: RawHttp, i: int) -> None:
    method, path, body, headers = target.trigger_request(i)
    status, text = await http.request(method, path, json.dumps(body).encode(), headers)
    if status >= 300:
        raise RuntimeError(f"trigger {method} {path} -> {status}: {text[:300]!r}")


async def fire(target: Target, indices: list[int], concurrency: int) -> list[float]:
    """Send the triggers, `concurrency` at a time (one keep-alive connection each)."""
    durations: list[float] = []
    todo = iter(indices)

    async def lane() -> None:
        http = RawHttp("127.0.0.1", target.trigger_port or target.ports[0])
        try:
            for i in todo:
                t0 = time.perf_counter()
                await trigger(target, http, i)
                durations.append(time.perf_counter() - t0)
        finally:
            await http.close()

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return durations


class Profiler:
    """py-spy on the first server process, raw (collapsed) stacks, stopped with SIGINT."""

    def __init__(self, pid: int, out: str | None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.out = out
        if not out:
            return
        spy = Path(sys.executable).with_name("py-spy")
        exe = str(spy) if spy.exists() else "py-spy"
        try:
            self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "250",
                                          "--format", "raw", "--output", out, "--nonblocking"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except FileNotFoundError:
            print("py-spy not found (pip install py-spy); no profile", file=sys.stderr)
            return
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def summarize_profile(path: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    if not total:
        return "(empty profile)"
    lines = [f"py-spy: {total} samples; top own-time frames:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines.append("top inclusive frames:")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top + 15)]
    return "\n".join(lines)


def code_version() -> str:
    """A short hash of the server code under test (it may change between runs)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("realtime/hub.py", "realtime/ordering.py", "realtime/fastsend.py",
                 "tasks/outbox_relay.py",
                 "bench/plain_server.py", "bench/node_server/server.js"):
        with contextlib.suppress(OSError):
            h.update((ROOT / name).read_bytes())
    return h.hexdigest()[:12]


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    load = background_load()
    speed = calibrate()
    if load > 0.1:
        print(f"[warning] the machine was {100 * load:.0f}% busy before the run; other work "
              "competes with the server and clients, figures will be low and noisy", flush=True)
    mode = {None: "carewire", "python": "baseline", "node": "node"}[args.baseline]
    res: dict[str, Any] = {"mode": mode,
                           "clients": args.clients, "processes": args.processes,
                           "workers": args.workers, "background_load": load,
                           "server_gc": args.server_gc, "speed_ms_before": speed,
                           "trigger_process": args.trigger_process,
                           "code": code_version()}
    t_setup = time.monotonic()
    target_cm = (baseline_target(args.processes, args.server_gc, args.gc_stats, args.baseline)
                 if args.baseline else carewire_target(args.processes, args.server_gc, args.gc_stats,
                                                       args.trigger_process))
    with target_cm as target:
        res["server_logs"] = target.logs  # type: ignore[attr-defined]
        meter = ServerMeter(target.pids)
        print(f"[setup] {target.name}: {args.processes} server process(es) on ports "
              f"{target.ports}" + (f" + trigger process on {target.trigger_port}"
                                   if target.trigger_port else "")
              + f" ready in {time.monotonic() - t_setup:.1f}s", flush=True)
        # warm the write path (REST, relay, hub) before taking the memory baseline
        asyncio.run(fire(target, list(range(-3, 0)), 1))
        workers = Workers(args.workers, "127.0.0.1", target.ports, target.auth)
        try:
            return measure(args, target, meter, workers, res)
        finally:
            workers.close()
            res["speed_ms_after"] = calibrate()
            for f in Path(GC_STATS).parent.glob(Path(GC_STATS).name + ".*"):
                f.unlink(missing_ok=True)


async def probe(args: argparse.Namespace, target: Target, workers: Workers, n_sockets: int,
                first_index: int) -> tuple[dict[int, float], list[float]]:
    """One trigger at a time; each waits for its full fan-out (or a stall), then `--gap`.
    Returns seq -> time.time() just before the request was written, and response times."""
    sent: dict[int, float] = {}
    rest_ms: list[float] = []
    delivered = 0
    http = RawHttp("127.0.0.1", target.trigger_port or target.ports[0])
    try:
        for s in range(args.samples):
            t0 = time.time()
            await trigger(target, http, first_index + s)
            rest_ms.append(1000 * (time.time() - t0))
            # blocking poll of the client workers: nothing else runs in this loop meanwhile
            t = wait_for_deliveries(workers, delivered + n_sockets, min(args.stall, 10),
                                    time.monotonic() + 60)
            delivered = t["total"]
            if t["max_seq"] not in sent:
                sent[t["max_seq"]] = t0
            await asyncio.sleep(args.gap)  # spacing, so probes do not queue behind each other
    finally:
        await http.close()
    return sent, rest_ms


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def measure(args: argparse.Namespace, target: Target, meter: ServerMeter, workers: Workers,
            res: dict[str, Any]) -> dict[str, Any]:
    hub = ServerMeter(target.hub_pids) if target.hub_pids else None
    W = args.workers
    warm = min(args.warmup, args.clients)
    main = args.clients - warm
    timeout = args.connect_timeout

    # warm-up sockets (first-connection costs out of the memory figure)
    warm_split = split(warm, W)
    firsts = [sum(warm_split[:k]) for k in range(W)]
    warm_rows = workers.ask("connect", [[f, n, 10, timeout]
                                        for f, n in zip(firsts, warm_split, strict=True)],
                            timeout=timeout + 30)
    warm_ok = sum(r["ok"] for r in warm_rows)
    time.sleep(1.0)  # let the server settle before the baseline

    # (a) + (b) connects ---------------------------------------------------------------------
    rss0, cpu0, gc0 = (hub or meter).rss(), meter.cpu(), gc_seconds(target.pids)
    main_split = split(main, W)
    firsts = [warm + sum(main_split[:k]) for k in range(W)]
    conc = max(1, args.connect_concurrency // W)
    phase_timeout = timeout + main / 50 + 60
    wcpu0 = workers.cpu()
    rows = workers.ask("connect", [[f, n, conc, timeout]
                                   for f, n in zip(firsts, main_split, strict=True)],
                       timeout=phase_timeout)
    if gc0:
        time.sleep(0.3)  # the GC figures are rewritten every 0.25 s
    cpu1, gc1 = meter.cpu(), gc_seconds(target.pids)
    wcpu1 = workers.cpu()
    ok = sum(r["ok"] for r in rows)
    failed = sum(r["failed"] for r in rows)
    wall = max(r["t1"] for r in rows) - min(r["t0"] for r in rows)
    errors: Counter[str] = Counter()
    for r in rows:
        for e, n in r["errors"]:
            errors[e] += n
    time.sleep(args.settle)
    rss1 = (hub or meter).rss()
    res["connect"] = {
        "connected": ok, "warmup": warm_ok, "failed": failed, "errors": errors.most_common(3),
        "seconds": wall, "per_second": ok / wall if wall else math.nan,
        "server_cpu_s": cpu1 - cpu0,
        "server_cpu_s_per_1k": 1000 * (cpu1 - cpu0) / ok if ok else math.nan,
        "client_cpu_s": wcpu1 - wcpu0,
        "rss_before": rss0, "rss_after": rss1,
        "rss_per_connection": (rss1 - rss0) / ok if ok else math.nan,
        "gc_share": (gc1[0] - gc0[0]) / (cpu1 - cpu0) if gc0 and gc1 and cpu1 > cpu0 else None,
    }
    print(f"[connect] {ok} connected, {failed} failed in {wall:.1f}s "
          f"({res['connect']['per_second']:.0f}/s)" + (f"; errors: {errors.most_common(3)}"
                                                        if errors else ""), flush=True)
    t = workers.totals()
    n_sockets = t["connected"]
    if n_sockets == 0:
        raise RuntimeError("no socket connected")

    # (c) throughput ---------------------------------------------------------------------------
    K = args.broadcasts or max(10, min(300, math.ceil(args.throughput_deliveries / n_sockets)))
    expected = K * n_sockets
    workers.ask("reset", False)
    profiler = Profiler(target.pids[0], args.profile)
    procs0 = cpu_by_process()
    cpu0, wcpu0, (busy0, idle0), ocpu0 = meter.cpu(), workers.cpu(), machine_busy(), own_cpu()
    gc0, sys0 = gc_seconds(target.pids), meter.system()
    hcpu0, hsys0 = (hub.cpu(), hub.system()) if hub else (math.nan, math.nan)
    t_start = time.time()
    durations = asyncio.run(fire(target, list(range(K)), args.trigger_concurrency))
    t_rest = time.time() - t_start
    deadline = time.monotonic() + args.phase_timeout
    t = wait_for_deliveries(workers, expected, args.stall, deadline)
    if gc0:
        time.sleep(0.3)  # the GC figures are rewritten every 0.25 s
    cpu1, wcpu1, (busy1, idle1), ocpu1 = meter.cpu(), workers.cpu(), machine_busy(), own_cpu()
    gc1, sys1 = gc_seconds(target.pids), meter.system()
    hcpu1, hsys1 = (hub.cpu(), hub.system()) if hub else (math.nan, math.nan)
    procs1 = cpu_by_process()
    profiler.stop()
    span = (t["last"] - t_start) if t["total"] else math.nan
    cpu = cpu1 - cpu0
    res["throughput"] = {
        "broadcasts": K, "sockets": n_sockets, "expected": expected, "delivered": t["total"],
        "seconds": span, "deliveries_per_s": t["total"] / span if span else math.nan,
        "trigger_seconds": t_rest, "trigger_p50_ms": 1000 * pct(durations, 50),
        "server_cpu_s": cpu, "server_system_s": sys1 - sys0,
        "server_cpu_s_per_1k": 1000 * cpu / t["total"] if t["total"] else math.nan,
        "deliveries_per_server_cpu_s": t["total"] / cpu if cpu else math.nan,
        "server_busy": cpu / span if span else math.nan,
        # --trigger-process only: the socket process(es) alone
        "hub_cpu_s": hcpu1 - hcpu0 if hub else None,
        "hub_system_s": hsys1 - hsys0 if hub else None,
        "hub_cpu_s_per_1k": 1000 * (hcpu1 - hcpu0) / t["total"] if hub and t["total"] else None,
        "deliveries_per_hub_cpu_s": t["total"] / (hcpu1 - hcpu0) if hub and hcpu1 > hcpu0
        else None,
        "client_cpu_s": wcpu1 - wcpu0,
        "orchestrator_cpu_s": ocpu1 - ocpu0,
        "machine_cpu_s": busy1 - busy0,
        "other_cpu_s": other_cpu(procs0, procs1, {*target.pids, *(p.pid or 0 for p in workers.procs),
                                                  os.getpid()}),
        "machine_busy": (busy1 - busy0) / ((busy1 - busy0) + (idle1 - idle0) or 1),
        "sockets_closed": t["closed"],
        "gc_seconds": gc1[0] - gc0[0] if gc0 and gc1 else None,
        "gc_collections": [b - a for a, b in zip(gc0[1], gc1[1], strict=True)] if gc0 and gc1 else None,
        "gc_seconds_by_gen": [b - a for a, b in zip(gc0[2], gc1[2], strict=True)] if gc0 and gc1 else None,
    }
    print(f"[throughput] {t['total']}/{expected} deliveries in {span:.2f}s", flush=True)
    if args.profile:
        res["profile"] = summarize_profile(args.profile)
    time.sleep(0.5)  # quiet before the latency probes

    # (d) latency ------------------------------------------------------------------------------
    n_sockets = workers.totals()["connected"]
    workers.ask("reset", True)
    cpu0 = meter.cpu()
    sent, rest_ms = asyncio.run(probe(args, target, workers, n_sockets, first_index=K))
    probe_cpu = meter.cpu() - cpu0
    per_seq: dict[int, list[Any]] = {}
    for stats in workers.ask("stats", timeout=60):
        for seq, (count, first, last, times) in stats.items():
            e = per_seq.setdefault(seq, [0, math.inf, 0.0, []])
            e[0] += count
            e[1] = min(e[1], first)
            e[2] = max(e[2], last)
            e[3].extend(times or [])
    lat: list[float] = []
    firsts_ms: list[float] = []
    lasts_ms: list[float] = []
    for seq, t0 in sent.items():
        e = per_seq.get(seq)
        if not e:
            continue
        lat.extend(1000 * (x - t0) for x in e[3])
        firsts_ms.append(1000 * (e[1] - t0))
        lasts_ms.append(1000 * (e[2] - t0))
    res["latency"] = {
        "samples": len(sent), "sockets": n_sockets, "deliveries": len(lat),
        "expected": len(sent) * n_sockets,
        "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99),
        "max_ms": max(lat) if lat else math.nan,
        "first_p50_ms": pct(firsts_ms, 50), "last_p50_ms": pct(lasts_ms, 50),
        "last_p99_ms": pct(lasts_ms, 99), "rest_p50_ms": pct(rest_ms, 50),
        "server_cpu_ms_per_probe": 1000 * probe_cpu / len(sent) if sent else math.nan,
    }
    return res


def report(res: dict[str, Any]) -> str:
    c, tp, lt = res["connect"], res["throughput"], res["latency"]
    name = {"carewire": "carewire (Litestar + hub)", "node": "Node.js socket.io"}.get(
        res["mode"], "plain python-socketio")
    rows = [
        ("sockets connected", f"{c['connected'] + c['warmup']:,} ({c['warmup']} warm-up + "
                              f"{c['connected']:,} timed; failed {c['failed']})"),
        ("(a) connects / s", f"{c['per_second']:,.0f}  ({c['seconds']:.1f} s)"),
        ("    server CPU-s per 1k connects", f"{c['server_cpu_s_per_1k']:.3f}"
         + (f"  (garbage collection {100 * c['gc_share']:.0f}%)" if c.get("gc_share") is not None
            else "")),
        ("(b) server RSS per connection", f"{c['rss_per_connection'] / 1024:.1f} KiB  "
                                          f"({c['rss_before'] / 2**20:.0f} -> "
                                          f"{c['rss_after'] / 2**20:.0f} MiB)"),
        ("(c) broadcasts x sockets", f"{tp['broadcasts']} x {tp['sockets']:,} = "
                                     f"{tp['expected']:,}; delivered {tp['delivered']:,}"),
        ("    deliveries / s (wall)", f"{tp['deliveries_per_s']:,.0f}  ({tp['seconds']:.2f} s)"),
        ("    server CPU-s per 1k deliveries", f"{tp['server_cpu_s_per_1k']:.4f}  "
                                               f"(= {tp['deliveries_per_server_cpu_s']:,.0f} "
                                               "deliveries / CPU-s)"),
        *([("    hub CPU-s per 1k deliveries",
            f"{tp['hub_cpu_s_per_1k']:.4f}  (= {tp['deliveries_per_hub_cpu_s']:,.0f} deliveries / "
            f"hub CPU-s; socket process only, {100 * tp['hub_system_s'] / tp['hub_cpu_s']:.0f}% "
            "in the kernel)")] if res.get("trigger_process") else []),
        ("    server CPU in kernel (system time)", f"{tp['server_system_s']:.2f} s = "
                                                  f"{100 * tp['server_system_s'] / tp['server_cpu_s']:.0f}%"),
        ("    server CPU busy / machine busy", f"{100 * tp['server_busy']:.0f}% of a core / "
                                               f"{100 * tp['machine_busy']:.0f}% of all cores"),
        ("    CPU-s server / clients / driver / rest",
         f"{tp['server_cpu_s']:.2f} / {tp['client_cpu_s']:.2f} / {tp['orchestrator_cpu_s']:.2f} / "
         f"{tp['machine_cpu_s'] - tp['server_cpu_s'] - tp['client_cpu_s'] - tp['orchestrator_cpu_s']:.2f}"
         "  (rest: PostgreSQL, Redis, kernel)"),
        ("    other processes' CPU-s", ", ".join(f"{n} {c}" for n, c in tp["other_cpu_s"]) or "-"),
        *([("    garbage collection",
             f"{tp['gc_seconds']:.2f} s = {100 * tp['gc_seconds'] / tp['server_cpu_s']:.0f}% of server "
             f"CPU; gen0/1/2: {'/'.join(map(str, tp['gc_collections']))} collections, "
             f"{'/'.join(f'{x:.2f}' for x in tp['gc_seconds_by_gen'])} s")]
          if tp.get("gc_seconds") is not None else []),
        ("    triggers sent in / p50", f"{tp['trigger_seconds']:.2f} s / "
                                       f"{tp['trigger_p50_ms']:.1f} ms"),
        ("(d) write->socket p50 / p90 / p99", f"{lt['p50_ms']:.1f} / {lt['p90_ms']:.1f} / "
                                              f"{lt['p99_ms']:.1f} ms  (max {lt['max_ms']:.1f})"),
        ("    first socket p50 / last p50 / p99", f"{lt['first_p50_ms']:.1f} / "
                                                  f"{lt['last_p50_ms']:.1f} / "
                                                  f"{lt['last_p99_ms']:.1f} ms"),
        ("    write response p50", f"{lt['rest_p50_ms']:.1f} ms"),
        ("    server CPU per probe", f"{lt['server_cpu_ms_per_probe']:.0f} ms (incl. --gap idle)"),
        ("    probes / deliveries", f"{lt['samples']} / {lt['deliveries']:,} "
                                    f"(expected {lt['expected']:,})"),
    ]
    width = max(len(k) for k, _ in rows)
    head = (f"{name}: {res['clients']:,} clients, {res['processes']} server process(es), "
            f"{res['workers']} client processes"
            + (" + a trigger process (REST, relay; no sockets)" if res.get("trigger_process")
               else "")
            + (f", server gc {res['server_gc']}" if res.get("server_gc") else "")
            + f" [code {res['code']}]")
    out = [head, "-" * len(head)] + [f"{k:<{width}}  {v}" for k, v in rows]
    out.append(f"(machine {100 * res['background_load']:.0f}% busy before the run; speed check "
               f"{res['speed_ms_before']:.0f} ms before / {res.get('speed_ms_after', math.nan):.0f} "
               "ms after: a 1M-step Python loop, lower is faster)")
    if res.get("profile"):
        out += ["", res["profile"]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Socket.IO fan-out benchmark (carewire, or --baseline for stock python-socketio"
        " or --baseline node for Node.js socket.io)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--baseline", nargs="?", const="python", choices=["python", "node"],
                        help="benchmark bench/plain_server.py (python, the default) or "
                        "bench/node_server/server.js (node) instead of carewire")
    parser.add_argument("--processes", type=int, default=1, help="server processes")
    parser.add_argument("--trigger-process", action="store_true",
                        help="carewire: send the triggers to one more gateway process that runs "
                        "the relay and holds no socket; the socket process(es) run without the "
                        "relay, and their CPU (the hub: Redis subscription + fan-out) is "
                        "reported on its own as hub CPU-s per 1k deliveries")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--warmup", type=int, default=20,
                        help="sockets connected before the memory/connect baseline")
    parser.add_argument("--connect-concurrency", type=int, default=100,
                        help="connects in flight, over all client processes")
    parser.add_argument("--connect-timeout", type=float, default=30.0, help="per socket")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between the last connect and the RSS reading")
    parser.add_argument("--broadcasts", type=int, default=0,
                        help="throughput broadcasts; 0 = enough for --throughput-deliveries")
    parser.add_argument("--throughput-deliveries", type=int, default=150_000)
    parser.add_argument("--trigger-concurrency", type=int, default=4,
                        help="throughput triggers in flight")
    parser.add_argument("--samples", type=int, default=30, help="latency probes")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between latency probes")
    parser.add_argument("--stall", type=float, default=20.0,
                        help="give up waiting for deliveries after this long without progress")
    parser.add_argument("--phase-timeout", type=float, default=300.0,
                        help="upper bound on the throughput phase")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy the (first) server during the throughput phase")
    parser.add_argument("--server-gc", metavar="SPEC",
                        help="diagnostic: the servers' gc thresholds, e.g. 100000,50,100, or off "
                        "(via bench/gc_tune/sitecustomize.py)")
    parser.add_argument("--gc-stats", action="store_true",
                        help="diagnostic: time the servers' garbage collections (gc.callbacks, "
                        "via bench/gc_tune/sitecustomize.py) and report their share")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.trigger_process and args.baseline:
        parser.error("--trigger-process is for carewire (the baselines' trigger costs ~nothing)")
    res = run(args)
    print()
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
