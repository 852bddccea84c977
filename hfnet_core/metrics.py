"""Classification metrics from logits: top-k, per-class accuracy, macro precision/recall, confusion matrix.

All functions take plain numpy arrays; labels < 0 mean "unknown" and are left out. Macro precision and
recall follow scikit-learn's defaults: averaged over the classes that occur as a label *or* a prediction,
with 0 for a ratio whose denominator is 0 (a class never predicted has precision 0). Per-class values are
``None`` where undefined.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per clip: is the label among the ``k`` highest logits (ties broken by lower index)."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    k = min(k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = clips of true class i predicted as j."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return cm


def pair_accuracies(labels: np.ndarray, predictions: np.ndarray,
                    pairs: Sequence[tuple[int, int]]) -> dict[str, float]:
    """For classes that come in pairs (e.g. a motion and its time reversal), over clips of paired classes:

    * ``pair_merged_accuracy``: prediction in the right pair (either class of it);
    * ``within_pair_accuracy``: among those, the right class of the pair (chance = 0.5 for a model that
      cannot tell the two apart);
    * ``paired_accuracy``: plain accuracy on clips of paired classes.
    """
    pair_of = {}
    for i, (a, b) in enumerate(pairs):
        pair_of[a] = i
        pair_of[b] = i
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    keep = np.array([int(y) in pair_of for y in labels], dtype=bool)
    if not keep.any():
        return {"pair_merged_accuracy": float("nan"), "within_pair_accuracy": float("nan"),
                "paired_accuracy": float("nan"), "paired_clips": 0}
    y, p = labels[keep], predictions[keep]
    same_pair = np.array([pair_of.get(int(pi), -1) == pair_of[int(yi)] for yi, pi in zip(y, p)])
    correct = p == y
    return {
        "pair_merged_accuracy": float(same_pair.mean()),
        "within_pair_accuracy": float(correct[same_pair].mean()) if same_pair.any() else float("nan"),
        "paired_accuracy": float(correct.mean()),
        "paired_clips": int(keep.sum()),
    }


def classification_metrics(logits: np.ndarray, labels: np.ndarray,
                           class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Every metric ``hfnet eval`` reports, as JSON-ready Python values."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = logits.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    known = labels >= 0
    logits, labels = logits[known], labels[known]
    n = int(len(labels))
    preds = logits.argmax(axis=1) if n else np.zeros(0, np.int64)
    cm = confusion_matrix(labels, preds, num_classes)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
    seen = (support > 0) | (predicted > 0)
    return {
        "num_clips": n,
        "top1": float(topk_correct(logits, labels, 1).mean()) if n else float("nan"),
        "top5": float(topk_correct(logits, labels, 5).mean()) if n else float("nan"),
        "macro_precision": float(np.nan_to_num(precision[seen]).mean()) if seen.any() else float("nan"),
        "macro_recall": float(np.nan_to_num(recall[seen]).mean()) if seen.any() else float("nan"),
        "per_class": [
            {"class": names[i], "index": i, "support": int(support[i]),
             "accuracy": _f(recall[i]), "precision": _f(precision[i])}
            for i in range(num_classes)
        ],
        "confusion_matrix": cm.tolist(),
        "class_names": names,
    }


def _f(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text summary table of ``classification_metrics`` output."""
    lines = [
        f"clips {metrics['num_clips']}   top-1 {100 * metrics['top1']:.2f} %   top-5 {100 * metrics['top5']:.2f} %   "
        f"macro precision {100 * metrics['macro_precision']:.2f} %   macro recall {100 * metrics['macro_recall']:.2f} %",
    ]
    if "within_pair_accuracy" in metrics:
        lines.append(f"reversed pairs: pair-merged {100 * metrics['pair_merged_accuracy']:.2f} %   "
                     f"within-pair {100 * metrics['within_pair_accuracy']:.2f} %")
    width = max([len(r["class"]) for r in metrics["per_class"]] + [5])
    lines.append(f"{'class':<{width}}  {'n':>5}  {'acc %':>6}  {'prec %':>6}")
    for r in metrics["per_class"]:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}"
        prec = "-" if r["precision"] is None else f"{100 * r['precision']:.1f}"
        lines.append(f"{r['class']:<{width}}  {r['support']:>5}  {acc:>6}  {prec:>6}")
    return "\n".join(lines)
