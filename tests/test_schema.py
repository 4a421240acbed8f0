"""The database matches what the code believes: Piccolo tables vs. the migrated schema."""

from __future__ import annotations

import httpx
from piccolo.conf.apps import AppConfig

from piccolo_conf import APP_REGISTRY

APPS: list[AppConfig] = list(APP_REGISTRY.app_configs.values())


def test_every_piccolo_column_exists_in_the_database(db):
    columns = {(r["table_name"], r["column_name"]) for r in db.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public'")}
    missing = [
        f"{table._meta.tablename}.{col._meta.db_column_name}"
        for app in APPS for table in app.table_classes for col in table._meta.columns
        if (table._meta.tablename, col._meta.db_column_name) not in columns
    ]
    assert missing == []


def test_the_database_refuses_a_location_from_another_clinic(db, clinic_factory):
    import asyncpg
    import pytest

    a, b = clinic_factory(), clinic_factory()
    user = db.fetch("SELECT id FROM users LIMIT 1")[0]["id"]
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        db.fetch("INSERT INTO memberships (id, user_id, clinic_id, role, location_id) "
                 "VALUES (gen_random_uuid(), $1, $2::uuid, 'NURSE', $3::uuid)",
                 user, a["id"], b["locations"][0]["id"])


def test_openapi_describes_the_api_and_its_auth(server):
    spec = httpx.get(server.base_url + "/schema/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "/api/v1/clinics/{clinic_id}/members" in spec["paths"]
    docs = httpx.get(server.base_url + "/schema/swagger")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_cors_allows_only_configured_origins(server):
    ok = httpx.options(server.base_url + "/api/v1/clinics", headers={
        "Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "GET"})
    assert ok.headers.get("access-control-allow-origin") == "http://127.0.0.1:8000"
    evil = httpx.options(server.base_url + "/api/v1/clinics", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert evil.headers.get("access-control-allow-origin") is None
