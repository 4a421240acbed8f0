"""What the benchmarks share: the stack (embedded or TEST_* PostgreSQL and Redis, migrated,
with a SUPER_ADMIN), carewire servers on it, client worker processes driven over pipes, a
keep-alive HTTP client cheap enough not to skew the figures, and the machine and process
meters. bench/fanout.py and bench/queues.py import it (as `bench.harness`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import resource
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client worker processes import this module too: keep them light
    from tests import servers


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------------------------------
# client worker processes


class ClientProcesses:
    """Client worker processes driven over pipes: `ask` sends one command to each and gathers
    the answers (a list argument is one item per worker, anything else goes to all)."""

    def __init__(self, n: int, target: Any, *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, *args), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def ask(self, cmd: str, args: list[Any] | Any = None, timeout: float = 60) -> list[Any]:
        per = args if isinstance(args, list) else [args] * len(self.pipes)
        for pipe, a in zip(self.pipes, per, strict=True):
            pipe.send((cmd, a))
        out = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"client worker did not answer {cmd!r} in {timeout}s")
            out.append(pipe.recv())
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("close", timeout=20)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)


# ---------------------------------------------------------------------------------------------
# the stack and the servers


ADMIN = ("root@bench.test", "root-password-1")


@contextlib.contextmanager
def prepared_stack() -> Iterator[dict[str, str]]:
    """Embedded (or TEST_*) PostgreSQL and Redis, migrated, with a SUPER_ADMIN (ADMIN): the
    environment every carewire process of a bench run gets."""
    from tests import servers

    with servers.database() as dsn, servers.redis() as redis_url:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=dsn, REDIS_URL=redis_url,
            CAREWIRE_JWT_SECRET=secrets.token_urlsafe(48),
            CAREWIRE_REDIS_PREFIX=f"cwbench-{secrets.token_hex(4)}:",
            CAREWIRE_LOGIN_ATTEMPTS_PER_IP="100000",
            CAREWIRE_LOG_LEVEL="WARNING",
            CAREWIRE_ACCESS_TOKEN_TTL_SECONDS="7200",  # sockets must outlive the whole run
            CAREWIRE_SOCKETS_PER_USER="1000000",  # every bench client is the same user
        )
        for args in (["migrate"], ["create-admin", "--email", ADMIN[0], "--password", ADMIN[1]]):
            done = servers.cli(env, *args)
            if done.returncode != 0:
                raise RuntimeError(f"carewire {args[0]} failed:\n{done.stdout}{done.stderr}")
        yield env


@contextlib.contextmanager
def carewire_servers(envs: list[dict[str, str]]) -> Iterator[list[servers.Server]]:
    """One `carewire serve` per environment, started in order, stopped however the run ends."""
    from tests import servers

    procs = [servers.Server(env) for env in envs]
    try:
        for s in procs:
            s.start(timeout=60)
        yield procs
    finally:
        for s in procs:
            s.stop()


# ---------------------------------------------------------------------------------------------
# measuring


class ServerMeter:
    def __init__(self, pids: list[int]) -> None:
        import psutil

        self.procs = [psutil.Process(pid) for pid in pids]

    def cpu(self) -> float:
        return float(sum(t.user + t.system for t in (p.cpu_times() for p in self.procs)))

    def system(self) -> float:
        """Kernel share: mostly the websocket writes (one write() per delivery)."""
        return float(sum(p.cpu_times().system for p in self.procs))

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.procs)


def machine_busy() -> tuple[float, float]:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + t.nice + getattr(t, "softirq", 0) + getattr(t, "irq", 0), t.idle


def cpu_by_process() -> dict[int, tuple[str, float]]:
    import psutil

    out = {}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        t = proc.info["cpu_times"]
        if t is not None:
            out[proc.pid] = (proc.info["name"] or "?", t.user + t.system)
    return out


def other_cpu(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
              exclude: set[int]) -> list[tuple[str, float]]:
    """CPU-s spent meanwhile by every other process, summed by process name."""
    by_name: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        if pid in exclude:
            continue
        by_name[name] = by_name.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:4]
    return [(n, round(c, 2)) for n, c in top if c >= 0.05]


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    k = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
    return values[k]


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client for the triggers: httpx costs 1-3 ms per request
    of client CPU here, which would show up in the latency and compete for the two cores."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]
                      ) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                "Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"response without content-length: {raw[:300]!r}")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


def calibrate() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 5): this machine's speed drifts by up
    to 2x between runs (shared host), so compare figures only from runs with similar values."""
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        x = 0
        for i in range(1_000_000):
            x += i
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


def background_load(seconds: float = 1.0) -> float:
    """Share of all cores busy before we start anything: other work on the machine skews
    every figure here (the server, clients and databases share two cores)."""
    busy0, idle0 = machine_busy()
    time.sleep(seconds)  # measuring over an interval
    busy1, idle1 = machine_busy()
    return (busy1 - busy0) / ((busy1 - busy0) + (idle1 - idle0) or 1)
