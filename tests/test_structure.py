"""Rules of the code's shape: one-way imports, each context queries only its own tables, and
every route declares its permission."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from tests.sql_names import inserted_columns, python_files, table_owners, tables_named

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_DOMAIN = ("gateway", "realtime", "tasks", "litestar", "socketio", "engineio",
                       "taskiq", "uvicorn")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_domain_imports_no_transport():
    offenders = []
    for path in (ROOT / "domain").rglob("*.py"):
        for module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN_IN_DOMAIN:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


#: Kernel modules (domain/*.py) that write a context's tables on its behalf, and whose: the
#: journal appends the audit rows and events that `audit.commands.record` and
#: `events.commands.record` noted, just before the transaction commits.
KERNEL_WRITERS = {"journal.py": {"audit", "events"}}


def test_the_table_scan_sees_what_it_must():
    owners = table_owners()
    assert owners["memberships"] == "tenancy" and owners["users"] == "identity"
    assert owners["appointments"] == "scheduling" and owners["queue_entries"] == "queueing"
    assert {"audit_log", "events", "clinic_sequences", "invitations"} <= owners.keys()
    sample = (
        "def f(x):\n"
        "    '''Reads from users, in prose: not SQL.'''\n"
        "    return ('SELECT 1 FROM memberships m\\n JOIN users u ON u.id = m.user_id',\n"
        "            f'DELETE FROM public.locations WHERE id = {x}', 'update  ONLY time_off SET')\n"
    )
    assert tables_named(sample) == [(3, "memberships"), (3, "users"), (4, "locations"),
                                    (4, "time_off")]
    assert inserted_columns("q = 'INSERT INTO users (id, email ) VALUES ($1, $2)'") == [
        (1, "users", "id"), (1, "users", "email")]


def test_each_context_queries_only_its_own_tables():
    """A context reads another's rows through the owner's functions (tenancy's `require_member`
    and `require_location`, identity's `people`, ...), so each table's shape is known in one
    place. Where a second round trip would cost every request, the owner lends an SQL fragment
    (e.g. `tenancy.queries.memberships_json`) instead."""
    owners = table_owners()
    offenders = []
    for path in python_files("domain"):
        parts = path.relative_to(ROOT / "domain").parts
        allowed = {parts[0]} if len(parts) > 1 else KERNEL_WRITERS.get(parts[0], set())
        for line, table in tables_named(path.read_text()):
            if table in owners and owners[table] not in allowed:
                offenders.append(f"{path.relative_to(ROOT)}:{line} names {table} "
                                 f"({owners[table]}'s)")
    assert offenders == []


def test_realtime_and_tasks_do_not_import_the_gateway():
    offenders = []
    for package in ("realtime", "tasks"):
        for path in (ROOT / package).rglob("*.py"):
            for module in imported_modules(path):
                if module.split(".")[0] == "gateway":
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


@pytest.fixture
def app_env(monkeypatch):
    from domain import settings

    monkeypatch.setitem(os.environ, "DATABASE_URL", "postgresql://nobody@/none")
    monkeypatch.setitem(os.environ, "REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setitem(os.environ, "CAREWIRE_JWT_SECRET", "x" * 40)
    settings.get.cache_clear()
    yield
    settings.get.cache_clear()


def test_the_app_builds_with_every_route_declared(app_env):
    from gateway.app import create_litestar

    create_litestar()


def test_a_route_without_a_permission_fails(app_env, monkeypatch):
    from litestar import Router, get

    from gateway import app as app_module

    @get("/undeclared")
    async def undeclared() -> dict[str, str]:
        return {}

    @get("/unknown", permission="spaceships:launch")
    async def unknown() -> dict[str, str]:
        return {}

    @get("/no-principal", permission="clinics:read")
    async def no_principal() -> dict[str, str]:
        return {}

    monkeypatch.setattr(app_module, "API_ROUTERS", [
        *app_module.API_ROUTERS, Router(path="/x", route_handlers=[undeclared, unknown,
                                                                   no_principal])])
    with pytest.raises(RuntimeError) as info:
        app_module.create_litestar()
    message = str(info.value)
    assert "/api/v1/x/undeclared declares no permission" in message
    assert "'spaceships:launch', which is not in the matrix" in message
    assert "/api/v1/x/no-principal is protected but does not take the principal" in message


def test_permission_file_covers_the_product():
    from domain.access.matrix import load
    from domain.access.roles import Role

    matrix = load()
    resources = {name.split(":")[0] for name in matrix}
    assert len(resources) >= 25
    assert all(set(row) == set(Role) for row in matrix.values())
