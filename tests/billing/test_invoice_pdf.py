"""Invoice PDFs: rendered with fpdf2, read back with pypdf (the totals in the clinic's currency
format, the clinic's and patient's names, the status), stored in S3 (moto, through a server
whose settings name a bucket) or in a folder, once per state of the invoice."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from pypdf import PdfReader

from domain.billing.models import InvoiceStatus
from domain.money import display
from tests import servers
from tests.billing.test_invoices import BILLING
from tests.communication.fakes import aws

BUCKET = "carewire-invoices"
AWS_ENV = {"AWS_ACCESS_KEY_ID": aws.ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": aws.SECRET_ACCESS_KEY,
           "AWS_DEFAULT_REGION": aws.REGION}


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture(scope="module")
def moto() -> Iterator[aws.Moto]:
    with aws.moto_with_bucket(BUCKET) as m:
        yield m


def s3_keys(moto: aws.Moto) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name=aws.REGION,
                      aws_access_key_id=aws.ACCESS_KEY_ID,
                      aws_secret_access_key=aws.SECRET_ACCESS_KEY)
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


@pytest.fixture(scope="module")
def s3_server(env: Any, moto: aws.Moto) -> Iterator[httpx.Client]:
    """The gateway with a bucket configured: its PDFs go to moto's S3."""
    srv = servers.Server({**env, **AWS_ENV, "CAREWIRE_INVOICE_BUCKET": BUCKET,
                          "CAREWIRE_AWS_ENDPOINT_URL": moto.url})
    srv.start()
    try:
        with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client:
            yield client
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def billed(api: Any, clinic_factory: Any, member_factory: Any) -> dict[str, Any]:
    c: dict[str, Any] = clinic_factory(billing=BILLING)
    c["accountant"] = member_factory(c["id"], "ACCOUNTANT", tag="pdfacct")
    c["patient"] = member_factory(c["id"], "PATIENT", tag="pdfpat")
    r = api.as_(c["accountant"]["token"], "POST", "/billing/invoices", json={
        "clinic_id": c["id"], "patient_id": c["patient"]["user_id"], "discount": 2500,
        "lines": [{"description": "Video consultation", "quantity": 1, "unit_amount": 80000},
                  {"description": "Follow-up note", "quantity": 2, "unit_amount": 12525}]})
    assert r.status_code == 201, r.text
    r = api.as_(c["accountant"]["token"], "POST", f"/billing/invoices/{r.json()['id']}/finalize")
    assert r.status_code == 200, r.text
    c["invoice"] = r.json()
    return c


