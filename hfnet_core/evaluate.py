"""``hfnet eval``: metrics and an eval bundle for a checkpoint on one split - at any scale, resumable.

Library use (the app and ``hfnet train-demo`` call this)::

    metrics, bundle = evaluate_model(model, dataset_or_loader, class_names=..., metadata={...})

``metrics`` holds top-1, top-5, per-class accuracy, macro precision/recall and the confusion matrix
(``hfnet_core.metrics``); for SynthSomething also accuracy within reversed pairs. ``bundle`` is an
``EvalBundle``: clip ids and paths, labels, logits and pooled pre-classifier features
(``model.inspect(x).pooled_features``) in dataset order. Unreadable clips are skipped, counted and named
(the file that failed and why: ``hfnet_core.data.loading.GuardedDataset``) in ``metrics["skipped_clips"]``.
A metric that is undefined (no clip evaluated, no clip of a reversed pair) is ``null`` in the JSON, with
a sentence in ``metrics["notes"]`` - never NaN.

The command
-----------
::

    hfnet eval CKPT [CKPT ...] --dataset something-v1 --root DATA --split val
    torchrun --nproc_per_node 4 -m hfnet_core.cli eval CKPT --dataset something-v1 --root DATA --split val

The split is cut into chunks of ``--chunk-size`` consecutive clips; process (rank) r of W takes chunks
r, r + W, ... Each finished chunk is written atomically to ``<out>/<stem>.<split>.parts/`` with a
manifest of what is being evaluated (checkpoint sha256, dataset, split, clip count, chunk size). A rerun
- after Ctrl-C, a crash, a reboot, with any number of processes - skips the chunks already there; a
manifest that does not match (another checkpoint or split) is refused unless ``--fresh``. When every
chunk is there, rank 0 merges them in dataset order into the metrics JSON and the bundle, removes the
parts folder and computes the bundle's projections (``hfnet project``; ``--no-project`` to skip).
Progress shows clips/s and an ETA (a bar on a terminal, a line per chunk in a log).

Exit status: 0 on success; 1 when a checkpoint could not be evaluated because of the *model* rather than
the data - the model's forward pass failed, or every clip failed (the same way: a configuration
problem, not a bad file) - in which case the JSON says so and no bundle is written; 2 for bad arguments
(any ``HfnetError``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .atomic import atomic_path, write_text_atomic
from .data.loading import build_dataset, eval_loader
from .device import pick_device, rank_and_world
from .errors import HfnetError, describe
from .eval_bundle import EvalBundle
from .metrics import classification_metrics, format_table, pair_accuracies
from .multitask import TaskSpec, is_multitask

__all__ = ["EvaluationError", "InferenceResult", "cli_main", "evaluate_checkpoint", "evaluate_model",
           "evaluate_sharded", "evaluate_splits", "format_multitask_table", "json_safe",
           "multitask_metrics", "run_inference"]


class EvaluationError(HfnetError):
    """A checkpoint cannot be evaluated because of the model or its configuration, not of single clips."""


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
                  batch_size: int = 16, amp: bool = False, num_workers: int = 0, progress: bool = False,
                  indices: Sequence[int] | None = None,
                  on_batch: Callable[[int], None] | None = None) -> InferenceResult:
    """Logits and pooled features of every readable clip (of ``indices``, if given), in order; the model
    is put in eval mode. ``on_batch(n)`` is called after each batch with the number of items it covered.

    A ``DataLoader`` passed in must yield ``collate_batch``-style dicts (``frames``, ``label``, ``clip_id``,
    ``path``, ``skipped``); a dataset is wrapped so unreadable clips are skipped and named. A failure of
    the model itself raises ``EvaluationError`` naming the batch's first clip.
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
    loader = eval_loader(data, batch_size, num_workers, indices)
    it: Any = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc="eval", leave=False)
    try:
        for batch in it:
            skipped += [tuple(s) for s in batch["skipped"]]  # type: ignore[misc]
            n_items = len(batch["clip_id"]) + len(batch["skipped"])
            if batch["frames"] is not None:
                x = batch["frames"].to(device)
                try:
                    with torch.autocast(device_type=device.type, dtype=torch.float16,
                                        enabled=amp and device.type == "cuda"):
                        out = model.inspect(x)
                except (RuntimeError, ValueError, IndexError, TypeError) as e:
                    first = batch["path"][0] if batch["path"] else "?"
                    raise EvaluationError(
                        f"the model failed on a batch of {len(batch['path'])} clips starting with {first} "
                        f"(input {tuple(x.shape)}): {describe(e)}",
                        hint="The checkpoint's configuration (frames, input size, classes) does not fit its "
                             "weights or this data; this is not a problem of the clips.") from e
                logits.append(out.logits.float().cpu().numpy())
                feats.append(out.pooled_features.float().cpu().numpy())
                labels.append(np.asarray(batch["label"], dtype=np.int64))
                ids += list(batch["clip_id"])
                paths += list(batch["path"])
            if on_batch is not None:
                on_batch(n_items)
    finally:
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


