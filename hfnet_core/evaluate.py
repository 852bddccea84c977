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
                   progress: bool = False) -> tuple[dict[str, Any], EvalBundle]:
    """Evaluate ``model`` on every clip of ``data``: (metrics dict, EvalBundle).

    ``class_names`` defaults to the dataset's ``class_names``; ``reversed_pairs`` (pairs of class indices
    that are time reversals of each other) adds pair-merged and within-pair accuracy.
    """
    if class_names is None:
        ds = data.dataset if isinstance(data, DataLoader) else data
        class_names = list(getattr(ds, "class_names", []) or [])
    res = run_inference(model, data, device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    names = list(class_names) or [str(i) for i in range(res.logits.shape[1])]
    metrics = classification_metrics(res.logits, res.labels, names)
    if reversed_pairs:
        metrics.update(pair_accuracies(res.labels, res.logits.argmax(1) if len(res.logits) else res.labels,
                                       reversed_pairs))
    metrics["skipped"] = len(res.skipped)
    metrics["skipped_clips"] = [f"{a}: {b}" for a, b in res.skipped]
    metrics["seconds"] = round(res.seconds, 2)
    meta = dict(metadata or {})
    meta.setdefault("num_clips", len(res.clip_ids))
    meta["skipped"] = len(res.skipped)
    bundle = EvalBundle(res.clip_ids, res.paths, res.labels, res.logits, res.features, names, meta)
    return metrics, bundle


# --------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfnet eval", description="Evaluate checkpoints on one split: metrics "
                                "table + JSON, and an eval bundle (.npz) per checkpoint for the app.")
    p.add_argument("checkpoints", nargs="+", help="hfnet .safetensors checkpoints (or importable foreign files)")
    p.add_argument("--dataset", default="synth", help="synth, something-v1, video-folder or csv (default synth)")
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
    return p


def dataset_for_checkpoint(model: torch.nn.Module, dataset: str, split: str, root: str = "", list_file: str = "",
                           synth_per_class: int = 38, synth_seed: int = 0) -> Dataset:
    """The centre-crop evaluation dataset a checkpoint's model expects (frames, size, pixel convention)."""
    from .config import DataSection

    data = DataSection(dataset=dataset, root=root, val_list=list_file, synth_train_per_class=synth_per_class,
                       synth_val_per_class=synth_per_class, synth_test_per_class=synth_per_class,
                       synth_seed=synth_seed)
    mcfg = model.config.replace(input_convention=model.input_convention.to_dict())  # type: ignore[union-attr]
    return build_dataset(data, split, mcfg, train=False)


def evaluate_checkpoint(path: str | Path, dataset: str = "synth", split: str = "test", root: str = "",
                        list_file: str = "", synth_per_class: int = 38, synth_seed: int = 0, batch_size: int = 16,
                        num_workers: int = 0, device: str | torch.device | None = None,
                        progress: bool = False) -> tuple[dict[str, Any], EvalBundle]:
    """Load a checkpoint, evaluate it on ``split`` and return (metrics, bundle) with full metadata."""
    from .checkpoint import load_checkpoint

    device = device or pick_device()
    loaded = load_checkpoint(path, device=device)
    ds = dataset_for_checkpoint(loaded.model, dataset, split, root, list_file, synth_per_class, synth_seed)
    ds_names = list(getattr(ds, "class_names", []) or [])
    if ds_names and ds_names != loaded.class_names:
        raise ValueError(f"{path}: its {len(loaded.class_names)} classes differ from the {dataset} dataset's "
                         f"{len(ds_names)} classes")
    pairs = None
    if dataset == "synth":
        from .data.synthetic import REVERSED_PAIRS

        pairs = REVERSED_PAIRS
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
    metrics, bundle = evaluate_model(loaded.model, ds, loaded.class_names, device, batch_size, num_workers,
                                     meta, pairs, progress)
    metrics["metadata"] = bundle.metadata
    return metrics, bundle


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoint import CheckpointError

    status = 0
    for ckpt in args.checkpoints:
        try:
            metrics, bundle = evaluate_checkpoint(
                ckpt, args.dataset, args.split, args.root, args.list_file, args.synth_per_class, args.synth_seed,
                args.batch_size, args.workers, progress=sys.stderr.isatty())
        except (CheckpointError, ValueError, OSError) as e:
            print(f"hfnet eval: {e}", file=sys.stderr)
            status = 1
            continue
        stem = Path(ckpt).name.removesuffix(".safetensors")
        folder = Path(args.out_dir) if args.out_dir else Path(ckpt).parent
        json_path = folder / f"{stem}.{args.split}.json"
        write_text_atomic(json_path, json.dumps(metrics, indent=1) + "\n")
        print(f"== {ckpt} on {args.dataset}/{args.split}")
        print(format_table(metrics))
        if metrics["skipped"]:
            print(f"skipped {metrics['skipped']} unreadable clips: " + "; ".join(metrics["skipped_clips"][:10]))
        print(f"metrics: {json_path}")
        if not args.no_bundle:
            npz = folder / f"{stem}.{args.split}.npz"
            bundle.save(npz)
            print(f"eval bundle: {npz}")
    return status
