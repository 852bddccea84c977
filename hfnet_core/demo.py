"""``hfnet train-demo``: regenerate the shipped demo checkpoints (TSN and HF-TSN on SynthSomething).

One command, resumable (re-run it after an interruption and it continues where it stopped)::

    hfnet train-demo --out checkpoints            # = make demo-checkpoints

Both models get the same recipe and budget (``demo_config``): width 0.25, 112 px, 8 frames, from scratch,
SGD lr 0.05 with a cosine schedule, batch 16, HF gates at 0.1x the learning rate (FINDINGS.md), 1,792
fresh SynthSomething training clips per epoch. Models train one after the other (a 2-core machine gains
nothing from running them side by side). For each model ``<stem>`` the output folder receives:

    <stem>.safetensors    the final weights in fp16 (hfnet checkpoint; training config + history inside)
    <stem>.test.npz       eval bundle on the held-out test split (what the app reads)
    <stem>.test.json      test metrics (top-1/5, per class, confusion matrix, within-pair accuracy)
    <stem>.train.jsonl    the per-epoch training log
    <stem>.toml           the training config

``--models`` also runs Table I's variants (+1HF, +5HF, non-conservative), Table II's TRN and ECO-Lite
rows and Table III's multi-task pair (SynthSomething's verb / noun view) with the same recipe;
``--table1/2/3 JSON`` writes those tables from the metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

# On a busy shared CPU, OpenMP threads that spin while waiting for a descheduled sibling burned 7x the CPU
# time per training step (measured here: 7 s vs 1 s of CPU per step, same wall time). Sleeping waiters fix
# that and cost nothing on an idle machine. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from .atomic import write_text_atomic
from .config import TrainConfig, dump_toml

#: key -> (registry model name, output file stem)
DEMO_MODELS: dict[str, tuple[str, str]] = {
    "tsn": ("tsn_bninception_demo", "tsn_demo"),
    "hf": ("hf_tsn_bninception_demo", "hf_tsn_demo"),
    "hf1": ("hf1_tsn_bninception_demo", "hf1_tsn_demo"),
    "hf5": ("hf5_tsn_bninception_demo", "hf5_tsn_demo"),
    "hf_nc": ("hf_tsn_bninception_demo_nonconservative", "hf_tsn_demo_nonconservative"),
    # The temporal zoo (same recipe and budget): TSM's shift and GSM's gate-shift on the same BN-Inception,
    # and the TRN pair.
    "tsm": ("tsm_bninception_demo", "tsm_demo"),
    "gsm": ("gsm_bninception_demo", "gsm_demo"),
    "trn": ("trn_bninception_demo", "trn_demo"),
    "hf_trn": ("hf_trn_bninception_demo", "hf_trn_demo"),
    # The rest of the paper (Table II's ECO-Lite rows, the GRU consensus) at the same recipe and budget.
    "eco": ("eco_lite_demo", "eco_lite_demo"),
    "hf_eco": ("hf_eco_lite_demo", "hf_eco_lite_demo"),
    "gru": ("gru_bninception_demo", "gru_demo"),
    "hf_gru": ("hf_gru_bninception_demo", "hf_gru_demo"),
    # Multi-task TSN on SynthSomething's verb (motion) / noun (object shape) view (Table III).
    "mt": ("mt_tsn_bninception_demo", "mt_tsn_demo"),
    "hf_mt": ("mt_hf_tsn_bninception_demo", "mt_hf_tsn_demo"),
}


def demo_config(model_name: str, work_dir: str | Path, epochs: int = 12, train_per_class: int = 112) -> TrainConfig:
    """The shipped pair's recipe (FINDINGS.md, "Training the demo pair")."""
    cfg = TrainConfig()
    cfg.model.name = model_name
    cfg.data.dataset = "synth"
    cfg.data.augment = False  # clips are rendered at 112 px; variety comes from fresh clips every epoch
    cfg.data.synth_fresh_each_epoch = True
    cfg.data.synth_train_per_class = train_per_class  # x 16 classes = 1,792 clips per epoch
    cfg.data.synth_val_per_class = 20
    cfg.data.synth_test_per_class = 38  # 608 test clips
    cfg.data.num_workers = 1
    cfg.optim.lr = 0.05
    cfg.optim.schedule = "cosine"
    cfg.optim.gate_lr_mult = 0.1
    cfg.train.epochs = epochs
    cfg.train.batch_size = 16
    cfg.train.num_threads = 2
    cfg.train.channels_last = "on"
    cfg.train.out_dir = str(Path(work_dir) / model_name)
    from .model import get_config
    from .multitask import is_multitask

    if is_multitask(get_config(model_name)):  # verb = motion, noun = object shape (Table III)
        cfg.data.synth_view = "verb_noun"
    return cfg


