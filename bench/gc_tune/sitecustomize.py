"""Diagnostic only: bench/fanout.py puts this folder on the servers' PYTHONPATH (with
--server-gc or --gc-stats) to tune or watch their garbage collector without touching the
application.

CAREWIRE_BENCH_GC="off" disables the cyclic collector; "gen0,gen1,gen2" sets the thresholds
(Python's default is 700,10,10).
CAREWIRE_BENCH_GC_STATS=PATH: time every collection (gc.callbacks) and rewrite PATH.<pid> as
JSON {"seconds": [g0, g1, g2], "count": [g0, g1, g2]} every 0.25 s from a daemon thread.
"""

import gc
import os

_spec = os.environ.get("CAREWIRE_BENCH_GC", "").strip()
if _spec == "off":
    gc.disable()
elif _spec:
    gc.set_threshold(*(int(x) for x in _spec.split(",")))

_stats = os.environ.get("CAREWIRE_BENCH_GC_STATS", "").strip()
if _stats:
    import json
    import threading
    import time

    _seconds = [0.0, 0.0, 0.0]
    _count = [0, 0, 0]
    _began = [0.0]

    def _timer(phase: str, info: dict) -> None:  # type: ignore[type-arg]
        if phase == "start":
            _began[0] = time.perf_counter()
        else:
            g = info["generation"]
            _seconds[g] += time.perf_counter() - _began[0]
            _count[g] += 1

    gc.callbacks.append(_timer)
    _path = f"{_stats}.{os.getpid()}"

    def _dump() -> None:
        while True:
            time.sleep(0.25)  # the reporting period
            with open(_path + ".tmp", "w") as f:
                json.dump({"seconds": list(_seconds), "count": list(_count)}, f)
            os.replace(_path + ".tmp", _path)

    threading.Thread(target=_dump, name="bench-gc-stats", daemon=True).start()
