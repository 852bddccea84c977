"""One task of a multi-task eval bundle as an ordinary single-task bundle: verb, noun or action.

Why: every bundle-reading view of the explorer (Feature space, Class comparison, model cards) works on
one label per clip and one score per class. A multi-task bundle (``hfnet_core/multitask.py``) holds
action ids as labels and ``[verb | noun | action classifier]`` as logits, so it is cut into the view of
one task here, once, and every page keeps working unchanged:

* **verb** / **noun** - labels = the clip's verb (noun) class, logits = the verb (noun) scores, class names
  = the verb (noun) names. At SynthSomething the verbs are the 16 motions, spelled as the single-task
  classes, so a multi-task model's verb view compares clip by clip with a plain TSN.
* **action** - one class per listed action (the action classifier's classes: the pairs seen in training;
  a model without one lists every pair, up to ``MAX_ACTION_CLASSES``, and has no action view beyond),
  scored as the challenge ranks actions: ``log p(verb) + log p(noun)`` (``metrics_epic.py``). When the
  listed actions do not cover every (verb, noun) pair, one more class, ``UNLISTED``, scores the best
  unlisted pair, so the view's top-1 is the challenge's top-1 exactly (a clip whose best pair is unlisted
  predicts ``UNLISTED``). A clip whose true pair is unlisted has no class in this view: label -1
  (unknown), as the explorer treats any clip without a label. Softmax over the view's columns renormalises
  p(verb) p(noun) over the listed pairs (+ the best unlisted one): read it as a ranking confidence.

The view shares the bundle's features and clip lists (no copy) and is read-only like the shared bundle.
"""

from __future__ import annotations

import numpy as np

from hfnet_core.errors import BundleError, HfnetError
from hfnet_core.eval_bundle import EvalBundle
from hfnet_core.multitask import TASKS, TaskSpec

__all__ = ["MAX_ACTION_CLASSES", "TASKS", "UNLISTED", "action_view_scores", "bundle_task_spec", "grouping_labels",
           "has_action_view", "listed_actions", "task_view", "view_class_names"]

#: The action view's extra class: the best-scoring (verb, noun) pair outside the listed actions.
UNLISTED = "(an unlisted verb-noun pair)"

#: Clips per chunk when scoring every (verb, noun) pair: 256 x 44,000 pairs (EPIC-55) x 4 B = 45 MB.
_CHUNK = 256

#: The most classes an action view may have. A model without an action classifier would otherwise get
#: one class per verb x noun pair: 44,000 at EPIC-55, a 44,000² confusion matrix in Class comparison.
MAX_ACTION_CLASSES = 5000


def listed_actions(spec: TaskSpec) -> np.ndarray | None:
    """The action ids the action view has a class for: the action classifier's, else every pair when
    there are at most ``MAX_ACTION_CLASSES``; None when the view would be larger (no action view)."""
    if spec.actions:
        return np.asarray(spec.actions, np.int64)
    pairs = spec.num_verbs * spec.num_nouns
    return np.arange(pairs, dtype=np.int64) if pairs <= MAX_ACTION_CLASSES else None


