"""The database matches what the code believes: the raw-SQL migrations are the schema of
record (README, "Layout"), and the code's SQL names only what they created."""

from __future__ import annotations

import httpx

from tests.sql_names import ROOT, inserted_columns, python_files, table_owners

CODE = ("domain", "gateway", "realtime", "tasks")


def test_every_table_is_created_by_one_context_migrations(db):
    """What the ownership rule (test_structure.py) reads from the migrations is the whole
    schema: no table comes from anywhere else (Piccolo's own `migration` ledger aside)."""
    tables = {r["table_name"] for r in db.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")}
    assert tables - {"migration"} == set(table_owners())


def test_every_column_the_code_inserts_into_exists_in_the_database(db):
    """The column lists of the code's `INSERT INTO t (...)`, against the migrated schema."""
    columns = {(r["table_name"], r["column_name"]) for r in db.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public'")}
    missing, seen = [], set()
    for path in python_files(*CODE):
        for line, table, column in inserted_columns(path.read_text()):
            seen.add(table)
            if (table, column) not in columns:
                missing.append(f"{path.relative_to(ROOT)}:{line} {table}.{column}")
    assert missing == []
    assert seen >= {"users", "memberships", "appointments", "queue_entries", "events"}


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
