"""Where recordings are kept: the S3 bucket `settings.recording_bucket` (the egress writes the
file there; we only hand out short-lived presigned GET links to it). The client is the shared
one (domain/s3.py)."""

from __future__ import annotations

import uuid

from domain import s3, settings


def recording_key(clinic_id: uuid.UUID, appointment_id: uuid.UUID,
                  recording_id: uuid.UUID) -> str:
    """Our key for a recording's file (never the provider's say)."""
    return f"recordings/{clinic_id}/{appointment_id}/{recording_id}.mp4"


async def presigned_get(key: str, *, seconds: int) -> str:
    """A link that downloads the file for `seconds` (signing is local: no request to S3)."""
    async with s3.client() as client:
        url: str = await client.generate_presigned_url(
            "get_object", Params={"Bucket": settings.get().recording_bucket, "Key": key},
            ExpiresIn=seconds)
    return url
