"""msgspec as python-socketio's JSON module: lets the hub emit Structs directly (~10x faster
than json). python-socketio passes `separators=`; we ignore keyword arguments."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def dumps(obj: Any, **_: Any) -> str:
    return _encoder.encode(obj).decode()


def loads(s: str | bytes, **_: Any) -> Any:
    return _decoder.decode(s)
