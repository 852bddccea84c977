"""``hfnet eval``: metrics and an eval bundle for a checkpoint on one split.

Library use (the app calls this)::

    metrics, bundle = evaluate_model(model, dataset_or_loader, class_names=..., metadata={...})

``metrics`` holds top-1, top-5, per-class accuracy, macro precision/recall and the confusion matrix
(``hfnet_core.metrics``); for SynthSomething also accuracy within reversed pairs. ``bundle`` is an
``EvalBundle``: clip ids and paths, labels, logits and pooled pre-classifier features
(``model.inspect(x).pooled_features``) in dataset order. Unreadable clips are skipped, counted and named
in ``metrics["skipped"]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .atomic import write_text_atomic
from .data.loading import build_dataset, eval_loader
from .device import pick_device
from .eval_bundle import EvalBundle
from .metrics import classification_metrics, format_table, pair_accuracies
from .multitask import TaskSpec, is_multitask


@dataclass
class InferenceResult:
    clip_ids: list[str]
    paths: list[str]
    labels: np.ndarray
    logits: np.ndarray
    features: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@torch.no_grad()
def run_inference(model: torch.nn.Module, data: Dataset | DataLoader, device: torch.device | str | None = None,
                  batch_size: int = 16, amp: bool = False, num_workers: int = 0,
                  progress: bool = False) -> InferenceResult:
    """Logits and pooled features of every readable clip, in order; the model is put in eval mode.

    A ``DataLoader`` passed in must yield ``collate_batch``-style dicts (``frames``, ``label``, ``clip_id``,
    ``path``, ``skipped``); a dataset is wrapped so unreadable clips are skipped and named.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    ids: list[str] = []
    paths: list[str] = []
    labels: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    t0 = time.time()
    loader = eval_loader(data, batch_size, num_workers)
    it: Any = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc="eval", leave=False)
    for batch in it:
        skipped += [tuple(s) for s in batch["skipped"]]  # type: ignore[misc]
        if batch["frames"] is None:
            continue
        x = batch["frames"].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            out = model.inspect(x)
        logits.append(out.logits.float().cpu().numpy())
        feats.append(out.pooled_features.float().cpu().numpy())
        labels.append(np.asarray(batch["label"], dtype=np.int64))
        ids += list(batch["clip_id"])
        paths += list(batch["path"])
    model.train(was_training)
    k = getattr(getattr(model, "config", None), "num_classes", 0)
    d = getattr(model, "feature_dim", 0)
    return InferenceResult(
        ids, paths,
        np.concatenate(labels) if labels else np.zeros(0, np.int64),
        np.concatenate(logits) if logits else np.zeros((0, k), np.float32),
        np.concatenate(feats) if feats else np.zeros((0, d), np.float32),
        skipped, time.time() - t0,
    )


