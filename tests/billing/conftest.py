"""Billing's session: every payment provider fake that exists (tests/billing/fakes/*.py, each a
local server speaking its provider's API), a carewire server pointed at them, and a clinic per
provider with fees, the provider chosen and its credentials stored through the REST route.

Tests that need a provider take `provider_world`, parametrized over the fakes found, so the
same steps run once per provider."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

import tests.billing.fakes as fakes_pkg
from tests import servers
from tests.billing.adapter_calls import configure  # noqa: F401 - the adapter tests' settings fixture
from tests.conftest import Api, Env

TZ = ZoneInfo("Asia/Kolkata")
ALL_DAY = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]
FEES = {"video": 50_000, "in_person": 30_000}
#: A provider call gives up after this long in these tests (hang_next -> 503 quickly).
TIMEOUT = "2"


def fake_classes() -> dict[str, type[Any]]:
    """provider name -> its fake's class, for every module under tests/billing/fakes."""
    found: dict[str, type[Any]] = {}
    for info in pkgutil.iter_modules(fakes_pkg.__path__):
        module = importlib.import_module(f"tests.billing.fakes.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == module.__name__ and isinstance(getattr(cls, "name", None), str)
                    and all(hasattr(cls, m) for m in ("pay", "webhook", "credentials", "env"))):
                found[cls.name] = cls
    return found


PROVIDERS = sorted(fake_classes())


@pytest.fixture(scope="session")
def payment_fakes() -> Iterator[dict[str, Any]]:
    started = {name: cls().start() for name, cls in fake_classes().items()}
    yield started
    for fake in started.values():
        fake.stop()


@pytest.fixture(scope="session")
def billing_env(env: Env, payment_fakes: dict[str, Any]) -> Env:
    e = Env(env)
    for fake in payment_fakes.values():
        e.update(fake.env())
    e.update(CAREWIRE_PAYMENT_TIMEOUT_SECONDS=TIMEOUT)
    return e


@pytest.fixture(scope="session")
def billing_server(billing_env: Env) -> Iterator[servers.Server]:
    srv = servers.Server(billing_env)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def bapi(billing_server: servers.Server) -> Iterator[Api]:
    """The API of the server that reaches the provider fakes."""
    with httpx.Client(base_url=billing_server.base_url + "/api/v1", timeout=30) as client:
        yield Api(client)


_day = iter(range(3, 700))


def fresh_day() -> date:
    """A different future day per call, so bookings never share a doctor's time."""
    return (datetime.now(TZ) + timedelta(days=next(_day))).date()


def at(day: date, hhmm: str) -> str:
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=TZ).isoformat()


class World:
    """A clinic taking payments through `provider`, its people, and helpers that speak HTTP."""

    def __init__(self, api: Api, db: Any, clinic: dict[str, Any], fake: Any) -> None:
        self.api, self.db, self.clinic, self.fake = api, db, clinic, fake
        self.id = clinic["id"]
        self.provider = fake.name if fake else None

    def __getitem__(self, key: str) -> Any:
        return self.clinic[key]

    def book(self, kind: str = "video", patient: str = "patient") -> dict[str, Any]:
        """A booking by the patient; the invoice billing opened for it under `invoice_id`."""
        body = {"clinic_id": self.id, "doctor_id": self.clinic["doctor"]["user_id"],
                "patient_id": self.clinic[patient]["user_id"], "type": kind,
                "start": at(fresh_day(), "10:00")}
        if kind == "in_person":
            body["location_id"] = self.clinic["locations"][0]["id"]
        r = self.api.as_(self.clinic[patient]["token"], "POST", "/appointments", json=body)
        assert r.status_code == 201, r.text
        appointment = r.json()
        rows = self.db.fetch("SELECT id FROM billing_invoices WHERE appointment_id = $1",
                             uuid.UUID(appointment["id"]))
        appointment["invoice_id"] = str(rows[0]["id"]) if rows else None
        return appointment

    def checkout(self, invoice_id: str, token: str | None = None) -> httpx.Response:
        return self.api.as_(token or self.clinic["patient"]["token"], "POST", "/billing/payments",
                            json={"invoice_id": invoice_id})

    def appointment_status(self, appointment_id: str) -> str:
        return str(self.db.fetch("SELECT status FROM appointments WHERE id = $1",
                                 uuid.UUID(appointment_id))[0]["status"])

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        return self.db.fetch("SELECT status, amount_paid, total FROM billing_invoices "
                             "WHERE id = $1", uuid.UUID(invoice_id))[0]

    def payment(self, payment_id: str) -> dict[str, Any]:
        return self.db.fetch("SELECT * FROM billing_payments WHERE id = $1",
                             uuid.UUID(payment_id))[0]

    def webhook_path(self, provider: str | None = None, clinic_id: str | None = None) -> str:
        return f"/webhooks/payments/{provider or self.provider}/{clinic_id or self.id}"

    def post_webhook(self, body: bytes, headers: dict[str, str],
                     client: httpx.Client | None = None) -> httpx.Response:
        return (client or self.api.http).post(self.webhook_path(), content=body,
                                              headers=headers)


