"""Model A vs model B on the same clips: the paper's Fig. 3a, per-class accuracy, confusion, flipped clips.

Two eval bundles are compared clip by clip, matched by ``clip_id`` (their intersection, in A's order), so
bundles made on different clip sets still compare fairly. Both must use the same class list in the same
order (``check_same_classes``); a clip whose label differs between the bundles is left out of every
count (``Alignment.label_conflicts`` says how many).

Fig. 3a of the paper ranks classes by the number of *corrected samples*: clips of the class that HF-TSN
(A) gets right and TSN (B) gets wrong. Its y labels read "true label (HF-TSN) / predicted label (TSN)",
the TSN label being the class TSN most often predicts for those corrected clips (``most_improved``).

Nothing here imports streamlit; everything is numpy over ``EvalBundle`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hfnet_core.eval_bundle import EvalBundle

__all__ = [
    "Alignment",
    "ClassListMismatch",
    "align",
    "check_same_classes",
    "confusion",
    "flipped_clips",
    "improved_clip_ids",
    "most_improved",
    "per_class_accuracy",
    "softmax",
    "take",
]


class ClassListMismatch(ValueError):
    """A and B predict different class lists; the message says where they first differ."""


def check_same_classes(bundle_a: EvalBundle, bundle_b: EvalBundle, name_a: str = "A",
                       name_b: str = "B") -> None:
    """Raise ``ClassListMismatch`` naming the first difference unless both class lists are identical."""
    ca, cb = list(bundle_a.class_names), list(bundle_b.class_names)
    if ca == cb:
        return
    if len(ca) != len(cb):
        only_a = [c for c in ca if c not in set(cb)]
        only_b = [c for c in cb if c not in set(ca)]
        detail = f"{name_a} has {len(ca)} classes and {name_b} has {len(cb)}"
        if only_a or only_b:
            detail += (f"; only in {name_a}: {_first(only_a)}; only in {name_b}: {_first(only_b)}")
    elif set(ca) == set(cb):
        i = next(i for i, (x, y) in enumerate(zip(ca, cb)) if x != y)
        detail = (f"both have the same {len(ca)} classes but in a different order (index {i}: "
                  f"{ca[i]!r} in {name_a}, {cb[i]!r} in {name_b})")
    else:
        i = next(i for i, (x, y) in enumerate(zip(ca, cb)) if x != y)
        detail = f"class {i} is {ca[i]!r} in {name_a} but {cb[i]!r} in {name_b}"
    raise ClassListMismatch(
        f"Models {name_a} and {name_b} predict different class lists: {detail}. "
        "A clip-by-clip comparison needs both trained on the same classes in the same order."
    )


def _first(items: list[str], n: int = 3) -> str:
    if not items:
        return "none"
    return ", ".join(repr(s) for s in items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


@dataclass(frozen=True)
class Alignment:
    """Rows of A and B that hold the same clip, in A's order."""

    clip_ids: list[str]
    rows_a: np.ndarray  # (M,) int64 row indices into bundle A
    rows_b: np.ndarray  # (M,) int64 row indices into bundle B
    labels: np.ndarray  # (M,) int64; -1 where unknown or where A and B disagree
    n_a: int  # clips in A
    n_b: int  # clips in B
    label_conflicts: int  # matched clips whose labels differ between A and B (labels set to -1)

    @property
    def n_matched(self) -> int:
        return len(self.clip_ids)

    def describe(self) -> str:
        text = f"{self.n_matched} clips matched by id ({self.n_a} in A, {self.n_b} in B)"
        if self.label_conflicts:
            text += f"; {self.label_conflicts} have different labels in A and B and are not counted"
        return text


def align(bundle_a: EvalBundle, bundle_b: EvalBundle) -> Alignment:
    """Match clips by id (first occurrence of a repeated id wins)."""
    index_b: dict[str, int] = {}
    for j, cid in enumerate(bundle_b.clip_ids):
        index_b.setdefault(cid, j)
    seen: set[str] = set()
    ids, rows_a, rows_b = [], [], []
    for i, cid in enumerate(bundle_a.clip_ids):
        if cid in seen or cid not in index_b:
            continue
        seen.add(cid)
        ids.append(cid)
        rows_a.append(i)
        rows_b.append(index_b[cid])
    ra = np.asarray(rows_a, dtype=np.int64)
    rb = np.asarray(rows_b, dtype=np.int64)
    la, lb = bundle_a.labels[ra], bundle_b.labels[rb]
    conflict = (la >= 0) & (lb >= 0) & (la != lb)
    labels = np.where(conflict, -1, np.where(la >= 0, la, lb)).astype(np.int64)
    return Alignment(ids, ra, rb, labels, len(bundle_a.clip_ids), len(bundle_b.clip_ids),
                     int(conflict.sum()))


