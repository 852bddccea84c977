"""Benchmark: HF-TSN vs TSN inference latency, BNInception width 1.0, 224 px, 8 frames, 174 classes.

In one run, for batch 1 and 8 clips, contiguous and channels_last memory format, on the CPU (and on CUDA
when a GPU is present: channels_last, float16 autocast), this times in rotating order (ABCD, BCDA, ...;
so slow drift and the machine's other load hit every call alike), under ``torch.inference_mode`` with
the models in eval mode - what the app and ``hfnet eval`` run:

* ``tsn`` / ``tsn_inspect``: the baseline's ``forward`` and ``inspect``;
* ``hf`` / ``hf_inspect``: HF after all ten blocks on the default path - on the CPU the fused kernel
  (``hfnet_core/temporal/hf_fused.py``), which also writes each block's concatenation;
* ``hf_eager``: the same model on the eager reference path (``HFModule.fused = False``; the default
  before the fused kernel);
* ``hf_shift`` / ``hf_concat`` (``--impls``): the other gate implementations, eager (``concat``, the slow
  reference, at batch 1 only).

All HF models share the TSN's backbone and head weights, with small random gates. Per case it reports the
median wall-clock and process-CPU time of each call and the ratios HF/TSN (``hf`` vs ``tsn``,
``hf_inspect`` vs ``tsn_inspect``, ...): of medians, the median of per-round ratios (each call against the
TSN call of the same round), of minimums (interference only adds time, so the fastest of many calls is
the least disturbed), of CPU time - and an in-run estimate that needs no second call: every HF module
runs inside its block's ``TemporalRun.join`` (where it writes the concatenation), so
1 / (1 - share of the call spent in ``join`` + the TSN's share spent there, in ``torch.cat``), from wall
and from process-CPU time.
Target: HF/TSN <= 1.02 (the FLOP ratio is ~1.0104); inspect/forward <= 1.05.

Run: ``python benchmarks/bench_model.py [--threads 2] [--rounds 15] [--calls tsn,hf,hf_eager] [--impls ""]
[--batches 1,8] [--formats channels_last,contiguous] [--quick] [--name NAME]``; writes
``benchmarks/results/<name>.json`` (default ``model_latency``; ``model_latency_1thread`` for
``--threads 1``). Cases that would overrun ``--budget-s`` are skipped and listed. The load average is
recorded before and after each case: compare ratios, not absolute times, across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, timed, write_result  # noqa: E402

from hfnet_core.complexity import count_flops  # noqa: E402
from hfnet_core.model import VideoClassifier, build_model  # noqa: E402
from hfnet_core.temporal import hf_fused  # noqa: E402
from hfnet_core.temporal.hf import GATE_IMPLS  # noqa: E402
from hfnet_core.temporal.base import TemporalRun  # noqa: E402

FRAMES, SIZE, CLASSES = 8, 224, 174
TARGET_HF, TARGET_INSPECT = 1.02, 1.05
#: call -> (model, method); the model key names what ``build_models`` makes.
CALLS: dict[str, tuple[str, str]] = {
    "tsn": ("tsn", "forward"), "tsn_inspect": ("tsn", "inspect"),
    "hf": ("hf", "forward"), "hf_inspect": ("hf", "inspect"), "hf_eager": ("hf_eager", "forward"),
    "hf_shift": ("hf_shift", "forward"), "hf_concat": ("hf_concat", "forward"),
}
#: HF call -> the TSN call it is compared with.
BASELINE = {"hf": "tsn", "hf_inspect": "tsn_inspect", "hf_eager": "tsn", "hf_shift": "tsn", "hf_concat": "tsn"}


def build_models(device: torch.device, impls: tuple[str, ...]) -> dict[str, VideoClassifier]:
    torch.manual_seed(0)
    tsn = build_model("tsn_bninception", num_segments=FRAMES, num_classes=CLASSES).eval()
    models = {"tsn": tsn}
    for key, impl, fused in [("hf", "matmul", True), ("hf_eager", "matmul", False)] + [
            (f"hf_{i}", i, False) for i in impls]:
        hf = build_model("hf_tsn_bninception", num_segments=FRAMES, num_classes=CLASSES, hf_impl=impl).eval()
        hf.base_model.load_state_dict(tsn.base_model.state_dict())
        hf.head.load_state_dict(tsn.head.state_dict())
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in hf.hf.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
        for m in hf.hf.values():
            m.fused = fused
        models[key] = hf
    return {k: m.to(device) for k, m in models.items()}


def set_format(models: dict[str, VideoClassifier], channels_last: bool) -> None:
    # Only the backbone: nn.Module.to(memory_format=...) refuses the 5-D gate weights, and HF's outputs
    # follow the features' format anyway.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in models.values():
        m.base_model.to(memory_format=fmt)


class JoinTimer:
    """Wall and process-CPU time spent inside ``TemporalRun.join`` during a call: the blocks'
    concatenations (TSN), or the HF modules that write them (HF). Patches the class for the benchmark's
    duration only."""

    def __init__(self) -> None:
        self.total = 0.0
        self.cpu = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator["JoinTimer"]:
        original = TemporalRun.join

        def join(run: TemporalRun, module: str, parts: Any) -> torch.Tensor:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return original(run, module, parts)
            finally:
                self.total += time.perf_counter() - t0
                self.cpu += time.process_time() - c0

        TemporalRun.join = join  # type: ignore[method-assign]
        try:
            yield self
        finally:
            TemporalRun.join = original  # type: ignore[method-assign]


def run_case(models: dict[str, VideoClassifier], calls: list[str], batch: int, channels_last: bool,
             device: torch.device, rounds: int, warmup: int) -> dict[str, Any]:
    set_format(models, channels_last)
    x = torch.randn(batch, FRAMES, 3, SIZE, SIZE, device=device) * 50
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None

    def call(name: str) -> Callable[[], Any]:
        model, method = CALLS[name]
        fn = getattr(models[model], method)

        def run() -> Any:
            with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                return fn(x)
        return run

    fns = {k: call(k) for k in calls}
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    share: dict[str, list[float]] = {k: [] for k in calls}
    cpu_share: dict[str, list[float]] = {k: [] for k in calls}
    timer = JoinTimer()
    load_before = os.getloadavg()[0]
    t_case = time.perf_counter()
    with torch.inference_mode(), timer.installed():
        outs = {k: fns[k]() for k in calls}
        logits = {k: (v.logits if hasattr(v, "logits") else v).float() for k, v in outs.items()}
        for _ in range(warmup - 1):
            for k in calls:
                fns[k]()
        for r in range(rounds):
            for k in calls[r % len(calls):] + calls[: r % len(calls)]:
                timer.total = timer.cpu = 0.0
                w, c = timed(fns[k], sync)
                wall[k].append(w)
                cpu[k].append(c)
                share[k].append(timer.total / w)
                cpu_share[k].append(timer.cpu / c if c > 0 else 0.0)
    hf_calls = [k for k in calls if k in BASELINE]
    ref = logits.get("hf_eager", logits[hf_calls[0]])
    max_diff = {k: (logits[k] - ref).abs().max().item() for k in hf_calls}
    entries = {k: {"median_wall_s": round(median(wall[k]), 5), "median_cpu_s": round(median(cpu[k]), 5),
                   "join_share_median": round(median(share[k]), 5),
                   "join_cpu_share_median": round(median(cpu_share[k]), 5),
                   "wall_s": [round(v, 5) for v in wall[k]], "cpu_s": [round(v, 5) for v in cpu[k]]}
               for k in calls}

    def ratios(num: str, den: str) -> dict[str, float | None]:
        paired = [a / b for a, b in zip(wall[num], wall[den])]
        # CUDA: join's host time says nothing about kernels still queued
        in_run = None if cuda else 1.0 / (1.0 - median(share[num]) + median(share[den]))
        in_run_cpu = None if cuda else 1.0 / (1.0 - median(cpu_share[num]) + median(cpu_share[den]))
        return {"in_run_estimate": None if in_run is None else round(in_run, 4),
                "in_run_cpu_estimate": None if in_run_cpu is None else round(in_run_cpu, 4),
                "ratio_of_medians": round(median(wall[num]) / median(wall[den]), 4),
                "median_paired_ratio": round(median(paired), 4),
                "ratio_of_minimums": round(min(wall[num]) / min(wall[den]), 4),
                "cpu_ratio_of_medians": round(median(cpu[num]) / median(cpu[den]), 4),
                "cpu_ratio_of_minimums": round(min(cpu[num]) / min(cpu[den]), 4)}

    out: dict[str, Any] = {
        "device": str(device),
        "batch": batch,
        "memory_format": "channels_last" if channels_last else "contiguous",
        "amp": "float16" if cuda else None,
        "rounds": rounds,
        "loadavg_before": round(load_before, 2),
        "loadavg_after": round(os.getloadavg()[0], 2),
        "seconds": round(time.perf_counter() - t_case, 1),
        "max_logit_diff_vs_eager": max_diff,
        "entries": entries,
        "hf_vs_tsn": {k: ratios(k, BASELINE[k]) for k in hf_calls if BASELINE[k] in calls},
    }
    if "hf_inspect" in calls and "hf" in calls:
        out["inspect_vs_forward"] = ratios("hf_inspect", "hf")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--rounds", type=int, default=15, help="timed rounds at batch 1")
    ap.add_argument("--rounds-b8", type=int, default=6, help="timed rounds at batch 8")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--impls", default="shift,concat", help="other gate implementations to time (eager)")
    ap.add_argument("--calls", default="tsn,hf,hf_eager,tsn_inspect,hf_inspect",
                    help="calls to time besides --impls (tsn and hf are always timed)")
    ap.add_argument("--formats", default="channels_last,contiguous", help="CPU memory formats")
    ap.add_argument("--devices", default="cpu,cuda", help="cuda is skipped (and said so) without a GPU")
    ap.add_argument("--budget-s", type=float, default=900.0, help="stop adding cases after this many seconds")
    ap.add_argument("--quick", action="store_true", help="batch 1 only, 3 rounds (smoke test)")
    ap.add_argument("--name", default=None, help="result file name (default model_latency[_1thread])")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = args.name or ("model_latency" if args.threads != 1 else "model_latency_1thread")
    impls = tuple(i for i in args.impls.split(",") if i)
    base_calls = list(dict.fromkeys(["tsn", "hf"] + [c for c in args.calls.split(",") if c]))
    unknown = [c for c in base_calls if c not in CALLS or c.removeprefix("hf_") in GATE_IMPLS]
    if unknown:
        ap.error(f"unknown --calls {unknown}; choose from tsn, hf, hf_eager, tsn_inspect, hf_inspect")
    if "hf_inspect" in base_calls and "tsn_inspect" not in base_calls:
        base_calls.append("tsn_inspect")  # its baseline
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    rounds1, rounds8 = (3, 2) if args.quick else (args.rounds, args.rounds_b8)
    wanted = [d for d in args.devices.split(",") if d]
    devices = [torch.device(d) for d in wanted if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    device_notes = {}
    if "cuda" in wanted and not torch.cuda.is_available():
        device_notes["cuda"] = "skipped: no CUDA device here (torch.cuda.is_available() is False)"
        print(device_notes["cuda"], flush=True)

    t_kernel = time.perf_counter()
    kernel_ready = hf_fused.kernel() is not None
    kernel_s = time.perf_counter() - t_kernel
    tsn_flops = count_flops(build_model("tsn_bninception", num_segments=FRAMES), FRAMES, SIZE)["total"]
    hf_flops = count_flops(build_model("hf_tsn_bninception", num_segments=FRAMES), FRAMES, SIZE)["total"]
    t0 = time.perf_counter()
    cases, skipped = [], []
    s_per_clip = 0.0
    for device in devices:
        models = build_models(device, impls)
        formats = args.formats.split(",") if device.type == "cpu" else ["channels_last"]
        for batch in batches:
            calls = base_calls + [f"hf_{i}" for i in impls if batch == 1 or i != "concat"]
            for fmt in formats:
                rounds, warmup = (rounds1, 2) if batch == 1 else (rounds8, 1)
                # skip a case that the slowest call so far says would overrun the budget
                expected = s_per_clip * batch * len(calls) * (rounds + warmup)
                if time.perf_counter() - t0 + expected > args.budget_s:
                    skipped.append(f"{device}/b{batch}/{fmt}")
                    continue
                case = run_case(models, calls, batch, fmt == "channels_last", device, rounds, warmup)
                s_per_clip = max(s_per_clip, max(e["median_wall_s"] for e in case["entries"].values()) / batch)
                cases.append(case)
                line = ", ".join(f"{k} {v['median_paired_ratio']:.3f}/{v['ratio_of_minimums']:.3f}/"
                                 f"{v['in_run_estimate'] or float('nan'):.3f}" for k, v in case["hf_vs_tsn"].items())
                print(f"{device} batch {batch} {case['memory_format']:<13} tsn "
                      f"{case['entries']['tsn']['median_wall_s'] * 1e3:7.0f} ms | HF/TSN (paired/min/in-run) {line} "
                      f"| load {case['loadavg_before']:.1f}->{case['loadavg_after']:.1f}", flush=True)
        del models

    def key(c: dict[str, Any]) -> str:
        return f"{c['device']}/b{c['batch']}/{c['memory_format']}"

    def pick(r: dict[str, Any]) -> dict[str, Any]:
        return {"paired_median": r["median_paired_ratio"], "min": r["ratio_of_minimums"],
                "cpu_median": r["cpu_ratio_of_medians"], "in_run_estimate": r["in_run_estimate"],
                "in_run_cpu_estimate": r["in_run_cpu_estimate"]}

    hf_calls = sorted({k for c in cases for k in c["hf_vs_tsn"]}, key=list(CALLS).index)
    summary = {
        "flop_ratio_hf_tsn": round(hf_flops / tsn_flops, 4),
        "fused_kernel": hf_fused.kernel_status(),
        "fused_kernel_load_s": round(kernel_s, 2),
        "hf_vs_tsn": {k: {key(c): pick(c["hf_vs_tsn"][k]) for c in cases if k in c["hf_vs_tsn"]} for k in hf_calls},
        "inspect_vs_forward": {key(c): pick(c["inspect_vs_forward"]) for c in cases if "inspect_vs_forward" in c},
        "targets": {"hf_vs_tsn": TARGET_HF, "inspect_vs_forward": TARGET_INSPECT},
        "devices": device_notes,
        "skipped_for_budget": skipped,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    path = write_result(name, {
        "setup": {"backbone": "bninception", "width_mult": 1.0, "frames": FRAMES, "size": SIZE,
                  "classes": CLASSES, "hf_placement": "all", "threads": args.threads, "impls": list(impls),
                  "fused_kernel_ready": kernel_ready,
                  "timing": "rotating order per round; wall = perf_counter, cpu = process_time; "
                            "torch.inference_mode; eval mode; CUDA: channels_last + float16 autocast"},
        "summary": summary,
        "cases": cases,
    })
    print(f"FLOP ratio HF/TSN {summary['flop_ratio_hf_tsn']}; fused kernel {summary['fused_kernel']}; "
          f"wrote {path} in {summary['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