def ship(run_dir: Path, out_dir: Path, stem: str, cfg: TrainConfig, progress: bool = False) -> dict:
    """Export a finished run: fp16 checkpoint, test eval bundle + metrics, training log and config."""
    from .checkpoint import load_checkpoint, read_metadata, save_checkpoint
    from .evaluate import evaluate_checkpoint

    src = run_dir / "last.safetensors"
    loaded = load_checkpoint(src)
    meta = read_metadata(src)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    training = dict(meta.get("training", {}))
    training["history"] = [{k: v for k, v in r.items() if k != "skipped_clips"} for r in history]
    training["wall_time_s"] = round(sum(r.get("time_s", 0.0) for r in history), 1)
    ckpt = out_dir / f"{stem}.safetensors"
    save_checkpoint(ckpt, loaded.model, loaded.class_names, training=training,
                    extra={"regenerate": "hfnet train-demo --out checkpoints"}, dtype=torch.float16)
    metrics, bundle = evaluate_checkpoint(ckpt, "synth", "test", synth_per_class=cfg.data.synth_test_per_class,
                                          synth_seed=cfg.data.synth_seed, progress=progress)
    bundle.metadata["checkpoint"] = metrics["metadata"]["checkpoint"] = ckpt.name  # shipped side by side
    bundle.save(out_dir / f"{stem}.test.npz")
    write_text_atomic(out_dir / f"{stem}.test.json", json.dumps(metrics, indent=1) + "\n")
    shutil.copyfile(run_dir / "metrics.jsonl", out_dir / f"{stem}.train.jsonl")
    write_text_atomic(out_dir / f"{stem}.toml", dump_toml(cfg))
    return metrics


#: Table I rows in the paper's order: (demo key, label as printed in the paper)
TABLE_ONE_ROWS: tuple[tuple[str, str], ...] = (
    ("tsn", "Baseline"),
    ("hf1", "Baseline+1HF"),
    ("hf5", "Baseline+5HF"),
    ("hf", "Baseline+10HF"),
    ("hf_nc", "Baseline+10HF (non-Conservative)"),
)


def shipped_result(stem: str, folders: Sequence[str | Path]) -> dict | None:
    """Test metrics and training budget of demo model ``stem`` from the first folder holding its
    ``<stem>.test.json`` (and ``<stem>.safetensors``); None if no folder has it."""
    from .checkpoint import read_metadata

    found = next((Path(f) for f in folders if (Path(f) / f"{stem}.test.json").is_file()), None)
    if found is None:
        return None
    m = json.loads((found / f"{stem}.test.json").read_text())
    out = {"metrics": m, "metrics_file": str(found / f"{stem}.test.json"), "epochs": None,
           "train_clips_per_epoch": None, "wall_time_s": None}
    ckpt = found / f"{stem}.safetensors"
    if ckpt.is_file():
        meta = read_metadata(ckpt)
        cfg = meta["training"].get("config", {})
        classes = 16  # SynthSomething's motions: clips per epoch = per-class count x 16 in both views
        out.update(epochs=meta["training"].get("epoch"),
                   train_clips_per_epoch=cfg.get("data", {}).get("synth_train_per_class", 0) * classes,
                   wall_time_s=meta["training"].get("wall_time_s"))
    return out


