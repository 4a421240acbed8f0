"""`carewire`: dev, serve, worker, migrate, seed-demo, create-admin, audit verify, keys, settings."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_DATA_DIR = Path("./.carewire")


def _configure_logging() -> None:
    level = os.environ.get("CAREWIRE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("taskiq").setLevel(logging.WARNING)  # it logs every task at INFO


async def _with_db(fn: Callable[[], Awaitable[Any]]) -> Any:
    from domain import db, kv

    await db.engine().start_connection_pool(min_size=1, max_size=4)
    try:
        return await fn()
    finally:
        await db.engine().close_connection_pool()
        await kv.close()


async def migrate() -> None:
    from piccolo.apps.migrations.commands.forwards import run_forwards

    from domain import db

    await db.fetch("CREATE EXTENSION IF NOT EXISTS btree_gist")
    result = await run_forwards("all")
    if not result.success:
        raise SystemExit(f"migration failed: {result.message}")


def _serve(host: str, port: int) -> None:
    import uvicorn

    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1;
    # which proxies to believe is CAREWIRE_TRUSTED_PROXIES (domain/addresses.client_address).
    uvicorn.run("gateway.app:create_app", factory=True, host=host, port=port,
                ws="websockets-sansio", log_level="warning", lifespan="on", proxy_headers=False)


def video_demo(base: str, appointment_id: str, where: str, join_url: str = "") -> str:
    """The start-up lines of the video demo: a visit today, inside its join window, and the
    curls that open its room and get Dr. Khan's join token."""
    from gateway.demo_seed import DEMO_PASSWORD, VIDEO_DOCTOR

    login = json.dumps({"email": VIDEO_DOCTOR, "password": DEMO_PASSWORD})
    field = "python3 -c 'import sys, json; print(json.load(sys.stdin)[sys.argv[1]])'"
    return (
        f"  Video: Anita's video visit with Dr. Khan today (appointment {appointment_id}) is open\n"
        f"  to join; calls go to {where}. As Dr. Khan, open the room and get a join token:\n"
        f"    T=$(curl -s -X POST {base}/api/v1/auth/login -H 'Content-Type: application/json' \\\n"
        f"        -d '{login}' | {field} access_token)\n"
        f"    S=$(curl -s -X POST {base}/api/v1/video/sessions -H \"Authorization: Bearer $T\" \\\n"
        f"        -H 'Content-Type: application/json' -d '{{\"appointment_id\": \"{appointment_id}\"}}' \\\n"
        f"        | {field} id)\n"
        f"    J=$(curl -s -X POST {base}/api/v1/video/sessions/$S/token -H \"Authorization: Bearer $T\" \\\n"
        f"        | {field} token); echo \"$J\"\n"
        + (f"  and join the call as a client would (the fake verifies the token; its signed webhook\n"
           f"  sends video.participant_joined to the clinic's sockets):\n"
           f"    curl -s -X POST {join_url} --data \"$J\"" if join_url else ""))


