"""Composes the one ASGI app uvicorn serves: the Socket.IO hub wrapping Litestar (see
ARCHITECTURE.md)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import Awaitable, Callable

import socketio
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from domain import db, kv, settings
from domain.access.matrix import load as load_matrix
from gateway.context import (
    JsonRequest,
    provide_principal,
    request_id_middleware,
    require_json_body,
)
from gateway.idempotency import idempotency_middleware
from gateway.problems import HANDLERS, audit_failure
from gateway.routes import (
    AUTHENTICATED,
    PUBLIC,
    auth,
    billing_invoices,
    billing_payments,
    billing_plans,
    billing_refunds,
    boards,
    clinics,
    communication,
    communication_log,
    communication_templates,
    devices,
    events,
    health,
    members,
    notifications,
    payment_webhooks,
    queues,
    scheduling,
    unsubscribe,
    users,
    video,
    video_settings,
    webhooks,
)
from realtime.hub import Hub
from tasks.outbox_relay import Relay

log = logging.getLogger("carewire")

API_ROUTERS = [auth.router, users.router, clinics.router, members.router, events.router,
               scheduling.router, queues.router, devices.router, communication_log.router,
               communication_log.my_router, communication.router,
               communication_templates.router, notifications.router, webhooks.router,
                 unsubscribe.router,
                 # --- billing ---
                 billing_invoices.router, billing_plans.router,
                 billing_payments.router, billing_payments.credentials_router,
                 payment_webhooks.router, billing_refunds.router,
                 # --- video: providers ---
                 video_settings.router,
                 # --- video: sessions ---
                 video.router]


def tune_gc() -> None:
    """Move what start-up allocated out of the collector's sight and collect less often.

    Measured in bench/fanout.py: with 5,000 sockets, full collections took ~60% of the hub's
    CPU (each walks every socket's state) and stalled deliveries by ~1 s; with these settings
    deliveries per CPU-second roughly tripled at unchanged memory."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.get().gc_thresholds)


async def _nothing() -> None:
    return None


class Runtime:
    """The process's long-lived parts, started and stopped with Litestar's lifespan."""

    def __init__(self) -> None:
        self.hub = Hub()
        self.relay = Relay() if settings.get().relay_in_process else None

    async def startup(self) -> None:
        await db.engine().start_connection_pool(min_size=1, max_size=20)
        await kv.client().ping()
        await self.hub.start()
        if self.relay:
            self.relay.start()
        tune_gc()
        log.info("carewire started (relay %s)", "in process" if self.relay else "elsewhere")

    async def shutdown(self) -> None:
        """Each step runs even when an earlier one fails, and failures are logged."""
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("relay", self.relay.stop if self.relay else _nothing),
            ("hub", self.hub.stop),
            ("database pool", db.engine().close_connection_pool),
            ("redis", kv.close),
        ]
        for name, step in steps:
            try:
                await asyncio.wait_for(step(), timeout=5)
            except BaseException:
                log.exception("stopping the %s failed", name)
        log.info("carewire stopped")


def check_declared_permissions(app: Litestar) -> None:
    """Every route names its permission, and a protected one takes the principal."""
    matrix = load_matrix()
    problems = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            permission = handler.opt.get("permission")
            name = f"{sorted(handler.http_methods)} {route.path}"
            if handler.http_methods == {"OPTIONS"}:  # Litestar's automatic CORS preflight
                continue
            if permission is None:
                problems.append(f"{name} declares no permission")
            elif permission not in (PUBLIC, AUTHENTICATED) and permission not in matrix:
                problems.append(f"{name} declares {permission!r}, which is not in the matrix")
            elif permission != PUBLIC and "principal" not in inspect.signature(handler.fn).parameters:
                problems.append(f"{name} is protected but does not take the principal")
    if problems:
        raise RuntimeError("routes without a valid permission:\n  " + "\n  ".join(problems))


def create_litestar(runtime: Runtime | None = None) -> Litestar:
    cfg = settings.get()
    app = Litestar(
        route_handlers=[Router(path="/api/v1", route_handlers=API_ROUTERS), health.router,
                        health.metrics, boards.board_page],
        dependencies={"principal": Provide(provide_principal)},
        exception_handlers=HANDLERS,
        guards=[require_json_body],
        request_class=JsonRequest,
        after_exception=[audit_failure],
        on_startup=[runtime.startup] if runtime else [],
        on_shutdown=[runtime.shutdown] if runtime else [],
        request_max_body_size=cfg.max_body_bytes,
        cors_config=CORSConfig(
            allow_origins=list(cfg.allowed_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Idempotent-Replayed", "Retry-After"],
        ),
        openapi_config=OpenAPIConfig(
            title="carewire",
            version="0.1.0",
            description="Realtime gateway for multi-clinic healthcare. Errors are RFC 9457 "
            "problem+json; writes accept an Idempotency-Key header.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin()],
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }),
            security=[{"bearer": []}],
        ),
        debug=False,
        # Logging is configured once by the CLI with a plain stream handler. Litestar's default
        # queue handler loses the last lines when uvicorn re-raises SIGTERM at exit.
        logging_config=None,
        state=State({"runtime": runtime}),
    )
    for route in app.routes:  # mark Litestar's own OpenAPI routes as public
        for handler in getattr(route, "route_handlers", []):
            if route.path.startswith("/schema"):
                handler.opt.setdefault("permission", PUBLIC)
    check_declared_permissions(app)
    return app


#: Answers under this prefix may carry PHI (the board's state included): no cache keeps them.
NO_STORE_PREFIX = "/api/v1/"


def no_store_middleware(app: ASGIApp) -> ASGIApp:
    """`Cache-Control: no-store` on every API answer, errors and idempotent replays too, so no
    browser or proxy cache keeps PHI; the board page sets its own, and static files (the
    OpenAPI page) stay cacheable."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not scope["path"].startswith(NO_STORE_PREFIX):
            await app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() != b"cache-control"),
                    (b"cache-control", b"no-store"),
                ]
            await send(message)

        await app(scope, receive, send_no_store)

    return middleware


def create_app() -> ASGIApp:
    """The one ASGI app: Socket.IO at /socket.io, everything else through request ids,
    idempotency and Litestar. Litestar's lifespan runs because ASGIApp gets no hooks of its own."""
    runtime = Runtime()
    rest = request_id_middleware(no_store_middleware(idempotency_middleware(create_litestar(runtime))))
    # python-socketio ships no type hints; its ASGIApp is an ASGI callable like any other
    app: ASGIApp = socketio.ASGIApp(runtime.hub.sio, other_asgi_app=rest, socketio_path="socket.io")
    return app