def table_one(folders: Sequence[str | Path]) -> dict:
    """Table I on SynthSomething from the ``<stem>.test.json`` files found in ``folders``, beside the paper.

    Rows whose metrics are missing are listed with ``null`` accuracy. ``budget`` records the epochs and
    clips per epoch each model was trained with (from its checkpoint's training config).
    """
    from .complexity import PAPER_TABLE_ONE
    from .data.synthetic import SYNTH_CLASSES
    from .model import build_model

    paper = {r.label: r for r in PAPER_TABLE_ONE}
    rows = []
    for key, label in TABLE_ONE_ROWS:
        name, stem = DEMO_MODELS[key]
        model = build_model(name, num_classes=len(SYNTH_CLASSES))
        row = {"label": label, "model": name, "params": sum(p.numel() for p in model.parameters()),
               "paper_accuracy": paper[label].accuracy,
               "paper_params_m": paper[label].params_m, "test_top1": None, "within_pair_accuracy": None,
               "pair_merged_accuracy": None, "test_top5": None, "epochs": None, "train_clips_per_epoch": None}
        res = shipped_result(stem, folders)
        if res is not None:
            m = res["metrics"]
            row.update(test_top1=m["top1"], test_top5=m["top5"], within_pair_accuracy=m.get("within_pair_accuracy"),
                       pair_merged_accuracy=m.get("pair_merged_accuracy"), test_clips=m["num_clips"],
                       metrics_file=res["metrics_file"])
            if res["epochs"] is not None:
                row.update(epochs=res["epochs"], train_clips_per_epoch=res["train_clips_per_epoch"],
                           wall_time_s=res["wall_time_s"])
        rows.append(row)
    budgets = {(r["epochs"], r["train_clips_per_epoch"]) for r in rows if r["test_top1"] is not None}
    return {
        "same_budget_for_all_rows": len(budgets) <= 1,
        "dataset": "SynthSomething (16 classes, 7 reversed pairs), test split, 608 clips",
        "setting": "BNInception width 0.25, 112 px, 8 frames, from scratch, SGD lr 0.05 cosine, batch 16, "
                   "gate lr x0.1 (hfnet train-demo)",
        "paper_setting": "Something-v1 validation, full BNInception, 224 px, 16 frames, ImageNet-pretrained",
        "rows": rows,
    }


#: Table II rows in the paper's order: (demo key, label, paper Something-v1 top-1 %, paper HMDB51 top-1 %)
TABLE_TWO_ROWS: tuple[tuple[str, str, float | None, float | None], ...] = (
    ("tsn", "TSN", 17.77, 53.7),
    ("trn", "TRN", 31.32, 54.93),
    ("eco", "ECOLite", 42.2, 68.5),
    ("hf", "HF-TSN", 41.97, 55.92),
    ("hf_trn", "HF-TRN", 39.17, 57.61),
    ("hf_eco", "HF-ECOLite", None, 71.13),
)


def _model_counts(name: str, num_classes: int) -> dict:
    """Params (paper convention) and FLOPs (Table I's convention) of a demo model, on the meta device."""
    from .complexity import count_flops, count_params
    from .model import VideoClassifier, get_config

    with torch.device("meta"):
        model = VideoClassifier(get_config(name, num_classes=num_classes))
    return {"params": count_params(model)["paper"], "flops": count_flops(model)["total"]}


def table_two(folders: Sequence[str | Path]) -> dict:
    """Table II on SynthSomething: TSN, TRN and ECO-Lite with and without HF (``<stem>.test.json`` in
    ``folders``), each with its test top-1, within-pair accuracy, params, FLOPs and training budget,
    beside the paper's Something-v1 / HMDB51 accuracies."""
    from .data.synthetic import SYNTH_CLASSES

    rows = []
    for key, label, paper_ss, paper_hmdb in TABLE_TWO_ROWS:
        name, stem = DEMO_MODELS[key]
        row = {"label": label, "model": name, **_model_counts(name, len(SYNTH_CLASSES)),
               "paper_something_v1_top1": paper_ss, "paper_hmdb51_top1": paper_hmdb, "test_top1": None,
               "test_top5": None, "within_pair_accuracy": None, "epochs": None, "train_clips_per_epoch": None,
               "regenerate": f"hfnet train-demo --models {key} --out <dir>"}
        res = shipped_result(stem, folders)
        if res is not None:
            m = res["metrics"]
            row.update(test_top1=m["top1"], test_top5=m["top5"], within_pair_accuracy=m.get("within_pair_accuracy"),
                       test_clips=m["num_clips"], metrics_file=res["metrics_file"], epochs=res["epochs"],
                       train_clips_per_epoch=res["train_clips_per_epoch"], wall_time_s=res["wall_time_s"])
        rows.append(row)
    budgets = {(r["epochs"], r["train_clips_per_epoch"]) for r in rows if r["test_top1"] is not None}
    return {
        "same_budget_for_all_rows": len(budgets) <= 1,
        "budgets": sorted([list(b) for b in budgets], key=str),
        "dataset": "SynthSomething (16 classes, 7 reversed pairs), test split, 608 clips",
        "setting": "width 0.25, 112 px, 8 frames, from scratch, SGD lr 0.05 cosine, batch 16, gate lr x0.1 "
                   "(hfnet train-demo); ECO-Lite: the same recipe, its 3D part included",
        "paper_setting": "Something-v1 validation / HMDB51 mean of 3 splits; full width, 224 px, 16 frames, "
                         "ImageNet (+ Kinetics for ECO) pre-training",
        "rows": rows,
    }


