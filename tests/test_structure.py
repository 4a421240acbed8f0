"""Rules of the code's shape: one-way imports, and every route declares its permission."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

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