def cmd_dev(args: argparse.Namespace) -> int:
    from gateway import devpay, devvideo
    from gateway.demo_seed import seed_demo
    from gateway.runtime import services

    stripe = devpay.start()  # before settings are read: the server and worker reach it
    if stripe is not None:
        os.environ.update(stripe.env())
    openvidu = devvideo.start()
    if openvidu is not None:
        os.environ.update(openvidu.env())
    with services(args.data_dir):
        asyncio.run(migrate())
        seed = asyncio.run(_with_db(lambda: seed_demo(stripe.credentials() if stripe else None)))
        base = f"http://{args.host}:{args.port}"
        if stripe is not None:
            stripe.webhook_url = f"{base}/api/v1/webhooks/payments/stripe/{seed.clinic_id}"
        if openvidu is not None:
            openvidu.webhook_url = devvideo.webhook_url_for(base)
        print(f"\ncarewire is running on {base}", flush=True)
        print(f"  API docs (OpenAPI):  {base}/schema/swagger   (also /schema/scalar)")
        print(f"  REST:                {base}/api/v1/...")
        print(f"  Health:              {base}/health/ready")
        print(f"  Demo clinic id:      {seed.clinic_id}")
        if seed.board_path:
            print(f"  Waiting-room board:  {base}{seed.board_path}")
        print("  Demo logins (POST /api/v1/auth/login):")
        for email, password, role in seed.logins:
            print(f"    {role:<18} {email:<34} {password}")
        print("  A worker (jobs, scheduler, relay, outbound delivery) runs alongside; with no\n"
              "  providers configured, messages go to the local sink: see them in\n"
              "  GET /api/v1/clinics/{id}/communication/messages.", flush=True)
        if stripe is not None and seed.pay_intent:
            print(f"  Payments: a local Stripe ({stripe.url}) takes the clinic's online payments.\n"
                  f"  Sara's video visit tomorrow waits for invoice {seed.pay_invoice}; pay it with\n"
                  f"    curl -X POST {stripe.url}/dev/pay/{seed.pay_intent}\n"
                  "  and the signed webhook schedules the visit: payment.succeeded reaches Sara's\n"
                  "  and the accountant's sockets, the receipt her delivery log.", flush=True)
        if seed.video_appointment:
            where = f"a local OpenVidu ({openvidu.url})" if openvidu is not None else "OpenVidu"
            join = f"{openvidu.url}{devvideo.JOIN_PATH}" if openvidu is not None else ""
            print(video_demo(base, seed.video_appointment, where, join), flush=True)
        print(flush=True)
        worker = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker",
                                   "--data-dir", str(args.data_dir)])
        try:
            _serve(args.host, args.port)
        finally:
            if openvidu is not None:
                openvidu.stop()
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.runtime import services

    with services(args.data_dir):
        _serve(args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import uvloop  # a Redis Streams worker only stops cleanly on SIGTERM under uvloop

    from gateway.runtime import services
    from tasks.worker import run_worker

    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.metrics_host)
    with services(args.data_dir):
        uvloop.run(run_worker(concurrency=args.concurrency,
                              delivery_concurrency=args.delivery_concurrency))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.runtime import services

    with services(args.data_dir):
        asyncio.run(migrate())
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from gateway.demo_seed import seed_demo
    from gateway.runtime import services

    with services(args.data_dir):
        seed = asyncio.run(_with_db(seed_demo))
        print(f"demo clinic {seed.clinic_id} ({'created' if seed.created else 'already there'})")
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from domain.errors import DomainError
    from domain.identity.commands import ensure_super_admin
    from gateway.runtime import services

    with services(args.data_dir):
        try:
            user_id = asyncio.run(_with_db(lambda: ensure_super_admin(
                email=args.email, password=args.password, name=args.name)))
        except DomainError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        print(f"SUPER_ADMIN {args.email} ready (user {user_id})")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from domain.audit.queries import verify_chain
    from gateway.runtime import services

    with services(args.data_dir):
        result = asyncio.run(_with_db(verify_chain))
    if result.ok:
        print(f"audit log intact: {result.rows} rows verified")
        return 0
    print(f"audit log TAMPERED at row {result.first_bad_id}: {result.reason} "
          f"({result.rows} rows verified before it)", file=sys.stderr)
    return 1


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from domain.errors import DomainError
    from domain.settings import SettingsError
    from domain.tenancy.credentials import rotate_credentials
    from gateway.runtime import services

    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    with services(args.data_dir):
        try:
            result = asyncio.run(_with_db(lambda: rotate_credentials(batch_size=args.batch_size)))
        except (DomainError, SettingsError) as exc:
            print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 2
    print(f"credentials rotated: {result.rotated}, already under the current key: "
          f"{result.already_current}, changed meanwhile: {result.raced}, "
          f"unreadable: {result.unreadable}")
    for clinic_id, provider, key_id in result.unreadable_rows:
        print(f"unreadable: clinic {clinic_id} provider {provider} (key id {key_id})", file=sys.stderr)
    if result.raced:
        print("rows changed meanwhile: run `carewire keys rotate` again", file=sys.stderr)
    return 1 if result.unreadable or result.raced else 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from domain.settings import KEY_ID
    from gateway.runtime import new_key_entry

    if not KEY_ID.match(args.key_id):
        print("error: a key id is 1-32 letters, digits, _ . -", file=sys.stderr)
        return 2
    print(new_key_entry(args.key_id))
    return 0


#: Read without the CAREWIRE_ prefix (the usual names of those URLs).
_UNPREFIXED = ("database_url", "redis_url")
_FIELD = re.compile(r"^    (\w+): ")