def format_table_two(table: dict) -> str:
    """Markdown table of ``table_two``'s rows."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    def paper(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = ["| Model | params | FLOPs | epochs x clips | SynthSomething top-1 % | within reversed pairs % | "
             "paper: Something-v1 % | paper: HMDB51 % |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table["rows"]:
        budget = "-" if r["epochs"] is None else f"{r['epochs']} x {r['train_clips_per_epoch']}"
        lines.append(f"| {r['label']} | {r['params'] / 1e6:.3f} M | {r['flops'] / 1e9:.3f} G | {budget} | "
                     f"{pct(r['test_top1'])} | {pct(r['within_pair_accuracy'])} | "
                     f"{paper(r['paper_something_v1_top1'])} | {paper(r['paper_hmdb51_top1'])} |")
    return "\n".join(lines)


#: Table III rows: (demo key, label)
TABLE_THREE_ROWS: tuple[tuple[str, str], ...] = (("mt", "TSN (RGB)"), ("hf_mt", "HF-TSN (RGB)"))


def table_three(folders: Sequence[str | Path]) -> dict:
    """Table III on SynthSomething's verb (motion) / noun (shape) view: the EPIC-Kitchens metrics of the
    multi-task TSN and HF-TSN (``<stem>.test.json`` in ``folders``), in Table III's layout."""
    from .metrics_epic import PAPER_TABLE_THREE, format_table_three

    rows, setting = [], {}
    for key, label in TABLE_THREE_ROWS:
        name, stem = DEMO_MODELS[key]
        res = shipped_result(stem, folders)
        row = {"label": label, "model": name, "epic": None, "epochs": None, "train_clips_per_epoch": None,
               "regenerate": f"hfnet train-demo --models {key} --out <dir>"}
        if res is not None:
            m = res["metrics"]
            row.update(epic=m["epic"], many_shot=m.get("many_shot"), within_pair_accuracy=m.get("within_pair_accuracy"),
                       metrics_file=res["metrics_file"], epochs=res["epochs"],
                       train_clips_per_epoch=res["train_clips_per_epoch"])
            setting[label] = m["epic"]
        rows.append(row)
    budgets = {(r["epochs"], r["train_clips_per_epoch"]) for r in rows if r["epic"] is not None}
    return {
        "same_budget_for_all_rows": len(budgets) <= 1,
        "dataset": "SynthSomething verb/noun view (16 verbs = motions, 6 nouns = object shapes, 82 actions), "
                   "test split, 608 clips; one setting (the test clips share the training distribution: an "
                   "S1 analogue - there is no unseen-kitchen S2)",
        "setting": "multi-task TSN with verb, noun and action classifiers, action scores as a bias (docs/epic.md); "
                   "width 0.25, 112 px, 8 frames, from scratch, the demo recipe",
        "rows": rows,
        "markdown": format_table_three({"SynthSomething": setting}) if setting else "",
        "paper": PAPER_TABLE_THREE,
    }


