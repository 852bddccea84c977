"""One clip through one checkpoint: probabilities, top-5, pooled features and every operator's maps.

``run_clip`` touches no shared mutable state: it runs ``model.inspect`` (which returns everything it
computes) under ``torch.inference_mode()`` and hands back plain numpy arrays, so one cached model can
serve many browser sessions at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..multitask import TaskSpec

__all__ = ["ClipPrediction", "OperatorMaps", "TaskTop", "run_clip", "same_classes"]


@dataclass(frozen=True)
class OperatorMaps:
    """What one temporal operator at one site exposed for this clip (any operator: HF, GSM, TSM)."""

    op: str  # "hf", "gsm", "tsm"
    module: str  # the backbone module it sits at ("inception_3a", "inception_3a_1x1", "layer1.0.conv1")
    side: str  # "in" or "out" of that module
    maps: dict[str, np.ndarray]  # map name -> (T, H, W) float32 (e.g. HF "gate", GSM "gate_backward")
    meanings: dict[str, str]  # map name -> what it means (from the operator class)


@dataclass(frozen=True)
class TaskTop:
    """One task's top-k for a multi-task model (verb, noun or action)."""

    indices: list[int]  # verb / noun class indices; action ids (verb * num_nouns + noun)
    names: list[str]
    probs: list[float]  # softmax of the task's scores; action: p(verb) * p(noun), as the challenge ranks them


@dataclass(frozen=True)
class ClipPrediction:
    class_names: list[str]
    logits: np.ndarray  # (K,) float32
    probs: np.ndarray  # (K,) float32, softmax of logits
    top5_indices: list[int]
    top5_names: list[str]
    top5_probs: list[float]
    gates: dict[str, np.ndarray]  # block name -> G- (T, H, W) in [-1, 1]; G-_{T-1} = 0; {} without HF
    pooled_features: np.ndarray  # (D,)
    frame_features: np.ndarray  # (T', D): T per-frame vectors, 1 clip vector for ECO-Lite
    #: every operator's maps, "<op>.<module>" -> OperatorMaps, in network order (HF's are also in ``gates``)
    operator_maps: dict[str, OperatorMaps] = field(default_factory=dict)
    #: multi-task models (hfnet_core/multitask.py): "verb", "noun", "action" -> TaskTop; {} otherwise.
    #: For them ``top5_*`` repeat the action's top-5 and ``probs`` is not a distribution over one task.
    tasks: dict[str, TaskTop] = field(default_factory=dict)
    #: set by ``for_task``: the task this prediction is a view of, and the model output column of each of
    #: its classes (-1: none, the action view's unlisted pairs); None = one column per class
    task: str | None = None
    output_columns: np.ndarray | None = None
    #: set by ``for_task``: the model's whole output (``logits`` is then the task's scores)
    output_logits: np.ndarray | None = None

    @property
    def top1(self) -> str:
        return self.top5_names[0]

    def output_column(self, class_index: int) -> int:
        """The model output column that scores class ``class_index`` of ``class_names`` (what an
        attribution differentiates); -1 when no single column does."""
        if self.output_columns is None:
            return int(class_index)
        return int(self.output_columns[int(class_index)])

    def column_prob(self, spec: TaskSpec | None, column: int) -> float:
        """The probability of the class an output column scores: softmax within its task (verb, noun or
        action classifier) for a multi-task output, else over all classes."""
        if spec is None or self.output_logits is None:
            return float(self.probs[int(column)])
        v, n = spec.num_verbs, spec.num_nouns
        lo, hi = (0, v) if column < v else (v, v + n) if column < v + n else (v + n, spec.num_outputs)
        z = np.asarray(self.output_logits[lo:hi], np.float64)
        p = np.exp(z - z.max())
        return float(p[int(column) - lo] / p.sum())

    def for_task(self, spec: TaskSpec, task: str) -> "ClipPrediction":
        """A multi-task prediction as one task's prediction (the explorer's task view, ``task_view.py``):
        ``class_names`` / ``logits`` / ``probs`` / ``top5_*`` of the verbs, the nouns or the actions (listed
        pairs + ``UNLISTED``, scored log p(verb) + log p(noun)). The action's ``probs`` are p(verb) p(noun),
        not renormalised over the listed pairs, and its top-5 runs over every pair, as the challenge ranks
        them: ``top5_names`` name the pairs, ``top5_indices`` their class (``UNLISTED`` for any pair the
        action classifier does not list). ``tasks`` keeps all three; ``output_logits`` the whole output.
        Raises ``ValueError`` for an action view the model cannot have (``task_view.listed_actions``)."""
        from .task_view import action_view_scores, listed_actions, view_class_names

        if not self.tasks:
            return self
        raw = self.output_logits if self.output_logits is not None else self.logits  # a view of a view: the same
        parts = spec.split(np.asarray(raw, np.float64)[None])
        v, n = spec.num_verbs, spec.num_nouns
        top = self.tasks[task]
        if task in ("verb", "noun"):
            scores = parts[task][0]
            z = scores - scores.max()
            probs = np.exp(z) / np.exp(z).sum()
            names = list(spec.verb_names if task == "verb" else spec.noun_names)
            columns = np.arange(len(names)) + (0 if task == "verb" else v)
            indices = list(top.indices)
        else:
            listed = listed_actions(spec)
            if listed is None:
                raise ValueError(f"no action view: {v} verbs x {n} nouns and no action classifier")
            with_unlisted = len(listed) < v * n
            scores = action_view_scores(parts["verb"], parts["noun"], listed, with_unlisted)[0].astype(np.float64)
            probs = np.exp(scores)
            names = view_class_names(spec, "action")
            position = {int(a): i for i, a in enumerate(listed)}
            columns = np.full(len(names), -1, np.int64)
            if spec.actions:  # the action classifier's columns follow the verbs and nouns
                columns[:len(listed)] = v + n + np.arange(len(listed))
            indices = [position.get(int(a), len(names) - 1) for a in top.indices]
        return ClipPrediction(names, np.asarray(scores, np.float32), probs.astype(np.float32), indices,
                              list(top.names), list(top.probs), self.gates, self.pooled_features,
                              self.frame_features, self.operator_maps, self.tasks, task, columns,
                              np.asarray(raw, np.float32))


