"""Model A vs model B on the same clips: the paper's Fig. 3a, per-class accuracy, confusion, flipped clips.

Two eval bundles are compared clip by clip, matched by ``clip_id`` (their intersection, in A's order), so
bundles made on different clip sets still compare fairly. Both must use the same class list in the same
order (``check_same_classes``); a clip whose label differs between the bundles is left out of every
count (``Alignment.label_conflicts`` says how many).

Fig. 3a of the paper ranks classes by the number of *corrected samples*: clips of the class that HF-TSN
(A) gets right and TSN (B) gets wrong. Its y labels read "true label (HF-TSN) / predicted label (TSN)",
the TSN label being the class TSN most often predicts for those corrected clips (``most_improved``).

At the paper's scale (174 classes, 25k clips) a 174 x 174 heatmap cannot be read whole, so the pages
get: ``most_improved`` with a class search, ``fixes_breaks`` counted over *all* matched clips (a
class where A fixes nothing still contributes its breaks), ``confused_pairs`` / ``compare_confused_pairs``
tables, and ``confusion_view`` - a confusion matrix reordered by hierarchical clustering of its rows
(confused classes end up adjacent) and optionally cut down to chosen classes (plus an "other" column
so each row still sums to its class total). ``same_model_warning`` says when A and B are one checkpoint.

Nothing here imports streamlit; everything is numpy (and scipy's clustering) over ``EvalBundle`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from hfnet_core.eval_bundle import EvalBundle

__all__ = [
    "Alignment",
    "ClassListMismatch",
    "ConfusionView",
    "FixesBreaks",
    "align",
    "check_same_classes",
    "cluster_order",
    "compare_confused_pairs",
    "confused_pairs",
    "confusion",
    "confusion_view",
    "find_classes",
    "fixes_breaks",
    "flipped_clips",
    "improved_clip_ids",
    "most_improved",
    "per_class_accuracy",
    "same_model_warning",
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


def top_probability(logits: np.ndarray) -> np.ndarray:
    """Each row's largest softmax probability, 1 / sum(exp(z - max z)), without building the probability
    matrix (float32: a map's 25k x 174 logits in ~20 ms instead of ~90 ms through ``softmax``)."""
    z = np.asarray(logits, dtype=np.float32)
    if z.shape[-1] == 0:
        return np.zeros(z.shape[:-1], dtype=np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (1.0 / e.sum(axis=-1)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _paired(bundle_a: EvalBundle, bundle_b: EvalBundle) -> tuple[Alignment, np.ndarray, np.ndarray]:
    check_same_classes(bundle_a, bundle_b)
    al = align(bundle_a, bundle_b)
    return al, bundle_a.predictions[al.rows_a], bundle_b.predictions[al.rows_b]


def find_classes(class_names: Sequence[str], query: str | None) -> list[int]:
    """Indices of the classes whose name contains every word of ``query`` (case-insensitive, any order);
    all classes for an empty query. "left right" finds "Moving something from left to right"."""
    words = (query or "").casefold().split()
    return [i for i, name in enumerate(class_names) if all(w in name.casefold() for w in words)]


def most_improved(bundle_a: EvalBundle, bundle_b: EvalBundle, top_k: int | None = 10,
                  search: str | None = None, classes: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Classes with the most clips A gets right and B gets wrong (the paper's Fig. 3a), best first.

    ``search`` (see ``find_classes``) and ``classes`` (indices) restrict the ranking to those classes
    *before* the top ``top_k`` (None: all) are taken, so "the top 10 among classes about folding" works.

    Each entry: ``class_index``, ``class_name``, ``n_improved`` (A right, B wrong), ``n_worsened``
    (B right, A wrong), ``n_clips`` (matched clips of the class), ``acc_a``, ``acc_b`` (on those clips),
    ``b_prediction`` / ``b_prediction_name`` / ``b_prediction_count`` (what B most often predicts for the
    improved clips; ties go to the lower class index) and ``label`` = "true (A) / predicted (B)".
    Ranked by ``n_improved``, then by the net gain ``n_improved - n_worsened``, then class index; classes
    with no improved clip are left out, so fewer than ``top_k`` may come back (use ``fixes_breaks`` for
    totals: it counts every class).
    """
    al, pa, pb = _paired(bundle_a, bundle_b)
    names = list(bundle_a.class_names)
    y = al.labels
    known = y >= 0
    a_ok, b_ok = (pa == y) & known, (pb == y) & known
    improved, worsened = a_ok & ~b_ok, b_ok & ~a_ok
    k = len(names)
    allowed = set(range(k))
    if search:
        allowed &= set(find_classes(names, search))
    if classes is not None:
        allowed &= {int(c) for c in classes}
    rows = []
    for c in np.unique(y[improved]):
        c = int(c)
        if c not in allowed:
            continue
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
    return rows if top_k is None else rows[: max(0, int(top_k))]


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


# --- totals over all clips ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FixesBreaks:
    """Clip-level outcome counts of A against B over every matched, labelled clip.

    ``fixed`` (A right, B wrong), ``broken`` (B right, A wrong), ``both_right``, ``both_wrong`` and
    ``n`` (their sum); ``fixed_per_class`` / ``broken_per_class`` (K,) by true class.
    """

    fixed: int
    broken: int
    both_right: int
    both_wrong: int
    n: int
    fixed_per_class: np.ndarray
    broken_per_class: np.ndarray

    @property
    def net(self) -> int:
        """Fixes minus breaks: how many more clips A gets right than B."""
        return self.fixed - self.broken


def fixes_breaks(bundle_a: EvalBundle, bundle_b: EvalBundle) -> FixesBreaks:
    """What A fixes and breaks relative to B, counted over *all* matched clips with a label.

    (Summing ``n_worsened`` over ``most_improved`` rows undercounts breaks whenever A is the weaker
    model: classes where A fixes nothing are not in that list.)
    """
    al, pa, pb = _paired(bundle_a, bundle_b)
    y = al.labels
    known = y >= 0
    a_ok, b_ok = (pa == y) & known, (pb == y) & known
    fixed, broken = a_ok & ~b_ok, b_ok & ~a_ok
    k = len(bundle_a.class_names)
    return FixesBreaks(
        fixed=int(fixed.sum()), broken=int(broken.sum()), both_right=int((a_ok & b_ok).sum()),
        both_wrong=int((known & ~a_ok & ~b_ok).sum()), n=int(known.sum()),
        fixed_per_class=np.bincount(y[fixed], minlength=k).astype(np.int64),
        broken_per_class=np.bincount(y[broken], minlength=k).astype(np.int64),
    )


def same_model_warning(bundle_a: EvalBundle, bundle_b: EvalBundle, name_a: str = "A",
                       name_b: str = "B") -> str | None:
    """A sentence when A and B are evidently the same model (same checkpoint sha256, or identical
    predictions on every matched clip), else None. Comparing a model with itself shows no differences;
    the page should say why instead of drawing empty charts."""
    sha_a = bundle_a.metadata.get("checkpoint_sha256")
    sha_b = bundle_b.metadata.get("checkpoint_sha256")
    if sha_a and sha_a == sha_b:
        return (f"{name_a} and {name_b} are the same checkpoint (sha256 {str(sha_a)[:12]}…): every clip is "
                "predicted identically, so there is nothing to compare. Choose two different models.")
    al = align(bundle_a, bundle_b)
    if al.n_matched and np.array_equal(bundle_a.logits[al.rows_a], bundle_b.logits[al.rows_b]):
        return (f"{name_a} and {name_b} give identical logits on all {al.n_matched} shared clips - they are "
                "probably the same model under two names. Choose two different models.")
    return None


# --- confusion at 174 classes -------------------------------------------------------------------------

def confused_pairs(bundle: EvalBundle, top_n: int | None = 20, classes: Sequence[int] | None = None,
                   min_count: int = 1) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) mistakes, most first: ``true`` / ``true_name``, ``predicted``
    / ``predicted_name``, ``count``, ``share`` (of the true class's labelled clips) and ``support``.

    ``classes`` keeps pairs whose true *or* predicted class is among them. Ties go to the lower indices.
    """
    cm = confusion(bundle)
    names = list(bundle.class_names)
    support = cm.sum(axis=1)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    if classes is not None:
        keep = np.zeros(len(names), bool)
        keep[[int(c) for c in classes]] = True
        off = np.where(keep[:, None] | keep[None, :], off, 0)
    t, p = np.nonzero(off >= max(1, int(min_count)))
    order = np.lexsort((p, t, -off[t, p]))
    if top_n is not None:
        order = order[: max(0, int(top_n))]
    return [{"true": int(t[i]), "true_name": names[t[i]], "predicted": int(p[i]), "predicted_name": names[p[i]],
             "count": int(off[t[i], p[i]]), "share": float(off[t[i], p[i]] / support[t[i]]),
             "support": int(support[t[i]])} for i in order]


def compare_confused_pairs(bundle_a: EvalBundle, bundle_b: EvalBundle, top_n: int | None = 20,
                           classes: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Confusions of A and B side by side, on the matched clips: every (true, predicted) pair among the
    ``top_n`` of either model, with ``count_a``, ``count_b`` and ``change`` (= count_a - count_b;
    negative: A confuses the pair less). Sorted by the larger count, then by the change."""
    check_same_classes(bundle_a, bundle_b)
    al = align(bundle_a, bundle_b)
    sa, sb = take(bundle_a, al.rows_a), take(bundle_b, al.rows_b)
    sa.labels = sb.labels = al.labels
    ca, cb = confusion(sa), confusion(sb)
    pairs = {(r["true"], r["predicted"]) for r in confused_pairs(sa, top_n, classes)}
    pairs |= {(r["true"], r["predicted"]) for r in confused_pairs(sb, top_n, classes)}
    names = list(bundle_a.class_names)
    support = ca.sum(axis=1)
    rows = [{"true": t, "true_name": names[t], "predicted": p, "predicted_name": names[p],
             "count_a": int(ca[t, p]), "count_b": int(cb[t, p]), "change": int(ca[t, p] - cb[t, p]),
             "support": int(support[t])} for t, p in pairs]
    rows.sort(key=lambda r: (-max(r["count_a"], r["count_b"]), r["change"], r["true"], r["predicted"]))
    return rows


def cluster_order(matrix: np.ndarray) -> np.ndarray:
    """An order of the classes that puts mutually confused classes next to each other.

    Rows of the row-normalised confusion matrix (symmetrised: A->B and B->A count alike, the diagonal
    dropped) are clustered by average linkage on cosine distance, leaves in optimal order (scipy).
    Classes no clip confuses with anything sit at the end in index order. Deterministic.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import pdist

    cm = np.asarray(matrix, dtype=np.float64)
    k = cm.shape[0]
    totals = cm.sum(axis=1, keepdims=True)
    rates = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    np.fill_diagonal(rates, 0.0)
    sym = rates + rates.T
    active = np.flatnonzero(sym.sum(axis=1) > 0)
    if len(active) < 3:
        return np.concatenate([active, np.setdiff1d(np.arange(k), active)]).astype(np.int64)
    feats = sym[np.ix_(active, active)]
    feats = feats + np.eye(len(active)) * feats.max()  # a class is closest to itself
    dist = np.nan_to_num(pdist(feats, metric="cosine"), nan=1.0)
    tree = optimal_leaf_ordering(linkage(dist, method="average"), dist)
    order = active[leaves_list(tree)]
    return np.concatenate([order, np.setdiff1d(np.arange(k), active)]).astype(np.int64)


@dataclass(frozen=True)
class ConfusionView:
    """A confusion matrix ready to draw: ``matrix`` (R, C), its row classes ``rows`` and column classes
    ``cols`` (indices; -1 = the "other" column), their ``row_labels`` / ``col_labels``, and whether the
    values are row shares (``normalized``)."""

    matrix: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    row_labels: list[str]
    col_labels: list[str]
    normalized: bool


def confusion_view(bundle: EvalBundle, normalize: bool = True, order: str | Sequence[int] = "cluster",
                   classes: Sequence[int] | None = None, other_column: bool = True) -> ConfusionView:
    """The bundle's confusion matrix reordered and, optionally, cut to ``classes``.

    ``order``: "cluster" (``cluster_order``), "index", "accuracy" (worst recognised first) or an explicit
    sequence of class indices (e.g. A's cluster order, to draw B's matrix the same way). With
    ``classes``, rows and columns are those classes (in that order's sequence) and, if
    ``other_column``, a last "other" column holds predictions outside them, so a row still sums to its
    class total (or to 1 when normalised).
    """
    cm = confusion(bundle).astype(np.float64)
    k = cm.shape[0]
    if isinstance(order, str):
        if order == "cluster":
            seq = cluster_order(cm)
        elif order == "index":
            seq = np.arange(k)
        elif order == "accuracy":
            acc = np.nan_to_num(per_class_accuracy(bundle), nan=2.0)
            seq = np.argsort(acc, kind="stable")
        else:
            raise ValueError(f"unknown order {order!r}: use 'cluster', 'index', 'accuracy' or class indices")
    else:
        seq = np.asarray([int(c) for c in order], dtype=np.int64)
    if classes is not None:
        wanted = {int(c) for c in classes}
        seq = np.asarray([c for c in seq if c in wanted] + sorted(wanted - set(int(c) for c in seq)), np.int64)
    names = list(bundle.class_names)
    sub = cm[np.ix_(seq, seq)]
    cols = seq
    if classes is not None and other_column:
        rest = cm[seq].sum(axis=1) - sub.sum(axis=1)
        sub = np.column_stack([sub, rest])
        cols = np.concatenate([seq, [-1]])
    if normalize:
        totals = cm[seq].sum(axis=1, keepdims=True)
        sub = np.divide(sub, totals, out=np.zeros_like(sub), where=totals > 0)
    return ConfusionView(sub, seq, cols, [names[c] for c in seq],
                         [names[c] if c >= 0 else "other" for c in cols], bool(normalize))
