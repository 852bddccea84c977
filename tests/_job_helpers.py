"""Job functions for tests/test_jobs.py: module-level, so a worker process can import them."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

GATES: dict[str, threading.Event] = {}  # thread-mode tests: a job waits on its gate


def counted(ctx, steps: int = 4, gate: str | None = None, delay: float = 0.0) -> dict:
    """Reports progress step by step; waits on ``GATES[gate]`` before each step (thread mode)."""
    for i in range(steps):
        if gate is not None:
            while not GATES[gate].wait(0.01):
                ctx.check()
        if delay:
            time.sleep(delay)
        ctx.check()
        ctx.progress((i + 1) / steps, f"step {i + 1} of {steps}")
    return {"steps": steps, "pid": os.getpid()}


def loop_until_cancelled(ctx, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.check()
        ctx.progress(0.5, "looping")
        time.sleep(0.01)
    return "not cancelled"


def ignores_cancel(ctx, seconds: float = 30.0) -> str:
    time.sleep(seconds)
    return "slept"


def fails(ctx) -> None:
    raise RuntimeError("broken on purpose")


def worker_facts(ctx) -> dict:
    return {"pid": os.getpid(), "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "omp": os.environ.get("OMP_NUM_THREADS")}


def arrays(ctx, n: int = 5) -> dict:
    return {"maps": np.arange(n, dtype=np.float32), "delta": 0.25, "note": "computed"}
