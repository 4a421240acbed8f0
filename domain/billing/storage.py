"""Where invoice PDFs are kept: an S3 bucket (`settings.invoice_bucket`, through
`settings.aws_endpoint_url`: moto in tests, any S3-compatible store in production) or, when no
bucket is set, the folder `settings.invoice_dir` (the embedded default).

The S3 client is the shared one (domain/s3.py). Keys are ours
(`invoices/{clinic}/{number}-{status}.pdf`), never a caller's, so a key cannot climb out of the
folder; the check below holds that anyway."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from domain import s3, settings


def _path(key: str) -> Path:
    root = Path(settings.get().invoice_dir).resolve()
    path = (root / key).resolve()
    if root not in path.parents:
        raise ValueError(f"storage key {key!r} leaves {root}")
    return path


async def put(key: str, data: bytes, content_type: str = "application/pdf") -> None:
    bucket = settings.get().invoice_bucket
    if bucket:
        async with s3.client() as bucket_s3:
            await bucket_s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        return
    path = _path(key)

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file

    await asyncio.to_thread(write)


async def get(key: str) -> bytes | None:
    """The stored bytes, or None when nothing is stored under the key."""
    bucket = settings.get().invoice_bucket
    if bucket:
        async with s3.client() as bucket_s3:
            try:
                found = await bucket_s3.get_object(Bucket=bucket, Key=key)
            except bucket_s3.exceptions.NoSuchKey:
                return None
            async with found["Body"] as body:
                return bytes(await body.read())
    path = _path(key)
    try:
        return await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return None
