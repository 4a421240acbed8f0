"""Real servers for the tests: PostgreSQL and Redis (the machine's when TEST_DATABASE_URL /
TEST_REDIS_URL are set, embedded ones otherwise) and carewire itself under uvicorn."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from gateway.embedded.postgres import EmbeddedPostgres
from gateway.embedded.redis import EmbeddedRedis

CAREWIRE = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scratch_dir(prefix: str) -> Path:
    """A folder an unprivileged PostgreSQL user can enter even when we run as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def _with_database(dsn: str, name: str) -> str:
    base, _, query = dsn.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@contextmanager
def database() -> Iterator[str]:
    """A fresh database for this run, dropped afterwards."""
    name = f"carewire_test_{secrets.token_hex(4)}"
    shared = os.environ.get("TEST_DATABASE_URL")
    pg: EmbeddedPostgres | None = None
    if shared:
        admin = shared
    else:
        pg = EmbeddedPostgres(scratch_dir("carewire-test-") / "pg")
        pg.start()
        admin = pg.dsn("postgres")
    run(_exec(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(admin, name)
    finally:
        if pg is not None:
            pg.stop()
        else:
            run(_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def redis() -> Iterator[str]:
    shared = os.environ.get("TEST_REDIS_URL")
    if shared:
        yield shared
        return
    server = EmbeddedRedis(scratch_dir("carewire-test-redis-"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def _exec(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Server:
    """`carewire serve` in a subprocess, on a free port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="carewire-server-", suffix=".log")[1])
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CAREWIRE, "serve", "--port", str(self.port)], env=self.env, stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CAREWIRE, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@contextmanager
def isolated_stack(base_env: dict[str, str]) -> Iterator[tuple[dict[str, str], EmbeddedRedis]]:
    """A database and a restartable Redis of its own, migrated, with an admin; for tests that
    break things (the shared relay and Redis must not see them)."""
    with database() as dsn:
        own = EmbeddedRedis(scratch_dir("carewire-test-own-redis-"))
        own.start()
        try:
            env = {**base_env, "DATABASE_URL": dsn, "REDIS_URL": own.url}
            for args in (["migrate"], ["create-admin", "--email", "root@isolated.test",
                                       "--password", "root-password-1"]):
                done = cli(env, *args)
                assert done.returncode == 0, done.stdout + done.stderr
            yield env, own
        finally:
            own.stop()


@contextmanager
def workers(env: dict[str, str], n: int, *args: str,
            output: Path | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`carewire worker` processes (extra CLI arguments in `args`), killed however the test ends;
    their output is appended to `output` when given."""
    sink = output.open("ab") if output else None
    procs = [subprocess.Popen([*CAREWIRE, "worker", "--concurrency", "4", *args], env=env,
                              stdout=sink or subprocess.DEVNULL, stderr=sink or subprocess.DEVNULL)
             for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if sink:
            sink.close()


def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll a condition (the worker is another process) until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)  # polling another process's progress, bounded by the deadline
    raise AssertionError(f"condition not met in {timeout}s")
