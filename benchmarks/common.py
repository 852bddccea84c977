"""Shared helpers for the benchmark scripts: where results go, and what every result records.

    from common import write_result, timed
    write_result("model_latency", {"cases": [...]})   # -> benchmarks/results/model_latency.json

Every result file carries the machine (CPU model, cores, load average before/after), the library versions
and the date, because a latency means nothing without them. Files are written atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Where and with what a benchmark ran."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        from hfnet_core import __version__

        info["hfnet"] = __version__
    except ImportError:
        pass
    return info


def write_result(name: str, result: dict[str, Any], results_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``result`` plus machine info and date to ``<results_dir>/<name>.json`` atomically."""
    from hfnet_core.atomic import write_text_atomic

    out_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    payload = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **result,
    }
    path = out_dir / f"{name}.json"
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def timed(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call; ``sync`` waits for an accelerator."""
    if sync:
        sync()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    if sync:
        sync()
    return time.perf_counter() - t0, time.process_time() - c0


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