def test_totals_read_back_from_the_pdf_stored_in_s3(s3_server: httpx.Client, moto: aws.Moto,
                                                    billed: dict[str, Any],
                                                    domain_layer: Any) -> None:
    inv = billed["invoice"]
    # 80000 + 2 x 12525 = 105050; less 2500 = 102550; 18 % GST = 18459; total 121009
    assert (inv["subtotal"], inv["discount"], inv["tax"], inv["total"]) == (105050, 2500, 18459,
                                                                            121009)
    auth = {"Authorization": f"Bearer {billed['patient']['token']}"}
    r = s3_server.get(f"/billing/invoices/{inv['id']}/pdf", headers=auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    text = text_of(r.content)
    for shown in (inv["number"], "Asha Clinics Pvt Ltd", "12 MG Road, Pune", "27AAACA1234A1Z5",
                  billed["patient"]["name"], "Video consultation", "GST (18 %)", "Payment due",
                  display(121009, "INR"), display(18459, "INR"), display(105050, "INR"),
                  display(2500, "INR"), display(80000, "INR"), "Asia/Kolkata"):
        assert shown in text, (shown, text)
    assert "₹1,210.09" in text
    key = f"invoices/{billed['id']}/{inv['number']}-open.pdf"
    stored = s3_keys(moto)
    assert stored.get(key) == r.content
    # stored once: a second read is the same document (a new render would carry a new date)
    again = s3_server.get(f"/billing/invoices/{inv['id']}/pdf", headers=auth)
    assert again.content == r.content and len(s3_keys(moto)) == len(stored)

    # paid: the next PDF says so, under the paid state's key
    from domain import db
    from domain.billing.commands.invoices import record_payment

    async def pay() -> Any:
        async with db.transaction():
            return await record_payment(uuid.UUID(inv["id"]), 121009, "INR")

    assert domain_layer.run(pay()).status is InvoiceStatus.PAID
    paid = s3_server.get(f"/billing/invoices/{inv['id']}/pdf", headers=auth)
    assert paid.status_code == 200
    text = text_of(paid.content)
    assert "Status: Paid" in text and "Payment due" not in text
    assert f"Amount paid {display(121009, 'INR')}" in text.replace("\n", " ")
    assert f"{inv['number']}-paid.pdf" in "".join(s3_keys(moto))


def test_a_draft_has_no_pdf(api: Any, billed: dict[str, Any]) -> None:
    r = api.as_(billed["accountant"]["token"], "POST", "/billing/invoices", json={
        "clinic_id": billed["id"], "patient_id": billed["patient"]["user_id"],
        "lines": [{"description": "x", "quantity": 1, "unit_amount": 100}]})
    r = api.as_(billed["accountant"]["token"], "GET", f"/billing/invoices/{r.json()['id']}/pdf")
    assert r.status_code == 409


def test_folder_storage_and_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    billed: dict[str, Any], domain_layer: Any) -> None:
    """The embedded default: no bucket, a folder. The finalisation's job renders and stores it."""
    from domain import settings
    from tasks.billing_pdf import render_invoice_pdf

    monkeypatch.setenv("CAREWIRE_INVOICE_DIR", str(tmp_path))
    monkeypatch.setenv("CAREWIRE_INVOICE_BUCKET", "")
    settings.get.cache_clear()
    try:
        inv = billed["invoice"]
        domain_layer.run(render_invoice_pdf(job_key=f"invoice-pdf:{inv['id']}",
                                            payload={"invoice_id": inv["id"]}))
        files = list(tmp_path.rglob("*.pdf"))
        assert len(files) == 1 and files[0].name.startswith(inv["number"])
        assert display(121009, "INR") in text_of(files[0].read_bytes())
        # a second run finds it stored and leaves it
        before = files[0].stat().st_mtime_ns
        domain_layer.run(render_invoice_pdf(job_key="again", payload={"invoice_id": inv["id"]}))
        assert files[0].stat().st_mtime_ns == before
    finally:
        monkeypatch.undo()
        settings.get.cache_clear()


def test_finalising_stores_the_pdf_through_a_worker(env: Any, tmp_path: Path) -> None:
    """Finalisation plans the render job; a real worker renders and stores it after COMMIT,
    before anyone asks for it. A stack of its own: the shared database's backlog of jobs
    (every test's invoices) would make the wait a guess."""
    with servers.isolated_stack(env) as (own, _redis):
        own = {**own, "CAREWIRE_INVOICE_DIR": str(tmp_path), "CAREWIRE_INVOICE_BUCKET": ""}
        srv = servers.Server(own)
        srv.start()
        try:
            with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as http:
                r = http.post("/auth/login", json={"email": "root@isolated.test",
                                                   "password": "root-password-1"})
                auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
                r = http.post("/clinics", headers=auth, json={
                    "name": "Worker Clinic", "timezone": "Asia/Kolkata",
                    "settings": {"billing": BILLING}})
                assert r.status_code == 201, r.text
                cid = r.json()["id"]
                r = http.post(f"/clinics/{cid}/members", headers=auth, json={
                    "email": f"p-{uuid.uuid4().hex[:8]}@example.test", "name": "Pat",
                    "role": "PATIENT"})
                assert r.status_code == 201, r.text
                r = http.post("/billing/invoices", headers=auth, json={
                    "clinic_id": cid, "patient_id": r.json()["user_id"],
                    "lines": [{"description": "Consultation", "quantity": 1,
                               "unit_amount": 70000}]})
                assert r.status_code == 201, r.text
                r = http.post(f"/billing/invoices/{r.json()['id']}/finalize", headers=auth)
                assert r.status_code == 200, r.text
                inv = r.json()
                key = f"invoices/{cid}/{inv['number']}-open.pdf"
                assert not (tmp_path / key).exists()
                with servers.workers(own, 1):
                    servers.eventually(lambda: (tmp_path / key).is_file(), timeout=60)
                assert display(inv["total"], "INR") in text_of((tmp_path / key).read_bytes())
                r = http.get(f"/billing/invoices/{inv['id']}/pdf", headers=auth)
                assert r.content == (tmp_path / key).read_bytes()  # served as stored
        finally:
            srv.stop()