def evaluate_model(model: torch.nn.Module, data: Dataset | DataLoader, class_names: Sequence[str] | None = None,
                   device: torch.device | str | None = None, batch_size: int = 16, num_workers: int = 0,
                   metadata: dict[str, Any] | None = None, reversed_pairs: Sequence[tuple[int, int]] | None = None,
                   progress: bool = False, task_spec: TaskSpec | None = None) -> tuple[dict[str, Any], EvalBundle]:
    """Evaluate ``model`` on every clip of ``data``: (metrics dict, EvalBundle).

    ``class_names`` defaults to the dataset's ``class_names``; ``reversed_pairs`` (pairs of class indices
    that are time reversals of each other) adds pair-merged and within-pair accuracy (of the verbs, for a
    multi-task model). A multi-task model (``hfnet_core/multitask.py``) gets the EPIC-Kitchens metrics
    (``multitask_metrics``), with many-shot classes from ``task_spec``'s (else the dataset's) training
    counts; its bundle's metadata says ``tasks``.
    """
    ds = data.dataset if isinstance(data, DataLoader) else data
    if class_names is None:
        class_names = list(getattr(ds, "class_names", []) or [])
    res = run_inference(model, data, device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    names = list(class_names) or [str(i) for i in range(res.logits.shape[1])]
    spec = TaskSpec.from_model(getattr(model, "config", None), names)
    meta = dict(metadata or {})
    if spec is not None:  # verb / noun / action: the challenge's metrics (hfnet_core/metrics_epic.py)
        counted = task_spec if task_spec is not None else getattr(ds, "task_spec", None)
        metrics = multitask_metrics(res.logits, res.labels, spec, getattr(counted, "train_counts", None),
                                    reversed_pairs)
        meta["tasks"] = spec.bundle_metadata()
    else:
        metrics = classification_metrics(res.logits, res.labels, names)
        if reversed_pairs:
            metrics.update(pair_accuracies(res.labels, res.logits.argmax(1) if len(res.logits) else res.labels,
                                           reversed_pairs))
    metrics["skipped"] = len(res.skipped)
    metrics["skipped_clips"] = [f"{a}: {b}" for a, b in res.skipped]
    metrics["seconds"] = round(res.seconds, 2)
    meta.setdefault("num_clips", len(res.clip_ids))
    meta["skipped"] = len(res.skipped)
    bundle = EvalBundle(res.clip_ids, res.paths, res.labels, res.logits, res.features, names, meta)
    return metrics, bundle


def multitask_metrics(logits: np.ndarray, labels: np.ndarray, spec: TaskSpec,
                      train_counts: Any = None, reversed_pairs: Sequence[tuple[int, int]] | None = None) -> dict[str, Any]:
    """EPIC-Kitchens metrics of a multi-task model's outputs (labels = action ids), JSON-ready.

    Keys: ``epic`` (``metrics_epic.epic_metrics``: top-1/top-5/precision/recall per verb, noun, action),
    ``top1`` / ``top5`` (the action's, for one-number summaries), ``num_clips``, ``many_shot`` (how the
    many-shot classes were decided) and, with ``reversed_pairs``, the verbs' within-pair accuracies.
    """
    from .metrics_epic import MANY_SHOT_THRESHOLD, epic_metrics, many_shot_from_counts

    parts = spec.split(np.asarray(logits, np.float64))
    verbs, nouns = spec.decode(labels)
    shots = many_shot_from_counts(train_counts, spec.num_nouns) if train_counts else None
    m = epic_metrics(parts["verb"], parts["noun"], verbs, nouns, shots)
    out: dict[str, Any] = {
        "num_clips": m["num_clips"], "top1": m["top1"]["action"], "top5": m["top5"]["action"], "epic": m,
        "many_shot": ({"threshold": MANY_SHOT_THRESHOLD, "verbs": int(len(shots["verb"])),
                       "nouns": int(len(shots["noun"])), "actions": int(len(shots["action"]))}
                      if shots is not None else "no training counts: every class present in the ground truth"),
        "class_names": {"verb": list(spec.verb_names), "noun": list(spec.noun_names)},
    }
    known = np.asarray(verbs) >= 0
    if reversed_pairs and known.any():
        out.update(pair_accuracies(np.asarray(verbs)[known], parts["verb"][known].argmax(1), reversed_pairs))
    return out


def format_multitask_table(metrics: dict[str, Any]) -> str:
    """Plain-text summary of ``multitask_metrics``: one line per measure, verb / noun / action."""
    m = metrics["epic"]
    lines = [f"clips {metrics['num_clips']}   (many-shot: {metrics['many_shot']})",
             f"{'':<10}{'verb':>8}{'noun':>8}{'action':>8}"]
    for key, label in (("top1", "top-1 %"), ("top5", "top-5 %"), ("precision", "prec. %"), ("recall", "recall %")):
        lines.append(f"{label:<10}" + "".join(f"{100 * m[key][t]:>8.2f}" for t in ("verb", "noun", "action")))
    if "within_pair_accuracy" in metrics:
        lines.append(f"verbs, reversed pairs: pair-merged {100 * metrics['pair_merged_accuracy']:.2f} %   "
                     f"within-pair {100 * metrics['within_pair_accuracy']:.2f} %")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfnet eval", description="Evaluate checkpoints on one split: metrics "
                                "table + JSON, and an eval bundle (.npz) per checkpoint for the app.")
    p.add_argument("checkpoints", nargs="+", help="hfnet .safetensors checkpoints (or importable foreign files)")
    p.add_argument("--dataset", default="synth", help="synth, something-v1, video-folder, csv or epic-kitchens (default synth)")
    p.add_argument("--root", default="", help="dataset folder (not for synth)")
    p.add_argument("--split", default="test", help="split name (default test)")
    p.add_argument("--list", dest="list_file", default="", help="annotation file of the split, if not the default")
    p.add_argument("--synth-per-class", type=int, default=38, help="SynthSomething clips per class (default 38)")
    p.add_argument("--synth-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--out-dir", default="", help="where to write <checkpoint>.<split>.json / .npz "
                   "(default: next to each checkpoint)")
    p.add_argument("--no-bundle", action="store_true", help="write only the metrics JSON")
    p.add_argument("--split-index", type=int, default=1,
                   help="HMDB51: which official split (the --list folder holds the split files)")
    p.add_argument("--splits", default="", metavar="1,2,3",
                   help="HMDB51's protocol: evaluate checkpoint i on split i (or one checkpoint on all) and "
                        "report each split and the mean; writes <first checkpoint>.splits.json")
    p.add_argument("--train-list", default="", help="EPIC-Kitchens: the training annotations (action classes, "
                   "many-shot classes); default <root>/EPIC_train_action_labels.csv")
    return p