def make_world(api: Api, bapi: Api, db: Any, sa_token: str, clinic_factory: Any,
               member_factory: Any, fake: Any, **billing: Any) -> World:
    settings: dict[str, Any] = {"currency": "INR", "fees": FEES, **billing}
    if fake is not None:
        settings["provider"] = fake.name
    c = clinic_factory(payment_required_types=["video"], payment_window_minutes=30,
                       patient_max_future_appointments=500, billing=settings)
    loc = c["locations"][0]["id"]
    c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="admin")
    c["doctor"] = member_factory(c["id"], "DOCTOR", location_id=loc, tag="doc")
    c["desk"] = member_factory(c["id"], "RECEPTIONIST", location_id=loc, tag="desk")
    c["accountant"] = member_factory(c["id"], "ACCOUNTANT", tag="acct")
    c["patient"] = member_factory(c["id"], "PATIENT", tag="pat")
    c["other_patient"] = member_factory(c["id"], "PATIENT", tag="pat2")
    r = api.as_(sa_token, "PUT", f"/clinics/{c['id']}/doctors/{c['doctor']['user_id']}/schedule",
                json={"rules": [{**rule, "location_id": loc} for rule in ALL_DAY],
                      "slot_minutes": 30})
    assert r.status_code == 200, r.text
    if fake is not None:
        r = bapi.as_(c["admin"]["token"], "PUT",
                     f"/clinics/{c['id']}/billing/credentials/{fake.name}",
                     json={"credentials": fake.credentials()})
        assert r.status_code == 200, r.text
    return World(bapi, db, c, fake)


@pytest.fixture(scope="session", params=PROVIDERS)
def provider_world(request: Any, api: Api, bapi: Api, db: Any, sa_token: str,
                   clinic_factory: Any, member_factory: Any,
                   payment_fakes: dict[str, Any]) -> World:
    """A clinic paying through each provider fake in turn."""
    return make_world(api, bapi, db, sa_token, clinic_factory, member_factory,
                      payment_fakes[request.param])


@pytest.fixture(scope="session")
def stripe_world(api: Api, bapi: Api, db: Any, sa_token: str, clinic_factory: Any,
                 member_factory: Any, payment_fakes: dict[str, Any]) -> World:
    return make_world(api, bapi, db, sa_token, clinic_factory, member_factory,
                      payment_fakes["stripe"])


@pytest.fixture(scope="session")
def desk_world(api: Api, bapi: Api, db: Any, sa_token: str, clinic_factory: Any,
               member_factory: Any) -> World:
    """A clinic with fees and no online provider: patients pay at the desk."""
    return make_world(api, bapi, db, sa_token, clinic_factory, member_factory, None)