# --- metrics without NaN ----------------------------------------------------------------------------

_WHY_NULL = {
    "top1": "no clip was evaluated",
    "top5": "no clip was evaluated",
    "macro_precision": "no clip was evaluated",
    "macro_recall": "no clip was evaluated",
    "pair_merged_accuracy": "no evaluated clip belongs to a reversed pair",
    "within_pair_accuracy": "no clip was predicted inside its own reversed pair",
    "paired_accuracy": "no evaluated clip belongs to a reversed pair",
}


def json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with every NaN / infinite number replaced by None (JSON ``null``) and, for each
    top-level one, a sentence in ``metrics["notes"]`` saying why it is undefined."""
    notes = list(metrics.get("notes", []))

    def clean(v: Any, key: str | None = None) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            if key is not None:
                notes.append(f"{key} is null: {_WHY_NULL.get(key, 'undefined on these clips')}")
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    out = {k: clean(v, k) for k, v in metrics.items() if k != "notes"}
    if notes:
        out["notes"] = notes
    return out


def _reason_shape(reason: str) -> str:
    """A skip reason with file names and numbers removed, so "the same failure" can be counted."""
    return re.sub(r"\d+", "#", re.sub(r"(/|\w:\\)[^\s:;,'\"]+", "<file>", reason)).strip()


def failure_verdict(n_items: int, n_evaluated: int, skipped: Sequence[tuple[str, str]]) -> str | None:
    """A sentence if the skips point at the model or its configuration rather than at the data - every
    clip failed - else None. Says whether they all failed the same way."""
    if n_items == 0 or n_evaluated > 0:
        return None
    shapes = Counter(_reason_shape(r) for _, r in skipped)
    if not shapes:
        return f"none of the {n_items} clips produced a prediction"
    (common, count), = shapes.most_common(1)
    example = next(f"{f}: {r}" for f, r in skipped if _reason_shape(r) == common)
    if count == len(skipped):
        return (f"every one of the {n_items} clips failed the same way ({example}) - a problem of the "
                "checkpoint's configuration (frames, input size, pixel convention) or of the dataset "
                "setup, not of individual files")
    return f"every one of the {n_items} clips failed ({len(shapes)} different errors; first: {example})"


def summarize(res: InferenceResult, class_names: Sequence[str], reversed_pairs: Sequence[tuple[int, int]] | None,
              metadata: dict[str, Any] | None, n_items: int | None = None, model_config: Any = None,
              task_spec: TaskSpec | None = None) -> tuple[dict[str, Any], EvalBundle]:
    """Metrics (NaN-free, see ``json_safe``) and the bundle of an inference result.

    A multi-task model (``model_config`` says so; ``hfnet_core/multitask.py``) gets the EPIC-Kitchens
    metrics (``multitask_metrics``), with many-shot classes from ``task_spec``'s training counts; its
    bundle's metadata says ``tasks``.
    """
    names = list(class_names) or [str(i) for i in range(res.logits.shape[1])]
    spec = TaskSpec.from_model(model_config, names)
    meta = dict(metadata or {})
    if spec is not None:  # verb / noun / action: the challenge's metrics (hfnet_core/metrics_epic.py)
        metrics = multitask_metrics(res.logits, res.labels, spec, getattr(task_spec, "train_counts", None),
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
    verdict = failure_verdict(len(res.clip_ids) + len(res.skipped) if n_items is None else n_items,
                              len(res.clip_ids), res.skipped)
    if verdict:
        metrics["error"] = f"nothing could be evaluated: {verdict}"
    meta.setdefault("num_clips", len(res.clip_ids))
    meta["skipped"] = len(res.skipped)
    bundle = EvalBundle(res.clip_ids, res.paths, res.labels, res.logits, res.features, names, meta)
    return json_safe(metrics), bundle


def evaluate_model(model: torch.nn.Module, data: Dataset | DataLoader, class_names: Sequence[str] | None = None,
                   device: torch.device | str | None = None, batch_size: int = 16, num_workers: int = 0,
                   metadata: dict[str, Any] | None = None, reversed_pairs: Sequence[tuple[int, int]] | None = None,
                   progress: bool = False, task_spec: TaskSpec | None = None) -> tuple[dict[str, Any], EvalBundle]:
    """Evaluate ``model`` on every clip of ``data``: (metrics dict, EvalBundle).

    ``class_names`` defaults to the dataset's ``class_names``; ``reversed_pairs`` (pairs of class indices
    that are time reversals of each other) adds pair-merged and within-pair accuracy (of the verbs, for a
    multi-task model, whose many-shot classes come from ``task_spec``'s - else the dataset's - training
    counts).
    """
    ds = data.dataset if isinstance(data, DataLoader) else data
    if class_names is None:
        class_names = list(getattr(ds, "class_names", []) or [])
    res = run_inference(model, data, device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    counted = task_spec if task_spec is not None else getattr(ds, "task_spec", None)
    return summarize(res, list(class_names), reversed_pairs, metadata, model_config=getattr(model, "config", None),
                     task_spec=counted)


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
        lines.append(f"{label:<10}" + "".join(f"{100 * (m[key][t] or 0.0):>8.2f}" for t in ("verb", "noun", "action")))
    if metrics.get("within_pair_accuracy") is not None:
        lines.append(f"verbs, reversed pairs: pair-merged {100 * metrics['pair_merged_accuracy']:.2f} %   "
                     f"within-pair {100 * metrics['within_pair_accuracy']:.2f} %")
    return "\n".join(lines)


# --- a checkpoint on a split ------------------------------------------------------------------------

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


@dataclass(frozen=True)
class EvalSpec:
    """What is evaluated: the part of the manifest that must match for a resume."""

    dataset: str = "synth"
    split: str = "test"
    root: str = ""
    list_file: str = ""
    synth_per_class: int = 38
    synth_seed: int = 0
    split_index: int = 1
    train_list: str = ""


@dataclass
class _Prepared:
    loaded: Any
    ds: Dataset
    meta: dict[str, Any]
    pairs: Any
    counted: TaskSpec | None  # training counts of a multi-task model (many-shot classes)


def _prepare(path: str | Path, spec: EvalSpec, device: Any) -> _Prepared:
    from .checkpoint import load_checkpoint

    loaded = load_checkpoint(path, device=device)
    ds = dataset_for_checkpoint(loaded.model, spec.dataset, spec.split, spec.root, spec.list_file,
                                spec.synth_per_class, spec.synth_seed, spec.split_index, spec.train_list)
    task = TaskSpec.from_model(loaded.config, loaded.class_names)
    if not _same_vocabulary(list(loaded.class_names), ds, task):
        raise EvaluationError(f"its {len(loaded.class_names)} classes differ from the {spec.dataset} dataset's "
                              f"{len(getattr(ds, 'class_names', []) or [])} classes", path=path,
                              hint="Evaluate it on the dataset it was trained on.")
    pairs = None
    counted = getattr(ds, "task_spec", None)
    if spec.dataset == "synth":
        from .data.synthetic import REVERSED_PAIRS

        pairs = REVERSED_PAIRS
        if task is not None:
            counted = synth_training_spec(loaded.metadata.get("training", {}), loaded.config.num_segments,
                                          loaded.config.input_size)
    meta = {"checkpoint": str(path), "checkpoint_sha256": loaded.sha256, "model_name": loaded.config.name,
            "dataset": spec.dataset, "split": spec.split, "root": spec.root}
    if spec.dataset == "synth":
        meta.update(synth_per_class=spec.synth_per_class, synth_seed=spec.synth_seed)
    if spec.list_file and Path(spec.list_file).is_dir():
        meta["split_index"] = spec.split_index
    return _Prepared(loaded, ds, meta, pairs, counted)


def evaluate_checkpoint(path: str | Path, dataset: str = "synth", split: str = "test", root: str = "",
                        list_file: str = "", synth_per_class: int = 38, synth_seed: int = 0, batch_size: int = 16,
                        num_workers: int = 0, device: str | torch.device | None = None,
                        progress: bool = False, split_index: int = 1,
                        train_list: str = "") -> tuple[dict[str, Any], EvalBundle]:
    """Load a checkpoint, evaluate it on ``split`` in one go and return (metrics, bundle) with metadata.

    ``split_index`` picks HMDB51's official split (``list_file`` = the folder of split files);
    ``train_list`` names EPIC-Kitchens' training CSV (its action pairs and many-shot classes).
    """
    device = device or pick_device()
    spec = EvalSpec(dataset, split, root, list_file, synth_per_class, synth_seed, split_index, train_list)
    p = _prepare(path, spec, device)
    metrics, bundle = evaluate_model(p.loaded.model, p.ds, p.loaded.class_names, device, batch_size, num_workers,
                                     p.meta, p.pairs, progress, task_spec=p.counted)
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
            "splits": rows, "mean_top1": float(np.mean([r["top1"] or 0.0 for r in rows])),
            "mean_top5": float(np.mean([r["top5"] or 0.0 for r in rows])), "same_checkpoint": len(checkpoints) == 1}


# --- sharded, resumable -----------------------------------------------------------------------------

def _chunk_path(parts: Path, c: int) -> Path:
    return parts / f"chunk-{c:06d}.npz"


def _write_chunk(path: Path, res: InferenceResult, start: int, stop: int) -> None:
    from .eval_bundle import _strs

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, clip_ids=_strs(res.clip_ids), paths=_strs(res.paths), labels=res.labels,
                     logits=res.logits.astype(np.float32), features=res.features.astype(np.float32),
                     skipped_files=_strs([a for a, _ in res.skipped]),
                     skipped_reasons=_strs([b for _, b in res.skipped]),
                     span=np.array([start, stop], np.int64), seconds=np.array(res.seconds))


def _read_chunk(path: Path) -> InferenceResult | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return InferenceResult([str(s) for s in z["clip_ids"]], [str(s) for s in z["paths"]], z["labels"],
                                   z["logits"], z["features"],
                                   list(zip([str(s) for s in z["skipped_files"]],
                                            [str(s) for s in z["skipped_reasons"]])),
                                   float(z["seconds"]))
    except Exception:  # noqa: BLE001 - a damaged file (zipfile and numpy fail in many ways) counts as absent
        return None


def _manifest_ok(parts: Path, manifest: dict[str, Any], fresh: bool) -> None:
    """Create, check or (``fresh``) replace the parts folder's manifest."""
    mpath = parts / "manifest.json"
    if mpath.is_file() and not fresh:
        try:
            old = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if old != manifest:
            diff = [k for k in manifest if old is None or old.get(k) != manifest[k]]
            raise EvaluationError(
                f"{parts} holds partial results of another evaluation (differs in: {', '.join(diff) or 'format'})",
                path=parts, hint="Pass --fresh to discard them, or evaluate into another --out-dir.")
        return
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    write_text_atomic(mpath, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


class _Progress:
    """Clips done / total with clips/s and an ETA: a tqdm bar on a terminal, a line per chunk otherwise."""

    def __init__(self, total: int, already: int, desc: str, bar: bool) -> None:
        self.total, self.done, self.desc = total, already, desc
        self.t0, self.new = time.perf_counter(), 0
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=already, desc=desc, unit="clip", leave=False)

    def add(self, n: int) -> None:
        self.done += n
        self.new += n
        if self.bar is not None:
            self.bar.update(n)

    def line(self) -> str:
        dt = time.perf_counter() - self.t0
        rate = self.new / dt if dt > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_s = "?" if not math.isfinite(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        return f"{self.desc}: {self.done}/{self.total} clips, {rate:.1f} clips/s, ETA {eta_s}"

    def chunk_done(self) -> None:
        if self.bar is None:
            print(self.line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def evaluate_sharded(path: str | Path, parts: Path, spec: EvalSpec, rank: int = 0, world_size: int = 1,
                     chunk_size: int = 256, fresh: bool = False, batch_size: int = 16, num_workers: int = 0,
                     device: str | torch.device | None = None,
                     progress: bool = False) -> tuple[dict[str, Any], EvalBundle] | None:
    """This process's chunks of the evaluation of ``path`` (skipping those already in ``parts``); on
    rank 0, once all chunks exist, the merged (metrics, bundle) - ``parts`` is then removed. Other ranks
    return None. Raises ``EvaluationError`` when the model fails."""
    import torch.distributed as dist

    device = device or pick_device()
    p = _prepare(path, spec, device)
    loaded, ds, meta, pairs = p.loaded, p.ds, p.meta, p.pairs
    n_items = len(ds)  # type: ignore[arg-type]
    chunk_size = max(1, int(chunk_size))
    n_chunks = max(1, math.ceil(n_items / chunk_size))
    manifest = {"format": 1, "checkpoint_sha256": loaded.sha256, "num_items": n_items, "chunk_size": chunk_size,
                **{k: v for k, v in vars(spec).items()}}
    if rank == 0:
        _manifest_ok(parts, manifest, fresh)
    if dist.is_initialized():
        dist.barrier()
    elif not (parts / "manifest.json").is_file():
        raise EvaluationError(f"{parts}: no manifest; start rank 0 (or a single process) first", path=parts)
    else:
        _manifest_ok(parts, manifest, False)
    mine = [c for c in range(n_chunks) if c % world_size == rank]
    todo = [c for c in mine if _read_chunk(_chunk_path(parts, c)) is None]
    span = [(c * chunk_size, min(n_items, (c + 1) * chunk_size)) for c in range(n_chunks)]
    total = sum(b - a for a, b in (span[c] for c in mine))
    left = sum(b - a for a, b in (span[c] for c in todo))
    bar = _Progress(total, total - left, f"eval {Path(path).name}" + (f" [rank {rank}/{world_size}]"
                                                                       if world_size > 1 else ""),
                    progress and sys.stderr.isatty())
    if total - left and rank == 0:
        print(f"resuming: {total - left} of {total} clips already evaluated in {parts}", file=sys.stderr)
    try:
        for c in todo:
            a, b = span[c]
            res = run_inference(loaded.model, ds, device, batch_size=batch_size, num_workers=num_workers,
                                indices=range(a, b), on_batch=bar.add)
            _write_chunk(_chunk_path(parts, c), res, a, b)
            bar.chunk_done()
    finally:
        bar.close()
    if dist.is_initialized():
        dist.barrier()
    if rank != 0:
        return None
    results = [_read_chunk(_chunk_path(parts, c)) for c in range(n_chunks)]
    missing = [c for c, r in enumerate(results) if r is None]
    if missing:
        raise EvaluationError(f"{len(missing)} of {n_chunks} chunks are not in {parts} yet (first: {missing[0]}); "
                              "the other ranks have not finished", path=parts,
                              hint="Run every rank (torchrun starts them all), then rank 0 merges.")
    merged = InferenceResult(
        [i for r in results for i in r.clip_ids], [p for r in results for p in r.paths],  # type: ignore[union-attr]
        np.concatenate([r.labels for r in results]).astype(np.int64),  # type: ignore[union-attr]
        np.concatenate([r.logits for r in results]).astype(np.float32),  # type: ignore[union-attr]
        np.concatenate([r.features for r in results]).astype(np.float32),  # type: ignore[union-attr]
        [s for r in results for s in r.skipped], sum(r.seconds for r in results))  # type: ignore[union-attr]
    meta.update(world_size=world_size, chunk_size=chunk_size)
    metrics, bundle = summarize(merged, loaded.class_names, pairs, meta, n_items, model_config=loaded.config,
                                task_spec=p.counted)
    metrics["metadata"] = bundle.metadata
    return metrics, bundle


# --------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfnet eval", description="Evaluate checkpoints on one split: metrics "
                                "table + JSON, and an eval bundle (.npz) per checkpoint for the app. Resumable; "
                                "shards across processes under torchrun.")
    p.add_argument("checkpoints", nargs="+", help="hfnet .safetensors checkpoints (or importable foreign files)")
    p.add_argument("--dataset", default="synth",
                   help="synth, something-v1, video-folder, csv or epic-kitchens (default synth)")
    p.add_argument("--root", default="", help="dataset folder (not for synth)")
    p.add_argument("--split", default="test", help="split name (default test)")
    p.add_argument("--list", dest="list_file", default="", help="annotation file of the split, if not the default")
    p.add_argument("--synth-per-class", type=int, default=38, help="SynthSomething clips per class (default 38)")
    p.add_argument("--synth-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=256,
                   help="clips per partial result written to disk (the resume granularity; default 256)")
    p.add_argument("--fresh", action="store_true", help="discard partial results of an earlier run")
    p.add_argument("--out-dir", default="", help="where to write <checkpoint>.<split>.json / .npz "
                   "(default: next to each checkpoint)")
    p.add_argument("--no-bundle", action="store_true", help="write only the metrics JSON")
    p.add_argument("--no-project", action="store_true", help="do not compute the bundle's projections")
    p.add_argument("--project-methods", nargs="+", default=None, metavar="METHOD",
                   help="projections to compute at the end (default: tsne umap pca)")
    p.add_argument("--split-index", type=int, default=1,
                   help="HMDB51: which official split (the --list folder holds the split files)")
    p.add_argument("--splits", default="", metavar="1,2,3",
                   help="HMDB51's protocol: evaluate checkpoint i on split i (or one checkpoint on all) and "
                        "report each split and the mean; writes <first checkpoint>.splits.json")
    p.add_argument("--train-list", default="", help="EPIC-Kitchens: the training annotations (action classes, "
                   "many-shot classes); default <root>/EPIC_train_action_labels.csv")
    return p


def _printable(metrics: dict[str, Any]) -> dict[str, Any]:
    """``format_table`` wants numbers: undefined (null) ones print as nan there."""
    return {k: (float("nan") if v is None and k in _WHY_NULL else v) for k, v in metrics.items()}


def _one(ckpt: str, args: argparse.Namespace, rank: int, world: int) -> int:
    spec = EvalSpec(args.dataset, args.split, args.root, args.list_file, args.synth_per_class, args.synth_seed,
                    args.split_index, args.train_list)
    stem = Path(ckpt).name.removesuffix(".safetensors")
    folder = Path(args.out_dir) if args.out_dir else Path(ckpt).parent
    json_path = folder / f"{stem}.{args.split}.json"
    npz = folder / f"{stem}.{args.split}.npz"
    parts = folder / f"{stem}.{args.split}.parts"
    try:
        out = evaluate_sharded(ckpt, parts, spec, rank, world, args.chunk_size, args.fresh, args.batch_size,
                               args.workers, progress=rank == 0)
    except EvaluationError as e:
        if rank == 0:
            write_text_atomic(json_path, json.dumps({"error": e.one_line(), "checkpoint": ckpt}, indent=1) + "\n")
            print(f"hfnet eval: {ckpt}: {e.one_line()} (written to {json_path})", file=sys.stderr)
        return 1
    if out is None:
        return 0
    metrics, bundle = out
    write_text_atomic(json_path, json.dumps(metrics, indent=1, allow_nan=False) + "\n")
    print(f"== {ckpt} on {args.dataset}/{args.split}")
    if "error" in metrics:
        shutil.rmtree(parts, ignore_errors=True)  # nothing worth resuming
        print(f"hfnet eval: {ckpt}: {metrics['error']}. No eval bundle written; metrics: {json_path}",
              file=sys.stderr)
        return 1
    print(format_multitask_table(metrics) if "epic" in metrics else format_table(_printable(metrics)))
    for note in metrics.get("notes", []):
        print(f"note: {note}")
    if metrics["skipped"]:
        print(f"skipped {metrics['skipped']} unreadable clips: " + "; ".join(metrics["skipped_clips"][:10])
              + (" ..." if metrics["skipped"] > 10 else ""))
    print(f"metrics: {json_path}")
    if not args.no_bundle:
        bundle.save(npz)
        print(f"eval bundle: {npz}")
    shutil.rmtree(parts, ignore_errors=True)
    if not args.no_bundle and not args.no_project and len(bundle.clip_ids):
        from .analysis.precompute import project_bundles
        from .analysis.projection_store import METHODS

        try:
            project_bundles([npz], args.project_methods or list(METHODS), pairs=False)
        except (HfnetError, RuntimeError, ValueError, OSError) as e:
            print(f"hfnet eval: the projections of {npz} failed ({describe(e)}); the bundle is fine - rerun "
                  f"`hfnet project {npz}`.", file=sys.stderr)
    return 0


def cli_main(argv: Sequence[str] | None = None) -> int:
    import torch.distributed as dist

    from .checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    if args.splits:
        return _splits_cli(args)
    rank, world = rank_and_world()
    status = 0
    try:
        for ckpt in args.checkpoints:
            try:
                status = max(status, _one(ckpt, args, rank, world))
            except (CheckpointError, OSError) as e:
                print(f"hfnet eval: {describe(e)}", file=sys.stderr)
                status = max(status, 1)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return status


def _splits_cli(args: argparse.Namespace) -> int:
    try:
        splits = [int(x) for x in args.splits.split(",") if x.strip()]
        result = evaluate_splits(args.checkpoints, args.dataset, args.root, args.list_file, splits,
                                 batch_size=args.batch_size, num_workers=args.workers, progress=sys.stderr.isatty())
    except (ValueError, HfnetError) as e:
        print(f"hfnet eval: {describe(e)}", file=sys.stderr)
        return 1
    for r in result["splits"]:
        print(f"split {r['split']}: top-1 {100 * (r['top1'] or 0.0):.2f} %  top-5 {100 * (r['top5'] or 0.0):.2f} %  "
              f"({r['num_clips']} clips, {r['skipped']} skipped)  {r['checkpoint']}")
    print(f"mean over splits {splits}: top-1 {100 * result['mean_top1']:.2f} %  top-5 {100 * result['mean_top5']:.2f} %"
          + ("  (one checkpoint for every split: not the protocol)" if result["same_checkpoint"] else ""))
    first = Path(args.checkpoints[0])
    folder = Path(args.out_dir) if args.out_dir else first.parent
    out = folder / f"{first.name.removesuffix('.safetensors')}.splits.json"
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    print(f"metrics: {out}")
    return 0