def dataset_for_checkpoint(model: torch.nn.Module, dataset: str, split: str, root: str = "", list_file: str = "",
                           synth_per_class: int = 38, synth_seed: int = 0, split_index: int = 1,
                           train_list: str = "") -> Dataset:
    """The centre-crop evaluation dataset a checkpoint's model expects (frames, size, pixel convention;
    SynthSomething's verb / noun view for a multi-task model)."""
    from .config import DataSection

    data = DataSection(dataset=dataset, root=root, val_list=list_file, train_list=train_list,
                       synth_train_per_class=synth_per_class, synth_val_per_class=synth_per_class,
                       synth_test_per_class=synth_per_class, synth_seed=synth_seed, split_index=split_index,
                       synth_view="verb_noun" if is_multitask(model.config) else "action")
    mcfg = model.config.replace(input_convention=model.input_convention.to_dict())  # type: ignore[union-attr]
    return build_dataset(data, split, mcfg, train=False)


def synth_training_spec(training: dict[str, Any], num_frames: int, size: int) -> TaskSpec | None:
    """The verb / noun spec with the training counts of the SynthSomething clips a checkpoint was trained
    on (its recorded training config: clips per class, seed, epochs, fresh clips per epoch)."""
    from .data.synthetic import synth_task_spec

    cfg = (training or {}).get("config") or {}
    data, train = cfg.get("data") or {}, cfg.get("train") or {}
    per_class = int(data.get("synth_train_per_class") or 0)
    if data.get("dataset", "synth") != "synth" or per_class <= 0:
        return None
    seed = int(data.get("synth_seed", 0))
    epochs = max(int(train.get("epochs", 1)), 1)
    seeds = tuple(seed + e for e in range(epochs)) if data.get("synth_fresh_each_epoch") else (seed,)
    return synth_task_spec(per_class, seeds, num_frames, int(data.get("synth_size") or size))


def _same_vocabulary(model_names: list[str], ds: Any, model_spec: TaskSpec | None) -> bool:
    if model_spec is None:
        return not getattr(ds, "class_names", None) or list(ds.class_names) == model_names
    data_spec = getattr(ds, "task_spec", None)  # the action classes may differ; verbs and nouns may not
    return data_spec is None or (data_spec.num_verbs, data_spec.num_nouns) == (model_spec.num_verbs,
                                                                               model_spec.num_nouns)


def evaluate_checkpoint(path: str | Path, dataset: str = "synth", split: str = "test", root: str = "",
                        list_file: str = "", synth_per_class: int = 38, synth_seed: int = 0, batch_size: int = 16,
                        num_workers: int = 0, device: str | torch.device | None = None,
                        progress: bool = False, split_index: int = 1,
                        train_list: str = "") -> tuple[dict[str, Any], EvalBundle]:
    """Load a checkpoint, evaluate it on ``split`` and return (metrics, bundle) with full metadata.

    ``split_index`` picks HMDB51's official split (``list_file`` = the folder of split files);
    ``train_list`` names EPIC-Kitchens' training CSV (its action pairs and many-shot classes).
    """
    from .checkpoint import load_checkpoint

    device = device or pick_device()
    loaded = load_checkpoint(path, device=device)
    ds = dataset_for_checkpoint(loaded.model, dataset, split, root, list_file, synth_per_class, synth_seed,
                                split_index, train_list)
    spec = TaskSpec.from_model(loaded.config, loaded.class_names)
    if not _same_vocabulary(list(loaded.class_names), ds, spec):
        raise ValueError(f"{path}: its {len(loaded.class_names)} classes differ from the {dataset} dataset's "
                         f"{len(getattr(ds, 'class_names', []))} classes")
    pairs = None
    counted = None
    if dataset == "synth":
        from .data.synthetic import REVERSED_PAIRS

        pairs = REVERSED_PAIRS
        if spec is not None:
            counted = synth_training_spec(loaded.metadata.get("training", {}), loaded.config.num_segments,
                                          loaded.config.input_size)
    meta = {
        "checkpoint": str(path),
        "checkpoint_sha256": loaded.sha256,
        "model_name": loaded.config.name,
        "dataset": dataset,
        "split": split,
        "root": root,
    }
    if dataset == "synth":
        meta.update(synth_per_class=synth_per_class, synth_seed=synth_seed)
    if list_file and Path(list_file).is_dir():
        meta["split_index"] = split_index
    metrics, bundle = evaluate_model(loaded.model, ds, loaded.class_names, device, batch_size, num_workers,
                                     meta, pairs, progress, task_spec=counted)
    metrics["metadata"] = bundle.metadata
    return metrics, bundle