def format_table_one(table: dict) -> str:
    """Markdown table of ``table_one``'s rows."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    lines = ["| Model | params | SynthSomething top-1 % | within reversed pairs % | pair-merged % | "
             "paper: Something-v1 top-1 % |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in table["rows"]:
        lines.append(f"| {r['label']} | {r['params'] / 1e6:.3f} M | {pct(r['test_top1'])} | "
                     f"{pct(r['within_pair_accuracy'])} | {pct(r['pair_merged_accuracy'])} | "
                     f"{r['paper_accuracy']:.2f} |")
    return "\n".join(lines)


def _refresh_projections(out: Path) -> None:
    """Recompute the explorer's cached projections of the bundles in ``out`` (stale ones are pruned)."""
    stems = (DEMO_MODELS["tsn"][1], DEMO_MODELS["hf"][1])
    bundles = [str(out / f"{s}.test.npz") for s in stems if (out / f"{s}.test.npz").is_file()]
    try:
        from .analysis.precompute import precompute

        precompute(bundles, prune=True, log=lambda m: print(f"[train-demo] {m}", flush=True))
    except Exception as e:  # noqa: BLE001 - the checkpoints are shipped; the app recomputes on demand
        print(f"[train-demo] projections not refreshed ({type(e).__name__}: {e}); "
              f"run: python -m hfnet_core.analysis.precompute {' '.join(bundles)} --prune", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfnet train-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="checkpoints", help="where the shipped files go (default checkpoints/)")
    p.add_argument("--work", default="runs/demo", help="training runs (resumable state) (default runs/demo)")
    p.add_argument("--models", default="tsn,hf", help=f"comma list of {sorted(DEMO_MODELS)} (default tsn,hf)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--train-per-class", type=int, default=112, help="training clips per class per epoch")
    p.add_argument("--fresh", action="store_true", help="discard earlier runs instead of resuming them")
    p.add_argument("--no-ship", action="store_true", help="train only; do not write into --out")
    p.add_argument("--no-projections", action="store_true",
                   help="do not refresh the app's cached t-SNE/UMAP projections of the shipped bundles")
    p.add_argument("--table1", metavar="JSON", help="after training, write Table I (SynthSomething) from the "
                   "metrics in --out (then checkpoints/) to this file, e.g. benchmarks/results/table1_synth.json")
    p.add_argument("--table2", metavar="JSON", help="likewise Table II (TSN / TRN / ECO-Lite with and without HF), "
                   "e.g. benchmarks/results/table2_synth.json")
    p.add_argument("--table3", metavar="JSON", help="likewise Table III (multi-task TSN / HF-TSN, EPIC metrics), "
                   "e.g. benchmarks/results/table3_synth.json")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .train import train

    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in keys if k not in DEMO_MODELS]
    if bad:
        print(f"hfnet train-demo: unknown models {bad}; choose from {sorted(DEMO_MODELS)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    summary = {}
    for key in keys:
        name, stem = DEMO_MODELS[key]
        cfg = demo_config(name, args.work, args.epochs, args.train_per_class)
        run_dir = Path(cfg.train.out_dir)
        if args.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        t0 = time.time()
        train(cfg, resume=True)
        print(f"[train-demo] {name}: training done in {time.time() - t0:.0f}s (this invocation)", flush=True)
        if args.no_ship:
            continue
        m = ship(run_dir, out, stem, cfg, progress=sys.stderr.isatty())
        summary[stem] = {k: m.get(k) for k in ("top1", "top5", "pair_merged_accuracy", "within_pair_accuracy")}
        print(f"[train-demo] {stem}: test top-1 {100 * m['top1']:.1f} %, within-pair "
              f"{100 * m['within_pair_accuracy']:.1f} %", flush=True)
    if summary:
        print(json.dumps(summary, indent=1))
    shipped_pair = [k for k in keys if k in ("tsn", "hf") and DEMO_MODELS[k][1] in summary]
    if shipped_pair and not args.no_projections:
        _refresh_projections(out)
    if args.table1:
        table = table_one([out, "checkpoints"])  # the shipped pair gives Baseline / +10HF at the same budget
        write_text_atomic(args.table1, json.dumps(table, indent=1) + "\n")
        print(format_table_one(table))
    if args.table2:  # only --out: every row at the budget of this invocation
        table = table_two([out])
        write_text_atomic(args.table2, json.dumps(table, indent=1) + "\n")
        print(format_table_two(table))
    if args.table3:
        table = table_three([out])
        write_text_atomic(args.table3, json.dumps(table, indent=1) + "\n")
        print(table["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