def _setting_docs() -> dict[str, str]:
    """Each Settings field's `#:` comment (the lines just above it), from the source."""
    from domain.settings import Settings

    docs: dict[str, str] = {}
    comment: list[str] = []
    for line in inspect.getsource(Settings).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            comment.append(stripped[2:].strip())
        elif (field := _FIELD.match(line)) and comment:
            docs[field.group(1)] = " ".join(comment)
            comment = []
        else:
            comment = []
    return docs


def _default(name: str, value: Any) -> str:
    if value is msgspec.NODEFAULT:
        return "required"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return f"`{','.join(str(v) for v in value)}`" if value else "empty"
    text = f"`{value}`"
    if name.endswith("_seconds") and isinstance(value, int) and value >= 3600:
        hours = value / 3600
        text += f" ({hours:g} h)" if hours < 48 else f" ({hours / 24:g} days)"
    return text


def _settings_rows() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) per Settings field; a field without a `#:` comment is an
    error, so a new setting cannot go undocumented."""
    from domain.settings import PREFIX, Settings

    docs = _setting_docs()
    rows = []
    for field in msgspec.structs.fields(Settings):
        if field.name not in docs:
            raise SystemExit(f"domain/settings.py: Settings.{field.name} has no #: comment")
        variable = field.name.upper() if field.name in _UNPREFIXED else PREFIX + field.name.upper()
        rows.append((variable, _default(field.name, field.default), docs[field.name]))
    return rows


def settings_table() -> str:
    """The README's settings table, generated from `Settings` so that it cannot drift from the
    code (tests/test_docs.py compares the two)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for variable, default, meaning in _settings_rows():
        escaped = meaning.replace("|", "\\|")
        lines.append(f"| `{variable}` | {default} | {escaped} |")
    return "\n".join(lines) + "\n"


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(settings_table())
        return 0
    for variable, default, meaning in _settings_rows():  # an env file to start from
        line = f"{variable}=" if default == "required" else f"# {variable}={default.strip('`')}"
        print(f"# {meaning}\n{line}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carewire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                       help="folder of the embedded PostgreSQL and Redis (when DATABASE_URL / "
                       "REDIS_URL are not set); default ./.carewire")

    def listen(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)

    p = sub.add_parser("dev", help="migrate, seed a demo clinic and serve, on embedded servers")
    listen(p)
    data_dir(p)
    p.set_defaults(func=cmd_dev)
    p = sub.add_parser("serve", help="serve REST and Socket.IO with uvicorn")
    listen(p)
    data_dir(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("worker", help="run jobs, the job scheduler, the outbox relay and outbound delivery")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--delivery-concurrency", type=int, default=50,
                   help="outbound messages this worker sends at once")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve this worker's Prometheus metrics (jobs, message attempts, provider "
                        "latency) on this port; 0: off")
    p.add_argument("--metrics-host", default="127.0.0.1")
    data_dir(p)
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("migrate", help="apply database migrations")
    data_dir(p)
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("seed-demo", help="create the demo clinic (idempotent)")
    data_dir(p)
    p.set_defaults(func=cmd_seed_demo)
    p = sub.add_parser("create-admin", help="create or reset a SUPER_ADMIN")
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--name", default="Administrator")
    data_dir(p)
    p.set_defaults(func=cmd_create_admin)
    p = sub.add_parser("audit", help="audit log tools")
    audit_sub = p.add_subparsers(dest="audit_command", required=True)
    v = audit_sub.add_parser("verify", help="recompute the hash chain; exit 1 if tampered")
    data_dir(v)
    v.set_defaults(func=cmd_audit_verify)
    p = sub.add_parser("keys", help="the credentials keys (CAREWIRE_CREDENTIALS_KEY)")
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    k = keys_sub.add_parser("rotate", help="re-encrypt every stored credential under the current "
                            "(first) key; safe to re-run and while the app runs")
    k.add_argument("--batch-size", type=int, default=100)
    data_dir(k)
    k.set_defaults(func=cmd_keys_rotate)
    k = keys_sub.add_parser("generate", help="print a new kid:base64key entry")
    k.add_argument("--key-id", default=f"k{time.strftime('%Y%m%d%H%M%S', time.gmtime())}")
    k.set_defaults(func=cmd_keys_generate)
    p = sub.add_parser("settings", help="every setting: its variable, default and meaning")
    p.add_argument("--markdown", action="store_true", help="as the README's table")
    p.set_defaults(func=cmd_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    _configure_logging()
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
