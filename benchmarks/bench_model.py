"""Benchmark: HF-TSN vs TSN inference latency, BNInception width 1.0, 224 px, 8 frames, 174 classes.

In one run, for batch 1 and 8 clips, contiguous and channels_last memory format, on the CPU (and CUDA
when available), this times in rotating order (ABCD, BCDA, ...; so slow drift and the machine's other
load hit every model alike):

* ``tsn``: the baseline;
* ``hf_<impl>``: HF after all ten blocks, for each gate implementation ("concat", "shift", "matmul");
  same backbone weights as ``tsn``, small random gates;
* ``hf_<default>_inspect``: ``model.inspect`` (logits + features + gate maps) of the default
  implementation, against its plain ``forward``.

At batch 8 the slow reference ``concat`` is left out (``--impls-b8``). It reports, per case, the median
wall-clock and process-CPU time of each model, and three HF/TSN ratios: of medians, the median of
per-round ratios (each HF call against the TSN call of the same round) and of minimums (on a machine
shared with other jobs, interference only adds time, so the fastest of many calls is the least disturbed
estimate) - plus an in-run estimate, 1 / (1 - share of each HF call's time spent inside its HF modules),
which needs no second call and so is the steadiest on a busy machine. Targets: HF/TSN <= 1.03 (the FLOP ratio is ~1.0104) and inspect/forward <= 1.05. Writes
``benchmarks/results/model_latency.json``; cases that would overrun ``--budget-s`` are skipped and listed.

Run: ``python benchmarks/bench_model.py [--threads 2] [--quick] [--budget-s 400] [--name NAME]``. The load
average is recorded before and after each case: compare ratios, not absolute times, across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, timed, write_result  # noqa: E402

from hfnet_core.complexity import count_flops  # noqa: E402
from hfnet_core.temporal.hf import GATE_IMPLS  # noqa: E402
from hfnet_core.model import ModelConfig, VideoClassifier, build_model  # noqa: E402

FRAMES, SIZE, CLASSES = 8, 224, 174
TARGET_HF, TARGET_INSPECT = 1.03, 1.05


def build_models(device: torch.device, impls: tuple[str, ...]) -> dict[str, VideoClassifier]:
    torch.manual_seed(0)
    tsn = build_model("tsn_bninception", num_segments=FRAMES, num_classes=CLASSES).eval()
    models = {"tsn": tsn}
    for impl in impls:
        hf = build_model("hf_tsn_bninception", num_segments=FRAMES, num_classes=CLASSES, hf_impl=impl).eval()
        hf.base_model.load_state_dict(tsn.base_model.state_dict())
        hf.head.load_state_dict(tsn.head.state_dict())
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in hf.hf.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
        models[f"hf_{impl}"] = hf
    return {k: m.to(device) for k, m in models.items()}


def set_format(models: dict[str, VideoClassifier], channels_last: bool) -> None:
    # Only the backbone: nn.Module.to(memory_format=...) refuses the 5-D gate weights, and the gates'
    # products follow the features' format anyway.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in models.values():
        m.base_model.to(memory_format=fmt)


class HFTimer:
    """Wall time spent inside a model's HF modules during one call (forward hooks around each module).

    Within one forward, share = t_HF / t_total estimates HF/TSN as 1 / (1 - share) without comparing two
    separate calls: on a busy machine, interference hits the HF modules and the rest of the network
    alike, so this in-run estimate is steadier than the ratio of two calls.
    """

    def __init__(self, model: VideoClassifier, sync: Callable[[], None] | None) -> None:
        self.total = 0.0
        self._start = 0.0
        self._sync = sync
        self.handles = []
        for m in model.hf.values():
            self.handles.append(m.register_forward_pre_hook(self._pre))
            self.handles.append(m.register_forward_hook(self._post))

    def _pre(self, *_: Any) -> None:
        if self._sync:
            self._sync()
        self._start = time.perf_counter()

    def _post(self, *_: Any) -> None:
        if self._sync:
            self._sync()
        self.total += time.perf_counter() - self._start

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def run_case(models: dict[str, VideoClassifier], default_impl: str, batch: int, channels_last: bool,
             device: torch.device, rounds: int, warmup: int) -> dict[str, Any]:
    set_format(models, channels_last)
    x = torch.randn(batch, FRAMES, 3, SIZE, SIZE, device=device) * 50
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    calls: dict[str, Callable[[], Any]] = {k: (lambda m=m: m(x)) for k, m in models.items()}
    inspect_name = f"hf_{default_impl}_inspect"
    if f"hf_{default_impl}" in models:
        calls[inspect_name] = lambda m=models[f"hf_{default_impl}"]: m.inspect(x)
    names = list(calls)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    share: dict[str, list[float]] = {k: [] for k in names if k.startswith("hf_")}
    timers = {id(m): HFTimer(m, sync) for k, m in models.items() if k.startswith("hf_")}
    owner = {k: id(models[k if k != inspect_name else f"hf_{default_impl}"]) for k in names}
    load_before = os.getloadavg()[0]
    t_case = time.perf_counter()
    with torch.inference_mode():
        outs = {k: calls[k]() for k in names}
        logits = {k: (v.logits if hasattr(v, "logits") else v) for k, v in outs.items()}
        for _ in range(warmup - 1):
            for k in names:
                calls[k]()
        for r in range(rounds):
            for k in names[r % len(names):] + names[: r % len(names)]:
                timer = timers.get(owner[k])
                if timer:
                    timer.total = 0.0
                w, c = timed(calls[k], sync)
                wall[k].append(w)
                cpu[k].append(c)
                if timer:
                    share[k].append(timer.total / w)
    for t in timers.values():
        t.remove()
    # all HF implementations compute the same function
    hf_logits = [v for k, v in logits.items() if k.startswith("hf_")]
    max_impl_diff = max(((a - hf_logits[0]).abs().max().item() for a in hf_logits[1:]), default=0.0)
    entries = {k: {"median_wall_s": round(median(wall[k]), 5), "median_cpu_s": round(median(cpu[k]), 5),
                   "wall_s": [round(v, 5) for v in wall[k]], "cpu_s": [round(v, 5) for v in cpu[k]]}
               for k in names}

    for k in share:
        entries[k]["hf_share_median"] = round(median(share[k]), 5)

    def ratios(num: str, den: str) -> dict[str, float]:
        paired = [a / b for a, b in zip(wall[num], wall[den])]
        in_run = [1.0 / (1.0 - f) for f in share[num]] if num in share and den == "tsn" else []
        return {"in_run_estimate": round(median(in_run), 4) if in_run else None,
                "ratio_of_medians": round(median(wall[num]) / median(wall[den]), 4),
                "median_paired_ratio": round(median(paired), 4),
                "ratio_of_minimums": round(min(wall[num]) / min(wall[den]), 4),
                "cpu_ratio_of_medians": round(median(cpu[num]) / median(cpu[den]), 4),
                "cpu_ratio_of_minimums": round(min(cpu[num]) / min(cpu[den]), 4)}

    out = {
        "device": str(device),
        "batch": batch,
        "memory_format": "channels_last" if channels_last else "contiguous",
        "rounds": rounds,
        "loadavg_before": round(load_before, 2),
        "loadavg_after": round(os.getloadavg()[0], 2),
        "seconds": round(time.perf_counter() - t_case, 1),
        "max_logit_diff_between_impls": max_impl_diff,
        "entries": entries,
        "hf_vs_tsn": {k: ratios(k, "tsn") for k in names if k.startswith("hf_") and k != inspect_name},
    }
    if inspect_name in calls:
        out["inspect_vs_forward"] = ratios(inspect_name, f"hf_{default_impl}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--rounds", type=int, default=9, help="timed rounds at batch 1")
    ap.add_argument("--rounds-b8", type=int, default=4, help="timed rounds at batch 8")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--impls", default=",".join(GATE_IMPLS))
    ap.add_argument("--impls-b8", default="shift,matmul",
                    help="gate implementations timed at batch 8 (concat, the slow reference, only at batch 1)")
    ap.add_argument("--formats", default="channels_last,contiguous")
    ap.add_argument("--devices", default="cpu,cuda", help="cuda is skipped when not available")
    ap.add_argument("--budget-s", type=float, default=400.0, help="stop adding cases after this many seconds")
    ap.add_argument("--quick", action="store_true", help="batch 1 only, 3 rounds (smoke test)")
    ap.add_argument("--name", default="model_latency", help="result file name (benchmarks/results/<name>.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    impls = tuple(i for i in args.impls.split(",") if i)
    default_impl = ModelConfig().hf_impl
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    rounds1, rounds8 = (3, 2) if args.quick else (args.rounds, args.rounds_b8)
    devices = [torch.device(d) for d in args.devices.split(",")
               if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]

    tsn_flops = count_flops(build_model("tsn_bninception", num_segments=FRAMES), FRAMES, SIZE)["total"]
    hf_flops = count_flops(build_model("hf_tsn_bninception", num_segments=FRAMES), FRAMES, SIZE)["total"]
    t0 = time.perf_counter()
    cases, skipped = [], []
    tsn_s_per_clip = 0.0
    for device in devices:
        models = build_models(device, impls)
        for batch in batches:
            keep = impls if batch == 1 else tuple(i for i in args.impls_b8.split(",") if i in impls)
            subset = {k: m for k, m in models.items() if k == "tsn" or k[3:] in keep}
            for fmt in args.formats.split(","):
                rounds, warmup = (rounds1, 2) if batch == 1 else (rounds8, 1)
                # skip a case that the slowest TSN call so far says would overrun the budget
                expected = tsn_s_per_clip * batch * (len(subset) + 1) * (rounds + warmup)
                if time.perf_counter() - t0 + expected > args.budget_s:
                    skipped.append(f"{device}/b{batch}/{fmt}")
                    continue
                case = run_case(subset, default_impl, batch, fmt == "channels_last", device, rounds, warmup)
                tsn_s_per_clip = max(tsn_s_per_clip, case["entries"]["tsn"]["median_wall_s"] / batch)
                cases.append(case)
                line = ", ".join(f"{k} {v['median_paired_ratio']:.3f}/{v['cpu_ratio_of_medians']:.3f}/"
                                 f"{v['in_run_estimate']:.3f}" for k, v in case["hf_vs_tsn"].items())
                iv = case.get("inspect_vs_forward", {})
                insp = f"{iv.get('median_paired_ratio', float('nan')):.3f}/{iv.get('cpu_ratio_of_medians', float('nan')):.3f}"
                print(f"{device} batch {batch} {case['memory_format']:<13} tsn "
                      f"{case['entries']['tsn']['median_wall_s'] * 1e3:7.0f} ms | HF/TSN (paired/cpu/in-run) {line} | "
                      f"inspect/forward {insp} | load {case['loadavg_before']:.1f}->{case['loadavg_after']:.1f}",
                      flush=True)
        del models

    def key(c: dict[str, Any]) -> str:
        return f"{c['device']}/b{c['batch']}/{c['memory_format']}"

    def pick(r: dict[str, float]) -> dict[str, float]:
        return {"paired_median": r["median_paired_ratio"], "min": r["ratio_of_minimums"],
                "cpu_median": r["cpu_ratio_of_medians"], "in_run_estimate": r["in_run_estimate"]}

    summary = {
        "flop_ratio_hf_tsn": round(hf_flops / tsn_flops, 4),
        "default_impl": default_impl,
        "hf_vs_tsn": {f"hf_{i}": {key(c): pick(c["hf_vs_tsn"][f"hf_{i}"]) for c in cases if f"hf_{i}" in c["hf_vs_tsn"]}
                      for i in impls},
        "inspect_vs_forward": {key(c): pick(c["inspect_vs_forward"]) for c in cases if "inspect_vs_forward" in c},
        "targets": {"hf_vs_tsn": TARGET_HF, "inspect_vs_forward": TARGET_INSPECT},
        "skipped_for_budget": skipped,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    path = write_result(args.name, {
        "setup": {"backbone": "bninception", "width_mult": 1.0, "frames": FRAMES, "size": SIZE,
                  "classes": CLASSES, "hf_placement": "all", "threads": args.threads, "impls": list(impls),
                  "timing": "rotating order per round; wall = perf_counter, cpu = process_time; "
                            "torch.inference_mode; eval mode"},
        "summary": summary,
        "cases": cases,
    })
    print(f"FLOP ratio HF/TSN {summary['flop_ratio_hf_tsn']}; wrote {path} in {summary['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
