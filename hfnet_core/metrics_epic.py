"""EPIC-Kitchens-55 action recognition metrics, computed the way the challenge's scoring computes them.

(Facts from epic-kitchens-55-lib's ``scoring.py`` / ``metrics.py``, restated in docs/epic.md.)

* **Action scores** (``action_scores``): for each clip take its ``top_k`` (100) highest verb scores and
  ``top_k`` highest noun scores, apply a softmax over those scores only, form every product
  p(v) * p(n) and keep the ``top_k`` largest: the clip's ranked actions. An action outside that list is a
  miss at every rank. Because the truncated softmax only rescales by a per-clip constant, the ranking is
  that of the full softmax product; the top-1 action is (argmax verb, argmax noun).
* **Accuracy**: top-1 and top-5 over clips, for verbs, nouns and actions (action = the (verb, noun) pair;
  id ``verb * num_nouns + noun``).
* **Precision / recall**: per class of the top-1 predictions, scikit-learn's
  ``precision_recall_fscore_support(labels, top1, labels=classes, average=None)`` (a class never
  predicted has precision 0), averaged over ``classes`` = the *many-shot* classes that occur in the
  evaluated ground truth.
* **Many-shot** (``many_shot``): a verb or noun class with more than 100 training instances; an action whose
  verb and noun are both many-shot and which occurs at least once in training.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: The challenge's number of ranked verbs / nouns / actions per clip.
TOP_K = 100
#: A class is many-shot with more than this many training instances.
MANY_SHOT_THRESHOLD = 100
TASKS = ("verb", "noun", "action")


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def action_scores(verb_scores: np.ndarray, noun_scores: np.ndarray, top_k: int = TOP_K,
                  action_priors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each clip's ranked actions: (verbs (N, k), nouns (N, k), scores (N, k)), best first.

    ``action_priors`` (V, Nn), if given, multiplies p(v) * p(n) (the challenge's optional prior).
    """
    verb_scores = np.asarray(verb_scores, np.float64)
    noun_scores = np.asarray(noun_scores, np.float64)
    n = len(verb_scores)
    kv, kn = min(top_k, verb_scores.shape[1]), min(top_k, noun_scores.shape[1])
    top_v = np.argsort(-verb_scores, axis=1, kind="stable")[:, :kv]
    top_n = np.argsort(-noun_scores, axis=1, kind="stable")[:, :kn]
    pv = _softmax(np.take_along_axis(verb_scores, top_v, 1))
    pn = _softmax(np.take_along_axis(noun_scores, top_n, 1))
    joint = pv[:, :, None] * pn[:, None, :]  # (N, kv, kn)
    if action_priors is not None:
        joint = joint * np.asarray(action_priors)[top_v[:, :, None], top_n[:, None, :]]
    flat = joint.reshape(n, -1)
    k = min(top_k, flat.shape[1])
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    return (np.take_along_axis(top_v, order // kn, 1), np.take_along_axis(top_n, order % kn, 1),
            np.take_along_axis(flat, order, 1))


def topk_accuracy(ranked: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of clips whose label is among the first ``k`` entries of its ranking."""
    if not len(labels):
        return float("nan")
    return float((ranked[:, :k] == np.asarray(labels)[:, None]).any(axis=1).mean())


def many_shot(train_verbs: Sequence[int], train_nouns: Sequence[int], num_nouns: int,
              threshold: int = MANY_SHOT_THRESHOLD) -> dict[str, np.ndarray]:
    """Many-shot verb, noun and action ids from the training labels (module docstring)."""
    tv, tn = np.asarray(train_verbs, np.int64), np.asarray(train_nouns, np.int64)
    count = lambda x: dict(zip(*(a.tolist() for a in np.unique(x, return_counts=True))))  # noqa: E731
    return many_shot_from_counts({"verb": count(tv), "noun": count(tn), "action": count(tv * num_nouns + tn)},
                                 num_nouns, threshold)


def many_shot_from_counts(train_counts: Mapping[str, Mapping[int, int]], num_nouns: int,
                          threshold: int = MANY_SHOT_THRESHOLD) -> dict[str, np.ndarray]:
    """``many_shot`` from training counts per verb, noun and action id (``TaskSpec.train_counts``)."""
    def above(task: str) -> np.ndarray:
        return np.array(sorted(k for k, c in train_counts[task].items() if c > threshold), np.int64)

    mv, mn = above("verb"), above("noun")
    seen = np.array(sorted(k for k, c in train_counts["action"].items() if c > 0), np.int64)
    ma = seen[np.isin(seen // num_nouns, mv) & np.isin(seen % num_nouns, mn)]
    return {"verb": mv, "noun": mn, "action": ma}


def precision_recall(labels: np.ndarray, top1: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    """Macro precision and recall of ``top1`` over ``classes`` (scikit-learn, zero for undefined ratios)."""
    if not len(classes):
        return float("nan"), float("nan")
    from sklearn.metrics import precision_recall_fscore_support

    p, r, _, _ = precision_recall_fscore_support(labels, top1, labels=classes, average=None, zero_division=0)
    return float(np.mean(p)), float(np.mean(r))


def epic_metrics(verb_scores: np.ndarray, noun_scores: np.ndarray, verb_labels: np.ndarray,
                 noun_labels: np.ndarray, many_shot_classes: Mapping[str, np.ndarray] | None = None,
                 top_k: int = TOP_K) -> dict[str, Any]:
    """Top-1/top-5 accuracy and many-shot macro precision/recall for verb, noun and action.

    Clips with an unknown label (< 0) are left out. ``many_shot_classes`` ({"verb", "noun", "action"} ->
    ids, from ``many_shot``) restricts precision and recall as the challenge does; without it every class
    present in the ground truth counts. Returns ``{"num_clips", "top1": {...}, "top5": {...},
    "precision": {...}, "recall": {...}, "many_shot_classes_used": {...}}`` with per-task values.
    """
    verb_scores, noun_scores = np.asarray(verb_scores), np.asarray(noun_scores)
    v, n = np.asarray(verb_labels, np.int64), np.asarray(noun_labels, np.int64)
    known = (v >= 0) & (n >= 0)
    verb_scores, noun_scores, v, n = verb_scores[known], noun_scores[known], v[known], n[known]
    nn_ = noun_scores.shape[1]
    a = v * nn_ + n
    ranked = {
        "verb": np.argsort(-verb_scores, axis=1, kind="stable")[:, :top_k],
        "noun": np.argsort(-noun_scores, axis=1, kind="stable")[:, :top_k],
    }
    if len(v):
        av, an, _ = action_scores(verb_scores, noun_scores, top_k)
        ranked["action"] = av * nn_ + an
    else:
        ranked["action"] = np.zeros((0, 1), np.int64)
    labels = {"verb": v, "noun": n, "action": a}
    out: dict[str, Any] = {"num_clips": int(len(v)), "top1": {}, "top5": {}, "precision": {}, "recall": {},
                           "many_shot_classes_used": {}}
    for task in TASKS:
        out["top1"][task] = topk_accuracy(ranked[task], labels[task], 1)
        out["top5"][task] = topk_accuracy(ranked[task], labels[task], 5)
        present = np.unique(labels[task])
        classes = present if many_shot_classes is None else np.intersect1d(np.asarray(many_shot_classes[task]), present)
        top1 = ranked[task][:, 0] if len(v) else np.zeros(0, np.int64)
        out["precision"][task], out["recall"][task] = precision_recall(labels[task], top1, classes)
        out["many_shot_classes_used"][task] = int(len(classes))
    return out


# --- Table III ------------------------------------------------------------------------------------

#: The paper's Table III (EPIC-Kitchens-55 test sets; the baselines as reported by the dataset's authors):
#: setting -> method -> (top-1 V/N/A, top-5 V/N/A, precision V/N/A, recall V/N/A), in %.
PAPER_TABLE_THREE: dict[str, dict[str, tuple[tuple[float, float, float], ...]]] = {
    "S1": {
        "2SCNN (FUSION)": ((42.16, 29.14, 13.23), (80.58, 53.70, 30.36), (29.39, 30.73, 5.35), (14.83, 21.10, 4.46)),
        "TSN (RGB)": ((45.68, 36.80, 19.86), (85.56, 64.19, 41.89), (61.64, 34.32, 9.96), (23.81, 31.62, 8.81)),
        "TSN (FLOW)": ((42.75, 17.40, 9.02), (79.52, 39.43, 21.92), (21.42, 13.75, 2.33), (15.58, 9.51, 2.06)),
        "TSN (FUSION)": ((48.23, 36.71, 20.54), (84.09, 62.32, 39.79), (47.26, 35.42, 10.46), (22.33, 30.53, 8.83)),
        "HF-TSN (RGB)": ((57.57, 39.9, 28.09), (87.83, 65.37, 48.63), (49.12, 35.83, 11.38), (39.37, 37.04, 13.84)),
    },
    "S2": {
        "2SCNN (FUSION)": ((36.16, 18.03, 7.31), (71.97, 38.41, 19.49), (18.11, 15.31, 2.86), (10.52, 12.55, 2.69)),
        "TSN (RGB)": ((34.89, 21.82, 10.11), (74.56, 45.34, 25.33), (19.48, 14.67, 4.77), (11.22, 17.24, 5.67)),
        "TSN (FLOW)": ((40.08, 14.51, 6.73), (73.40, 33.77, 18.64), (19.98, 9.48, 2.08), (13.81, 8.58, 2.27)),
        "TSN (FUSION)": ((39.4, 22.70, 10.89), (74.29, 45.72, 25.26), (22.54, 15.33, 5.60), (13.06, 17.52, 5.81)),
        "HF-TSN (RGB)": ((42.40, 25.23, 16.93), (75.76, 48.96, 33.32), (24.25, 20.48, 6.29), (15.77, 21.96, 10.05)),
    },
}
_COLUMNS = (("top1", "Top-1"), ("top5", "Top-5"), ("precision", "Precision"), ("recall", "Recall"))


def table_three_row(metrics: Mapping[str, Any]) -> list[float]:
    """The 12 numbers of a Table III row (top-1, top-5, precision, recall; each V/N/A), in %; an undefined
    value (``null`` in a metrics JSON) is NaN."""
    return [100.0 * float("nan" if metrics[key][task] is None else metrics[key][task])
            for key, _ in _COLUMNS for task in TASKS]


def format_table_three(rows: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Markdown in Table III's layout: ``rows`` = setting ("S1", "S2", ...) -> method -> ``epic_metrics``."""
    head = "| | Method | " + " | ".join(f"{label} {t[0].upper()}" for _, label in _COLUMNS for t in TASKS) + " |"
    lines = [head, "|---|---|" + "---:|" * 12]
    for setting, methods in rows.items():
        for i, (method, m) in enumerate(methods.items()):
            cells = " | ".join("-" if np.isnan(x) else f"{x:.2f}" for x in table_three_row(m))
            lines.append(f"| {setting if i == 0 else ''} | {method} | {cells} |")
    return "\n".join(lines)
