"""The one S3 client setup (invoice PDFs, video recordings): the deployment's credentials from
the standard AWS chain (environment, profile, instance role), `settings.aws_endpoint_url` when
set (moto in tests, any S3-compatible store in production), AWS_DEFAULT_REGION else us-east-1."""

from __future__ import annotations

import os
from typing import Any

from domain import settings

_session: Any = None


def _aws_session() -> Any:
    """Imported on first use (aioboto3 is slow to import; most processes never touch S3)."""
    global _session
    if _session is None:
        import aioboto3

        _session = aioboto3.Session()
    return _session


def client() -> Any:
    """An async context manager giving an S3 client (`async with s3.client() as c:`)."""
    cfg = settings.get()
    return _aws_session().client(
        "s3", endpoint_url=cfg.aws_endpoint_url or None,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
