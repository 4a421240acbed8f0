"""Liveness (the process answers) and readiness (it can reach what it needs)."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, Router, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from domain import db, kv
from gateway.routes import PUBLIC


class Health(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, str] = {}


@get("/live", permission=PUBLIC)
async def live() -> Health:
    return Health(status="ok")


async def _check(name: str, probe: object) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, timeout=2)  # type: ignore[arg-type]
        return name, "ok"
    except Exception as exc:
        return name, f"failing: {type(exc).__name__}"


@get("/ready", permission=PUBLIC)
async def ready(state: State) -> Response[Health]:
    """Not ready when the database or Redis is out of reach, or when this process's hub cannot
    hear the others (its event channel is down)."""
    checks = dict(await asyncio.gather(
        _check("database", db.fetch("SELECT 1")),
        _check("redis", kv.client().ping()),
    ))
    runtime = state.get("runtime")
    if runtime is not None:
        checks["hub"] = "ok" if runtime.hub.listening else "failing: event channel down"
    ok = all(v == "ok" for v in checks.values())
    return Response(Health(status="ok" if ok else "unavailable", checks=checks),
                    status_code=200 if ok else 503)


router = Router(path="/health", route_handlers=[live, ready], tags=["operations"])


@get("/metrics", permission=PUBLIC, include_in_schema=False)
async def metrics() -> Response[bytes]:
    """Prometheus exposition of this process (scrape each process; keep it off the public net)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
