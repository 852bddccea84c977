"""Hostile checkpoints (issue 10): peak RSS and time until each is refused; model memory estimate vs reality.

Target: no file under 10 MB makes a process exceed 1.5 GB RSS or spend more than 10 s before it is refused.

1. ``refusals``: the corpus of ``tests/_hostile_files.py`` loaded in one fresh child process, its peak RSS
   reset before each file (``/proc/self/clear_refs``), so each row is that file's own peak. The first row
   (the valid file) also pays the process's one-time costs (the meta-device machinery); the slowest refusal
   is measured again as the first thing a fresh process does. Wall and CPU seconds both: on a loaded
   machine wall time is several times the CPU time.
2. ``estimate_vs_real``: for a few paper-scale configs, ``limits.estimate_model_memory`` beside the peak RSS
   growth of a fresh child that builds the model and runs ``inspect`` on one clip (1 thread).

    python benchmarks/bench_hostile_files.py            # -> benchmarks/results/hostile_files.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from common import write_result  # noqa: E402

RSS_TARGET = 1.5e9
TIME_TARGET_S = 10.0

_REAL = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from hfnet_core.model import ModelConfig, VideoClassifier
from hfnet_core import limits
cfg = ModelConfig.from_dict(json.loads(sys.argv[1]))
est = limits.estimate_model_memory(cfg)
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = rss()
model = VideoClassifier(cfg).eval()
x = torch.randn(1, cfg.num_segments, 3, cfg.input_size, cfg.input_size)
with torch.inference_mode():
    model.inspect(x)
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
print(json.dumps({"estimated_bytes": est.total, "estimated_parameter_bytes": est.parameter_bytes,
                  "estimated_activation_bytes": est.activation_bytes, "real_peak_growth_bytes": peak - before}))
"""

CONFIGS = {
    "tsn_bninception_8f_224": {"hf_placement": "none", "num_segments": 8},
    "hf_tsn_bninception_16f_224": {"hf_placement": "all", "num_segments": 16},
    "hf_trn_bninception_16f_224": {"hf_placement": "all", "consensus": "trn", "num_segments": 16},
    "tsn_resnet50_8f_224": {"backbone": "resnet50", "hf_placement": "none", "num_segments": 8,
                            "input_convention": {"channel_order": "RGB", "scale": 1.0,
                                                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    env.pop("HFNET_MAX_MODEL_BYTES", None)
    return env


def _corpus_rows(folder: Path, only: str | None = None) -> list[dict]:
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "_hostile_files.py"), str(folder)] + ([only] if only else []),
                       capture_output=True, text=True, env=_env(), timeout=1800)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        rows = _corpus_rows(Path(d) / "corpus")
        # the slowest refusal (the meta-device forward) as the first thing a fresh process does
        first = _corpus_rows(Path(d) / "corpus", "activations_8gb")[0]
    for row in rows + [first]:
        row.pop("path", None)
        row["message"] = row["message"].split(": ", 1)[-1][:200]
    refused = [row for row in rows if row["file"] != "valid"]
    estimates = {}
    for name, cfg in CONFIGS.items():
        r = subprocess.run([sys.executable, "-c", _REAL, json.dumps(cfg)], capture_output=True, text=True,
                           env=_env(), timeout=1800)
        if r.returncode:
            raise SystemExit(r.stderr)
        e = json.loads(r.stdout)
        e["estimate_over_real"] = round(e["estimated_bytes"] / max(e["real_peak_growth_bytes"], 1), 2)
        estimates[name] = e
        print(name, e)
    summary = {
        "files": len(rows),
        "largest_file_bytes": max(row["bytes"] for row in rows),
        "all_refused_with_the_expected_message": all(row["expected"] in row["message"] for row in refused),
        "max_peak_rss_bytes_refused": max(row["peak_rss_bytes"] for row in refused),
        "max_seconds_refused": max(row["seconds"] for row in refused),
        "rss_target_met": max(row["peak_rss_bytes"] for row in refused) < RSS_TARGET,
        "time_target_met": max(row["seconds"] for row in refused) < TIME_TARGET_S,
        "valid_file_first_load_seconds": next(row["seconds"] for row in rows if row["file"] == "valid"),
        "valid_file_first_load_cpu_seconds": next(row["cpu_seconds"] for row in rows if row["file"] == "valid"),
        "meta_forward_refusal_first_in_fresh_process": {k: first[k] for k in ("seconds", "cpu_seconds",
                                                                              "peak_rss_bytes", "outcome")},
    }
    for row in rows:
        print(f"{row['file']:24s} {row['bytes'] / 1e6:6.2f} MB  {row['outcome']:20s} {row['seconds']:6.2f} s "
              f"({row['cpu_seconds']:5.2f} s CPU)  {row['peak_rss_bytes'] / 2**20:6.0f} MiB")
    print(json.dumps(summary, indent=1))
    path = write_result("hostile_files", {"targets": {"peak_rss_bytes": RSS_TARGET, "seconds": TIME_TARGET_S},
                                          "summary": summary, "refusals": rows, "estimate_vs_real": estimates})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
