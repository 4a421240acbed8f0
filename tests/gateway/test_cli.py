"""The CLI's set-up commands are safe to run again."""

from __future__ import annotations

from tests import servers


def test_migrate_on_an_up_to_date_database(env):
    done = servers.cli(env, "migrate")
    assert done.returncode == 0, done.stderr


def test_create_admin_creates_then_resets(env, api, db):
    email = "second.admin@carewire.test"
    first = servers.cli(env, "create-admin", "--email", email, "--password", "first-pass-1")
    assert first.returncode == 0, first.stderr
    api.token(email, "first-pass-1")
    again = servers.cli(env, "create-admin", "--email", email, "--password", "second-pass-2")
    assert again.returncode == 0, again.stderr
    assert api.http.post("/auth/login", json={"email": email, "password": "first-pass-1"}
                         ).status_code == 401
    me = api.as_(api.token(email, "second-pass-2"), "GET", "/users/me").json()
    assert me["is_super_admin"] is True
    assert db.fetch("SELECT count(*) AS n FROM users WHERE email = $1", email)[0]["n"] == 1


def test_create_admin_refuses_a_weak_password(env):
    done = servers.cli(env, "create-admin", "--email", "weak@carewire.test", "--password", "x")
    assert done.returncode == 2
    assert "password" in done.stderr


def test_seed_demo_is_idempotent(env, db):
    first = servers.cli(env, "seed-demo")
    assert first.returncode == 0, first.stderr
    second = servers.cli(env, "seed-demo")
    assert second.returncode == 0, second.stderr
    assert "already there" in second.stdout
    assert db.fetch("SELECT count(*) AS n FROM clinics WHERE name = 'Sunrise Family Clinic'"
                    )[0]["n"] == 1
    # the demo waiting room is set up once a day, whatever the number of runs
    entries = db.fetch("""SELECT count(*) AS n FROM queue_entries e JOIN clinics c ON c.id = e.clinic_id
                          WHERE c.name = 'Sunrise Family Clinic'""")[0]["n"]
    assert entries == 3
