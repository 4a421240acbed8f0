"""A moto server: SES v2 and SNS over their real HTTP APIs (aioboto3 talks to it unchanged)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from moto.server import ThreadedMotoServer

from tests import servers

REGION = "ap-south-1"
#: moto accepts any credentials; these are what a clinic would store.
ACCESS_KEY_ID = "AKIAFAKEFAKEFAKE1234"
SECRET_ACCESS_KEY = "fake-secret-access-key-canary-0001"


class Moto:
    def __init__(self, url: str) -> None:
        self.url = url

    def data(self) -> dict[str, Any]:
        """Everything moto recorded: sent mail (`ses`), SMS and publishes (`sns`)."""
        return httpx.get(f"{self.url}/moto-api/data.json", timeout=10).json()  # type: ignore[no-any-return]

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=10)


@contextmanager
def moto_server() -> Iterator[Moto]:
    port = servers.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield Moto(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@contextmanager
def moto_with_bucket(bucket: str) -> Iterator[Moto]:
    """A moto server holding one empty S3 bucket (in REGION)."""
    import boto3

    with moto_server() as m:
        boto3.client("s3", endpoint_url=m.url, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
                     aws_secret_access_key=SECRET_ACCESS_KEY).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield m
