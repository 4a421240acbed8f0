"""A moto server: SES v2 and SNS over their real HTTP APIs (aioboto3 talks to it unchanged)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
from moto.server import ThreadedMotoServer

from tests import servers

REGION = "ap-south-1"
#: moto accepts any credentials; these are what a clinic would store.
ACCESS_KEY_ID = "AKIAFAKEFAKEFAKE1234"
SECRET_ACCESS_KEY = "fake-secret-access-key-canary-0001"
#: The environment a carewire server needs to reach moto's S3 as the deployment.
ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
       "AWS_DEFAULT_REGION": REGION}


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


def s3(moto: Moto) -> Any:
    """A boto3 S3 client of moto's, as the deployment."""
    return boto3.client("s3", endpoint_url=moto.url, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)


@contextmanager
def moto_with_bucket(bucket: str) -> Iterator[Moto]:
    """A moto server holding one empty S3 bucket (invoice PDFs, recordings). moto keeps its
    state per process, not per server: the bucket is emptied and removed afterwards, so the next
    module of this process (pytest-xdist runs several files in one) starts from nothing."""
    with moto_server() as m:
        client = s3(m)
        _remove(client, bucket)  # left by a module that did not finish
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        try:
            yield m
        finally:
            _remove(client, bucket)


def _remove(client: Any, bucket: str) -> None:
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        pass