def take(bundle: EvalBundle, rows: np.ndarray | list[int]) -> EvalBundle:
    """A bundle holding only ``rows`` (in that order)."""
    rows = np.asarray(rows, dtype=np.int64)
    return EvalBundle(
        clip_ids=[bundle.clip_ids[i] for i in rows],
        paths=[bundle.paths[i] for i in rows],
        labels=bundle.labels[rows],
        logits=bundle.logits[rows],
        features=bundle.features[rows],
        class_names=list(bundle.class_names),
        metadata=dict(bundle.metadata),
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _paired(bundle_a: EvalBundle, bundle_b: EvalBundle) -> tuple[Alignment, np.ndarray, np.ndarray]:
    check_same_classes(bundle_a, bundle_b)
    al = align(bundle_a, bundle_b)
    return al, bundle_a.predictions[al.rows_a], bundle_b.predictions[al.rows_b]


def most_improved(bundle_a: EvalBundle, bundle_b: EvalBundle, top_k: int = 10) -> list[dict[str, Any]]:
    """Classes with the most clips A gets right and B gets wrong (the paper's Fig. 3a), best first.

    Each entry: ``class_index``, ``class_name``, ``n_improved`` (A right, B wrong), ``n_worsened``
    (B right, A wrong), ``n_clips`` (matched clips of the class), ``acc_a``, ``acc_b`` (on those clips),
    ``b_prediction`` / ``b_prediction_name`` / ``b_prediction_count`` (what B most often predicts for the
    improved clips; ties go to the lower class index) and ``label`` = "true (A) / predicted (B)".
    Ranked by ``n_improved``, then by the net gain ``n_improved - n_worsened``, then class index; classes
    with no improved clip are left out, so fewer than ``top_k`` may come back.
    """
    al, pa, pb = _paired(bundle_a, bundle_b)
    names = list(bundle_a.class_names)
    y = al.labels
    known = y >= 0
    a_ok, b_ok = (pa == y) & known, (pb == y) & known
    improved, worsened = a_ok & ~b_ok, b_ok & ~a_ok
    k = len(names)
    rows = []
    for c in np.unique(y[improved]):
        c = int(c)
        in_c = y == c
        fixed = improved & in_c
        counts = np.bincount(pb[fixed], minlength=k)
        wrong = int(counts.argmax())
        n_c = int(in_c.sum())
        rows.append({
            "class_index": c,
            "class_name": names[c],
            "n_improved": int(fixed.sum()),
            "n_worsened": int((worsened & in_c).sum()),
            "n_clips": n_c,
            "acc_a": float(a_ok[in_c].mean()),
            "acc_b": float(b_ok[in_c].mean()),
            "b_prediction": wrong,
            "b_prediction_name": names[wrong],
            "b_prediction_count": int(counts[wrong]),
            "label": f"{names[c]} / {names[wrong]}",
        })
    rows.sort(key=lambda r: (-r["n_improved"], -(r["n_improved"] - r["n_worsened"]), r["class_index"]))
    return rows[: max(0, int(top_k))]


def improved_clip_ids(bundle_a: EvalBundle, bundle_b: EvalBundle, top_k: int = 10) -> tuple[list[int], list[str]]:
    """The ``top_k`` most-improved classes and every matched clip of those classes (A's order).

    This is the clip set of the paper's Fig. 3b/c (t-SNE of the 10 most-improved classes).
    """
    classes = [r["class_index"] for r in most_improved(bundle_a, bundle_b, top_k)]
    al = align(bundle_a, bundle_b)
    keep = np.isin(al.labels, classes)
    return classes, [cid for cid, k in zip(al.clip_ids, keep) if k]


def per_class_accuracy(bundle: EvalBundle) -> np.ndarray:
    """(K,) accuracy per true class; NaN for a class with no labelled clip."""
    k = len(bundle.class_names)
    y = bundle.labels
    known = y >= 0
    total = np.bincount(y[known], minlength=k).astype(np.float64)
    correct = np.bincount(y[known & (bundle.predictions == y)], minlength=k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def confusion(bundle: EvalBundle, normalize: bool = False) -> np.ndarray:
    """(K, K) confusion matrix, rows = true class, columns = predicted class; unlabelled clips skipped.

    ``normalize=True`` divides each row by its total (rows of classes without clips stay 0).
    """
    k = len(bundle.class_names)
    y = bundle.labels
    known = y >= 0
    counts = np.bincount(y[known] * k + bundle.predictions[known], minlength=k * k).reshape(k, k)
    if not normalize:
        return counts.astype(np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros((k, k), dtype=np.float64), where=totals > 0)


def flipped_clips(bundle_a: EvalBundle, bundle_b: EvalBundle, class_index: int) -> list[dict[str, Any]]:
    """Matched clips of ``class_index`` that A gets right and B gets wrong, B's most confident first.

    Each entry: ``clip_id``, ``path`` (A's; B's if A has none), ``row_a``, ``row_b``, ``pred_b``,
    ``pred_b_name``, ``conf_b`` (B's probability of its wrong prediction), ``prob_b_true`` (B's
    probability of the true class) and ``conf_a`` (A's probability of the true class).
    """
    al, pa, pb = _paired(bundle_a, bundle_b)
    c = int(class_index)
    if not 0 <= c < len(bundle_a.class_names):
        raise IndexError(f"class index {c} out of range for {len(bundle_a.class_names)} classes")
    names = list(bundle_a.class_names)
    hit = np.flatnonzero((al.labels == c) & (pa == c) & (pb != c))
    if hit.size == 0:
        return []
    prob_a = softmax(bundle_a.logits[al.rows_a[hit]])
    prob_b = softmax(bundle_b.logits[al.rows_b[hit]])
    out = []
    for n, i in enumerate(hit):
        ra, rb, p = int(al.rows_a[i]), int(al.rows_b[i]), int(pb[i])
        out.append({
            "clip_id": al.clip_ids[i],
            "path": bundle_a.paths[ra] or bundle_b.paths[rb],
            "row_a": ra,
            "row_b": rb,
            "pred_b": p,
            "pred_b_name": names[p],
            "conf_b": float(prob_b[n, p]),
            "prob_b_true": float(prob_b[n, c]),
            "conf_a": float(prob_a[n, c]),
        })
    out.sort(key=lambda r: (-r["conf_b"], r["clip_id"]))
    return out