def has_action_view(spec: TaskSpec) -> bool:
    return listed_actions(spec) is not None


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def action_view_scores(verb_scores: np.ndarray, noun_scores: np.ndarray, actions: np.ndarray,
                       with_unlisted: bool) -> np.ndarray:
    """(M, A [+1]) float32: ``log p(v) + log p(n)`` of each listed action id, and, with ``with_unlisted``,
    the best such score among the pairs not listed."""
    m, nv = verb_scores.shape
    nn_ = noun_scores.shape[1]
    actions = np.asarray(actions, np.int64)
    out = np.empty((m, len(actions) + int(with_unlisted)), np.float32)
    unlisted = np.ones(nv * nn_, bool)
    unlisted[actions] = False
    for lo in range(0, m, _CHUNK):
        hi = min(m, lo + _CHUNK)
        lv, ln = _log_softmax(verb_scores[lo:hi]), _log_softmax(noun_scores[lo:hi])
        out[lo:hi, :len(actions)] = lv[:, actions // nn_] + ln[:, actions % nn_]
        if with_unlisted:  # the best pair outside the list: listed pairs masked in place (no copy)
            joint = (lv.astype(np.float32)[:, :, None] + ln.astype(np.float32)[:, None, :]).reshape(hi - lo, -1)
            joint[:, ~unlisted] = -np.inf
            out[lo:hi, -1] = joint.max(axis=1)
    return out


def bundle_task_spec(bundle: EvalBundle) -> TaskSpec | None:
    """The multi-task spec a bundle's ``tasks`` metadata describes (None for a single-task bundle);
    ``BundleError`` when that metadata is damaged or does not fit the bundle's logits."""
    try:
        spec = TaskSpec.from_bundle(bundle)
        if spec is not None:
            spec.split(bundle.logits)
        return spec
    except (KeyError, TypeError, ValueError, HfnetError) as e:
        raise BundleError(f"its multi-task metadata ('tasks') does not describe its logits ({e}).") from e


def grouping_labels(bundle: EvalBundle) -> tuple[np.ndarray, int, str]:
    """(labels, number of classes, what they are) that a bundle's projections group clips by (class
    centroids, silhouette): the classes of a single-task bundle, the verbs of a multi-task one (its labels
    are action ids, up to 44,000 at EPIC-55). Labels outside the classes count as unknown (-1)."""
    try:
        spec = bundle_task_spec(bundle)
    except BundleError:
        spec = None
    y = np.asarray(bundle.labels, np.int64)
    if spec is not None:
        k, what = spec.num_verbs, "verb"
        y = np.where((y >= 0) & (y < spec.num_verbs * spec.num_nouns), y // spec.num_nouns, -1)
    else:
        k, what = len(bundle.class_names), "class"
    return np.where((y >= 0) & (y < k), y, -1), k, what


def view_class_names(spec: TaskSpec, task: str) -> list[str]:
    """The class names of ``task``'s view of a model or bundle with this spec (what ``task_view`` gives)."""
    if task == "verb":
        return list(spec.verb_names)
    if task == "noun":
        return list(spec.noun_names)
    listed = listed_actions(spec)
    if listed is None:
        raise ValueError(f"{spec.num_verbs} verbs x {spec.num_nouns} nouns and no action classifier: an action "
                         f"view would have over {MAX_ACTION_CLASSES} classes")
    names = [spec.action_name(int(a)) for a in listed]
    return names + ([UNLISTED] if len(names) < spec.num_verbs * spec.num_nouns else [])


def task_view(bundle: EvalBundle, task: str) -> EvalBundle:
    """The ``task`` ("verb", "noun", "action") view of a multi-task bundle; a single-task bundle as it is.

    Raises ``BundleError`` when the bundle's ``tasks`` metadata does not fit its logits. The result is
    read-only when ``bundle`` is (the app's shared bundles); its metadata says ``task``, ``task_classes``
    (how many classes the view has) and, for the action view, how many clips have an unlisted true pair
    (``unlisted_true``).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    spec = bundle_task_spec(bundle)
    if spec is None:
        return bundle
    parts = spec.split(bundle.logits)
    raw = np.asarray(bundle.labels, np.int64)
    raw = np.where((raw >= 0) & (raw < spec.num_verbs * spec.num_nouns), raw, -1)  # a damaged label: unknown
    verbs, nouns = spec.decode(raw)
    meta = dict(bundle.metadata)
    if task in ("verb", "noun"):
        labels = verbs if task == "verb" else nouns
        logits = np.ascontiguousarray(parts[task], dtype=np.float32)
        names = list(spec.verb_names if task == "verb" else spec.noun_names)
    else:
        listed = listed_actions(spec)
        if listed is None:
            raise BundleError(f"its model has {spec.num_verbs} verbs x {spec.num_nouns} nouns and no action "
                              f"classifier: an action view would have over {MAX_ACTION_CLASSES} classes. Look "
                              "at its verbs or nouns; the challenge's action metrics are in `hfnet eval`'s "
                              "report.")
        with_unlisted = len(listed) < spec.num_verbs * spec.num_nouns
        logits = action_view_scores(parts["verb"], parts["noun"], listed, with_unlisted)
        names = view_class_names(spec, "action")
        column = np.full(spec.num_verbs * spec.num_nouns, -1, np.int64)
        column[listed] = np.arange(len(listed))
        labels = np.where(raw >= 0, column[raw.clip(0)], -1)
        meta["unlisted_true"] = int(((raw >= 0) & (labels < 0)).sum())
    meta.update(task=task, task_classes=len(names))
    view = EvalBundle(bundle.clip_ids, bundle.paths, np.asarray(labels, np.int64), logits, bundle.features,
                      names, meta)
    if bundle.read_only:
        for arr in (view.labels, view.logits):
            arr.setflags(write=False)
    return view
