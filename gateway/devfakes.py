"""`carewire dev` runs the providers' local fakes the tests use (tests/*/fakes, from this
checkout), so a newcomer sees payments and video end to end without provider accounts. An
installed package has no tests/ beside it: there `from_checkout` answers None and the demo runs
without them."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def from_checkout(module: str) -> ModuleType | None:
    """The checkout's test module (`tests.video.fakes.livekit`), or None when it is absent."""
    if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
        return None
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(module)