def run_clip(checkpoint: Any, x: torch.Tensor, k: int = 5) -> ClipPrediction:
    """Run ``checkpoint.model.inspect`` on one clip ``x`` of shape (1, T, 3, H, W) (or (T, 3, H, W))."""
    model = checkpoint.model
    if x.dim() == 4:
        x = x.unsqueeze(0)
    if x.dim() != 5 or x.shape[0] != 1:
        raise ValueError(f"run_clip takes one clip (1, T, 3, H, W), got {tuple(x.shape)}")
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.inspect(x.to(device))
        logits = out.logits[0].float()
        probs = torch.softmax(logits, dim=0)
        k = min(k, probs.numel())
        top = torch.topk(probs, k)
        gates = {name: g[0].float().cpu().numpy() for name, g in out.gates.items()}
        ops = {}
        for label, rec in out.temporal.items():
            meanings = dict(type(model.operator_at(rec.op, rec.site)).map_meanings)
            maps = {k: v[0].float().cpu().numpy() for k, v in rec.maps.items() if v.dim() == 4}
            ops[label] = OperatorMaps(rec.op, rec.site.module, rec.site.side, maps, meanings)
        pooled = out.pooled_features[0].float().cpu().numpy()
        frames = out.frame_features[0].float().cpu().numpy()
        logits_np, probs_np = logits.cpu().numpy(), probs.cpu().numpy()
    names = list(checkpoint.class_names)
    idx = [int(i) for i in top.indices.cpu()]
    spec = TaskSpec.from_model(getattr(checkpoint, "config", None) or model.config, names)
    tasks = task_tops(spec, logits_np, k) if spec is not None else {}
    if tasks:
        action = tasks["action"]
        return ClipPrediction(names, logits_np, probs_np, action.indices, action.names, action.probs, gates, pooled,
                              frames, ops, tasks)
    return ClipPrediction(
        class_names=names,
        logits=logits_np,
        probs=probs_np,
        top5_indices=idx,
        top5_names=[names[i] for i in idx],
        top5_probs=[float(p) for p in top.values.cpu()],
        gates=gates,
        pooled_features=pooled,
        frame_features=frames,
        operator_maps=ops,
    )


def same_classes(a: Any, b: Any) -> bool:
    """Whether two checkpoints (or predictions) share one class list, in order."""
    return list(a.class_names) == list(b.class_names)


def task_tops(spec: TaskSpec, logits: np.ndarray, k: int = 5) -> dict[str, TaskTop]:
    """Top-``k`` verbs, nouns and actions of one multi-task output (the challenge's action ranking)."""
    parts = spec.split(np.asarray(logits, np.float64))
    out: dict[str, TaskTop] = {}
    probs: dict[str, np.ndarray] = {}
    for task, names in (("verb", spec.verb_names), ("noun", spec.noun_names)):
        z = parts[task] - parts[task].max()
        p = np.exp(z) / np.exp(z).sum()
        probs[task] = p
        order = np.argsort(-p, kind="stable")[:k]
        out[task] = TaskTop([int(i) for i in order], [names[i] for i in order], [float(p[i]) for i in order])
    joint = (probs["verb"][:, None] * probs["noun"][None, :]).ravel()
    order = np.argsort(-joint, kind="stable")[:k]
    out["action"] = TaskTop([int(a) for a in order], [spec.action_name(int(a)) for a in order],
                            [float(joint[a]) for a in order])
    return out
