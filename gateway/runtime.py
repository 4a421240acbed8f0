"""Where the servers are: DATABASE_URL / REDIS_URL when set, the embedded ones otherwise.
Everything above the connection is the same on both paths."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from gateway.embedded.postgres import EmbeddedPostgres
from gateway.embedded.redis import EmbeddedRedis

DATABASE = "carewire"


def _jwt_secret(data_dir: Path) -> str:
    path = data_dir / "jwt_secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _credentials_key(data_dir: Path) -> str:
    """The embedded default's credentials key, kept beside the JWT secret so that what was
    stored under it still decrypts on the next start."""
    path = data_dir / "credentials_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(new_key_entry("dev1"))
        path.chmod(0o600)
    return path.read_text().strip()


def new_key_entry(key_id: str) -> str:
    """A `kid:base64key` entry of CAREWIRE_CREDENTIALS_KEY with a fresh 256-bit key."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


@contextlib.contextmanager
def services(data_dir: Path) -> Iterator[dict[str, str]]:
    """Start what is not configured, export the URLs to the environment, stop on exit."""
    data_dir = data_dir.resolve()
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        if not os.environ.get("DATABASE_URL"):
            pg = EmbeddedPostgres(data_dir / "postgres")
            pg.start()
            started.append(pg)
            pg.create_database(DATABASE)
            os.environ["DATABASE_URL"] = pg.dsn(DATABASE)
        if not os.environ.get("REDIS_URL"):
            rd = EmbeddedRedis(data_dir / "redis")
            rd.start()
            started.append(rd)
            os.environ["REDIS_URL"] = rd.url
        if not os.environ.get("CAREWIRE_JWT_SECRET"):
            if not started:
                raise SystemExit("CAREWIRE_JWT_SECRET must be set when DATABASE_URL and "
                                 "REDIS_URL point at real servers")
            os.environ["CAREWIRE_JWT_SECRET"] = _jwt_secret(data_dir)
        if started and not os.environ.get("CAREWIRE_CREDENTIALS_KEY"):
            # with real servers it stays unset until configured: storing credentials is refused
            os.environ["CAREWIRE_CREDENTIALS_KEY"] = _credentials_key(data_dir)
        yield {"database_url": os.environ["DATABASE_URL"], "redis_url": os.environ["REDIS_URL"]}
    finally:
        for server in reversed(started):
            server.stop()