def evaluate_splits(checkpoints: Sequence[str | Path], dataset: str, root: str, list_file: str,
                    splits: Sequence[int] = (1, 2, 3), **kwargs: Any) -> dict[str, Any]:
    """HMDB51's protocol: checkpoint i (trained on split i) on the test list of split i; each split's top-1
    and their mean. One checkpoint for all splits is accepted and said so (``same_checkpoint``), since a
    model trained on one split has seen the others' test clips."""
    if len(checkpoints) not in (1, len(splits)):
        raise ValueError(f"give one checkpoint per split ({len(splits)}) or one for all, got {len(checkpoints)}")
    rows = []
    for i, split_index in enumerate(splits):
        ckpt = checkpoints[i if len(checkpoints) > 1 else 0]
        metrics, _ = evaluate_checkpoint(ckpt, dataset, "test", root, list_file, split_index=split_index, **kwargs)
        rows.append({"split": split_index, "checkpoint": str(ckpt), "top1": metrics["top1"], "top5": metrics["top5"],
                     "num_clips": metrics["num_clips"], "skipped": metrics["skipped"]})
    return {"protocol": "mean top-1 over the official splits (HMDB51: Kuehne et al.; the paper's Sec. IV-A)",
            "splits": rows, "mean_top1": float(np.mean([r["top1"] for r in rows])),
            "mean_top5": float(np.mean([r["top5"] for r in rows])), "same_checkpoint": len(checkpoints) == 1}


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoint import CheckpointError

    if args.splits:
        return _splits_cli(args)
    status = 0
    for ckpt in args.checkpoints:
        try:
            metrics, bundle = evaluate_checkpoint(
                ckpt, args.dataset, args.split, args.root, args.list_file, args.synth_per_class, args.synth_seed,
                args.batch_size, args.workers, progress=sys.stderr.isatty(), split_index=args.split_index,
                train_list=args.train_list)
        except (CheckpointError, ValueError, OSError) as e:
            print(f"hfnet eval: {e}", file=sys.stderr)
            status = 1
            continue
        stem = Path(ckpt).name.removesuffix(".safetensors")
        folder = Path(args.out_dir) if args.out_dir else Path(ckpt).parent
        json_path = folder / f"{stem}.{args.split}.json"
        write_text_atomic(json_path, json.dumps(metrics, indent=1) + "\n")
        print(f"== {ckpt} on {args.dataset}/{args.split}")
        print(format_multitask_table(metrics) if "epic" in metrics else format_table(metrics))
        if metrics["skipped"]:
            print(f"skipped {metrics['skipped']} unreadable clips: " + "; ".join(metrics["skipped_clips"][:10]))
        print(f"metrics: {json_path}")
        if not args.no_bundle:
            npz = folder / f"{stem}.{args.split}.npz"
            bundle.save(npz)
            print(f"eval bundle: {npz}")
    return status


def _splits_cli(args: argparse.Namespace) -> int:
    try:
        splits = [int(x) for x in args.splits.split(",") if x.strip()]
        result = evaluate_splits(args.checkpoints, args.dataset, args.root, args.list_file, splits,
                                 batch_size=args.batch_size, num_workers=args.workers, progress=sys.stderr.isatty())
    except ValueError as e:
        print(f"hfnet eval: {e}", file=sys.stderr)
        return 1
    for r in result["splits"]:
        print(f"split {r['split']}: top-1 {100 * r['top1']:.2f} %  top-5 {100 * r['top5']:.2f} %  "
              f"({r['num_clips']} clips, {r['skipped']} skipped)  {r['checkpoint']}")
    print(f"mean over splits {splits}: top-1 {100 * result['mean_top1']:.2f} %  top-5 {100 * result['mean_top5']:.2f} %"
          + ("  (one checkpoint for every split: not the protocol)" if result["same_checkpoint"] else ""))
    first = Path(args.checkpoints[0])
    folder = Path(args.out_dir) if args.out_dir else first.parent
    out = folder / f"{first.name.removesuffix('.safetensors')}.splits.json"
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    print(f"metrics: {out}")
    return 0
