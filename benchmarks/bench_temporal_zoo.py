"""The temporal zoo on SynthSomething: TSN, TSM, GSM, HF-TSN (and TRN / HF-TRN) trained with one recipe and
budget (``hfnet train-demo``), where order is the only signal that separates a class from its reversal.

For each model it collects, in one run:

* test accuracy on the 608-clip SynthSomething test split: top-1, within reversed pairs (of the clips of
  a pair's two classes, the share given the right one of the two) and pair-merged (a pair counted as one
  class), from ``<stem>.test.json`` written by ``hfnet train-demo``;
* params (state dict, and trainable) and FLOPs (paper convention) at the demo scale it was trained at
  (width 0.25, 112 px, 8 frames) and at the paper's scale (width 1.0, 224 px, 8 frames, 174 classes);
* the CPU latency ratio to TSN at the paper's scale (BN-Inception 224, 8 frames, batch 1, eval mode,
  ``inference_mode``), timed in rotating order within the run (ratios, not absolute times).

Writes ``benchmarks/results/temporal_zoo.json`` and prints the README table.

Run: ``python benchmarks/bench_temporal_zoo.py [--dirs checkpoints runs/zoo/ship] [--rounds 15] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, timed, write_result  # noqa: E402

from hfnet_core.complexity import count_flops, count_params  # noqa: E402
from hfnet_core.model import build_model, get_config  # noqa: E402

#: (row label, demo stem, full-scale registry name)
ZOO: tuple[tuple[str, str, str], ...] = (
    ("TSN", "tsn_demo", "tsn_bninception"),
    ("TSM", "tsm_demo", "tsm_bninception"),
    ("GSM", "gsm_demo", "gsm_bninception"),
    ("HF-TSN", "hf_tsn_demo", "hf_tsn_bninception"),
    ("TRN", "trn_demo", "trn_bninception"),
    ("HF-TRN", "hf_trn_demo", "hf_trn_bninception"),
)
FRAMES, SIZE, CLASSES = 8, 224, 174


def _metrics(stem: str, dirs: list[Path]) -> tuple[dict[str, Any] | None, Path | None]:
    for d in dirs:
        p = d / f"{stem}.test.json"
        if p.is_file():
            return json.loads(p.read_text()), p
    return None, None


def _latency(names: list[str], rounds: int) -> dict[str, float]:
    """Median per-round ratio of each model's forward to TSN's, full width, batch 1, same backbone weights."""
    torch.manual_seed(0)
    models = {n: build_model(n, num_segments=FRAMES, num_classes=CLASSES).eval() for n in names}
    x = torch.randn(1, FRAMES, 3, SIZE, SIZE) * 50
    order = list(models)
    times: dict[str, list[float]] = {n: [] for n in order}
    with torch.inference_mode():
        for m in models.values():  # warm-up
            m(x)
        for r in range(rounds):
            for n in order[r % len(order):] + order[: r % len(order)]:
                times[n].append(timed(lambda m=models[n]: m(x))[0])
    base = times["tsn_bninception"]
    return {n: median([t / b for t, b in zip(times[n], base)]) for n in order}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dirs", nargs="+", default=["checkpoints", "runs/zoo/ship"],
                    help="folders holding <stem>.test.json (first match wins)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dirs = [Path(d) for d in args.dirs]
    rows = []
    for label, stem, full in ZOO:
        metrics, source = _metrics(stem, dirs)
        demo_cfg = get_config(f"{full}_demo", num_classes=16)
        full_cfg = get_config(full, num_segments=FRAMES, num_classes=CLASSES)
        with torch.device("meta"):
            demo, paper = build_model(demo_cfg), build_model(full_cfg)
        row: dict[str, Any] = {
            "label": label, "stem": stem, "model": full,
            "operators": sorted({o for o, _ in paper.placements}), "consensus": full_cfg.consensus,
            "demo_params": count_params(demo)["paper"], "demo_flops": count_flops(demo)["total"],
            "params": count_params(paper)["paper"], "params_trainable": count_params(paper)["trainable"],
            "flops": count_flops(paper)["total"],
            "trained": metrics is not None, "metrics_file": str(source) if source else None,
        }
        if metrics is not None:
            row.update(top1=metrics["top1"], top5=metrics["top5"],
                       within_pair=metrics.get("within_pair_accuracy"),
                       pair_merged=metrics.get("pair_merged_accuracy"))
        rows.append(row)
    ratios = _latency([r["model"] for r in rows], args.rounds)
    base_flops = next(r["flops"] for r in rows if r["model"] == "tsn_bninception")
    for r in rows:
        r["latency_ratio_to_tsn"] = round(ratios[r["model"]], 4)
        r["flop_ratio_to_tsn"] = round(r["flops"] / base_flops, 4)
    path = write_result("temporal_zoo", {
        "setting": {"train": "hfnet train-demo recipe: width 0.25, 112 px, 8 frames, 12 epochs, SynthSomething",
                    "latency": f"full width, {SIZE} px, {FRAMES} frames, batch 1, {args.threads} threads, "
                               f"median of {args.rounds} per-round ratios"},
        "rows": rows})
    print(format_table(rows))
    print(f"wrote {path}")
    return 0


def format_table(rows: list[dict[str, Any]]) -> str:
    def pct(v: Any) -> str:
        return f"{100 * v:.1f}" if isinstance(v, (int, float)) else "—"

    lines = ["| model | top-1 % | within reversed pairs % | pair-merged % | params (demo / paper) | "
             "FLOPs (demo / paper) | CPU latency ÷ TSN |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {pct(r.get('top1'))} | {pct(r.get('within_pair'))} | "
                     f"{pct(r.get('pair_merged'))} | {r['demo_params'] / 1e6:.2f}M / {r['params'] / 1e6:.2f}M | "
                     f"{r['demo_flops'] / 1e9:.2f}G / {r['flops'] / 1e9:.2f}G | {r['latency_ratio_to_tsn']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
