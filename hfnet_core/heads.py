"""Consensus heads: how per-frame features become one clip prediction.

* ``TSNHead``: dropout, a linear classifier per frame, then the average over frames (TSN's average
  consensus). Because averaging and the classifier are linear, TSN is blind to frame order.
* ``TRNHead``: TRN's multi-scale temporal relation (Zhou et al., ECCV 2018), with TRN-pytorch's layout and
  arithmetic: for every scale k = T .. 2 an MLP over ordered k-tuples of frames; the largest scale uses
  its single tuple (all frames), each smaller scale the *sum* over ``subsample`` (3) tuples, and the
  scales are summed. Order-aware.

  TRN-pytorch draws those tuples at random in training *and in evaluation*, so its scores vary from run
  to run. hfnet draws at random in training and, in evaluation, computes the expectation of that draw:
  ``subsample`` x the mean over the scale's tuples - deterministic, and equal on average to what the
  original computes. A scale with more than ``max_eval_relations`` tuples (C(16, 8) = 12,870 at 16
  frames) averages a fixed, evenly spaced subset of them in lexicographic order instead of all.
  Tuples are never listed eagerly: they are computed from their lexicographic rank, so a head for many
  frames costs nothing to build.
* ``identity``: ECO's consensus - the backbone already fused the frames into one clip feature
  (``Backbone.output_frames(T) == 1``); dropout and ``new_fc`` on that one vector (= ``TSNHead`` over a
  single "frame"). Refused for backbones that return one feature per frame.
* ``GRUHead`` (``gru``): a GRU over the T frame features in order; its last hidden state goes through dropout
  to the classifier (the paper's Sec. III-C lists a GRU among the consensus functions HF combines with,
  without details: hidden size 512 by default, one layer). Order-aware.
* ``MultiTaskTSNHead`` (``multitask``): TSN's average consensus with one classifier per task - verb, noun
  and, optionally, action - for EPIC-Kitchens; the action scores bias the verb and noun scores
  (docs/epic.md has the formula and the paper's sentence it implements).
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .errors import ConfigError

#: TRN-pytorch's ``subsample_num``: tuples drawn per scale (except the largest).
TRN_SUBSAMPLE = 3
#: Evaluation averages at most this many tuples per scale (exact expectation up to 8 frames).
TRN_MAX_EVAL_RELATIONS = 128
#: A TRN head has one MLP per scale (T - 1 of them, the k-th taking k x img_feature_dim inputs): beyond
#: this many frames it grows quadratically for nothing (TRN-pytorch's models use 3 to 8).
TRN_MAX_SEGMENTS = 32


class TSNHead(nn.Module):
    """Average consensus. Parameter names (``new_fc``) follow TSN-pytorch so its checkpoints map 1:1."""

    needs_fixed_segments = False

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.new_fc = nn.Linear(in_features, num_classes)

    def forward(self, frame_features: Tensor) -> Tensor:
        """(N, T, D) -> logits (N, num_classes)."""
        return self.new_fc(self.dropout(frame_features)).mean(dim=1)


def combination_by_rank(n: int, k: int, rank: int) -> tuple[int, ...]:
    """The ``rank``-th k-subset of range(n) in lexicographic order (as ``itertools.combinations`` lists them)."""
    out = []
    start = 0
    for remaining in range(k, 0, -1):
        for v in range(start, n):
            count = math.comb(n - v - 1, remaining - 1)
            if rank < count:
                out.append(v)
                start = v + 1
                break
            rank -= count
    return tuple(out)


class TRNHead(nn.Module):
    """Multi-scale temporal relation head with TRN-pytorch's parameter names.

    Keys: ``new_fc`` (D -> img_feature_dim, after dropout) and ``fc_fusion_scales.{i}.{1,3}`` (index 0 =
    the largest scale, T frames): ReLU, Linear(k * img_feature_dim, bottleneck), ReLU, Linear(bottleneck, K).
    """

    needs_fixed_segments = True

    def __init__(self, in_features: int, num_classes: int, num_segments: int, dropout: float = 0.5,
                 img_feature_dim: int = 256, bottleneck: int = 256, subsample: int = TRN_SUBSAMPLE,
                 max_eval_relations: int = TRN_MAX_EVAL_RELATIONS) -> None:
        super().__init__()
        if not 2 <= num_segments <= TRN_MAX_SEGMENTS:
            raise ConfigError(f"a TRN head needs 2 to {TRN_MAX_SEGMENTS} frames per clip, got {num_segments}")
        self.num_segments = num_segments
        self.subsample = subsample
        self.dropout = nn.Dropout(dropout)
        self.new_fc = nn.Linear(in_features, img_feature_dim)
        self.scales = list(range(num_segments, 1, -1))
        self.counts = [math.comb(num_segments, k) for k in self.scales]
        self.fc_fusion_scales = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Linear(k * img_feature_dim, bottleneck), nn.ReLU(),
                          nn.Linear(bottleneck, num_classes))
            for k in self.scales
        )
        # Tuples averaged in evaluation (index tensors, not parameters: not saved, rebuilt from T).
        self._eval_relations = []
        for k, count in zip(self.scales, self.counts):
            m = min(count, max_eval_relations)
            ranks = range(count) if m == count else [(i * count) // m for i in range(m)]
            self._eval_relations.append(torch.tensor([combination_by_rank(num_segments, k, r) for r in ranks]))

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, subsample={self.subsample}"

    def forward(self, frame_features: Tensor) -> Tensor:
        n, t, _ = frame_features.shape
        if t != self.num_segments:
            raise ValueError(f"TRN head built for {self.num_segments} segments, got {t}")
        x = self.new_fc(self.dropout(frame_features))
        out = 0
        for i, (k, count, mlp) in enumerate(zip(self.scales, self.counts, self.fc_fusion_scales)):
            draws = 1 if i == 0 else min(self.subsample, count)
            if self.training:
                ranks = random.sample(range(count), draws) if draws < count else range(count)
                idx = torch.tensor([combination_by_rank(t, k, r) for r in ranks], device=x.device)
                out = out + mlp(x[:, idx].reshape(n, len(idx), -1)).sum(dim=1)
            else:
                idx = self._eval_relations[i].to(x.device)
                out = out + draws * mlp(x[:, idx].reshape(n, len(idx), -1)).mean(dim=1)
        return out


class GRUHead(nn.Module):
    """GRU consensus: ``gru`` reads the frame features t = 0 .. T-1; ``new_fc`` classifies its last state.

    Keys: ``gru.weight_ih_l0`` ... (PyTorch's ``nn.GRU`` names), ``new_fc.{weight,bias}``. Dropout sits
    before the classifier, as the paper puts it for every model (Sec. IV-B).
    """

    needs_fixed_segments = False

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5, hidden_size: int = 512,
                 num_layers: int = 1) -> None:
        super().__init__()
        self.gru = nn.GRU(in_features, hidden_size, num_layers=num_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.new_fc = nn.Linear(hidden_size, num_classes)

    def forward(self, frame_features: Tensor) -> Tensor:
        """(N, T, D) -> logits (N, num_classes), from the GRU's state after the last frame."""
        _, h = self.gru(frame_features)
        return self.new_fc(self.dropout(h[-1]))


#: The floor of the action bias, log(1e-6): keeps a verb (noun) that no action of the action classifier
#: has finite - its score is lowered by 13.8, not removed (docs/epic.md).
ACTION_BIAS_FLOOR = math.log(1e-6)


class MultiTaskTSNHead(nn.Module):
    """Average consensus with verb, noun and (optional) action classifiers; output: one tensor.

    Keys: ``fc_verb``, ``fc_noun`` (EPIC-Kitchens' names) and ``fc_action``. Each classifier runs per frame
    after dropout and is averaged over frames (EPIC's TSN). The output is the concatenation
    ``[verb (V) | noun (Nn) | action (A)]`` - ``hfnet_core.multitask.TaskSpec.split`` cuts it apart.

    ``actions`` lists the action classes (ids ``verb * Nn + noun``) the action classifier scores. With
    ``action_bias`` the action scores bias the verb and noun scores (docs/epic.md)::

        verb'_v = verb_v + max(log sum_{a = (v, n) in A} softmax(action)_a, log 1e-6)
        noun'_n = noun_n + max(log sum_{a = (v, n) in A} softmax(action)_a, log 1e-6)

    i.e. each task's own scores plus the log of the action classifier's marginal for that verb (noun):
    softmax(verb') is the normalised product of the verb classifier and the action classifier's
    verb marginal.
    """

    needs_fixed_segments = False

    def __init__(self, in_features: int, num_classes: int, dropout: float, verbs: int, nouns: int,
                 actions: list[int] | tuple[int, ...] = (), action_bias: bool = True) -> None:
        super().__init__()
        self.verbs, self.nouns, self.actions = int(verbs), int(nouns), [int(a) for a in actions]
        self.action_bias = bool(action_bias) and bool(self.actions)
        if num_classes != self.verbs + self.nouns + len(self.actions):
            raise ConfigError(f"multitask: num_classes={num_classes} must be verbs + nouns + actions = "
                              f"{self.verbs} + {self.nouns} + {len(self.actions)}")
        self.dropout = nn.Dropout(dropout)
        self.fc_verb = nn.Linear(in_features, self.verbs)
        self.fc_noun = nn.Linear(in_features, self.nouns)
        self.fc_action = nn.Linear(in_features, len(self.actions)) if self.actions else None
        ids = torch.tensor(self.actions, dtype=torch.long)
        # Incidence of each action class in its verb / noun (not saved: rebuilt from the config).
        self.register_buffer("_action_verb", ids // self.nouns, persistent=False)
        self.register_buffer("_action_noun", ids % self.nouns, persistent=False)

    def extra_repr(self) -> str:
        return f"verbs={self.verbs}, nouns={self.nouns}, actions={len(self.actions)}, action_bias={self.action_bias}"

    def forward(self, frame_features: Tensor) -> Tensor:
        """(N, T, D) -> (N, V + Nn + A): biased verb scores, biased noun scores, action scores."""
        x = self.dropout(frame_features)
        verb, noun = self.fc_verb(x).mean(dim=1), self.fc_noun(x).mean(dim=1)
        if self.fc_action is None:
            return torch.cat([verb, noun], dim=1)
        action = self.fc_action(x).mean(dim=1)
        if self.action_bias:
            verb = verb + self.marginal_log_probs(action, self._action_verb, self.verbs)
            noun = noun + self.marginal_log_probs(action, self._action_noun, self.nouns)
        return torch.cat([verb, noun, action], dim=1)

    @staticmethod
    def marginal_log_probs(action_logits: Tensor, group: Tensor, groups: int) -> Tensor:
        """log sum_{a in group g} softmax(action_logits)_a for g = 0 .. groups-1, floored at log 1e-6."""
        log_p = torch.log_softmax(action_logits.float(), dim=1)
        out = log_p.new_full((log_p.shape[0], groups), float("-inf"))
        # logsumexp per group: subtract each group's max for stability (scatter_reduce amax, then sum exp).
        idx = group.to(log_p.device).expand_as(log_p)
        top = out.scatter_reduce(1, idx, log_p, reduce="amax", include_self=True)
        shifted = torch.exp(log_p - top.gather(1, idx))
        total = torch.zeros_like(out).scatter_add(1, idx, shifted)
        lse = top + torch.log(total)
        return lse.clamp_min(ACTION_BIAS_FLOOR).nan_to_num(ACTION_BIAS_FLOOR).to(action_logits.dtype)


def _int_args(kind: str, args: Mapping[str, Any], allowed: set[str]) -> None:
    if set(args) - allowed:
        raise ConfigError(f"{kind}: unknown options {sorted(set(args) - allowed)}; options: {sorted(allowed)}")
    for key, value in args.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65536:
            raise ConfigError(f"{kind}: {key} must be an integer in 1..65536, got {value!r}")


def build_head(kind: str, in_features: int, num_classes: int, num_segments: int, dropout: float,
               args: Mapping[str, Any] | None = None) -> nn.Module:
    """The consensus head ``kind`` ("avg" / "tsn", "trn", "gru", "identity", "multitask") with its options.

    ``num_segments`` is the number of feature vectors the backbone returns per clip (T for a 2D backbone,
    1 for ECO-Lite).
    """
    args = dict(args or {})
    if kind in ("avg", "tsn", "identity"):
        if args:
            raise ConfigError(f"the {kind} consensus takes no options, got {sorted(args)}")
        if kind == "identity" and num_segments != 1:
            raise ConfigError("the identity consensus needs a backbone that returns one clip feature "
                              f"(ECO-Lite); this one returns {num_segments} per clip - use 'avg'")
        return TSNHead(in_features, num_classes, dropout)
    if kind == "trn":
        _int_args("trn", args, {"img_feature_dim", "bottleneck", "subsample", "max_eval_relations"})
        return TRNHead(in_features, num_classes, num_segments, dropout, **args)
    if kind == "gru":
        _int_args("gru", args, {"hidden_size", "num_layers"})
        return GRUHead(in_features, num_classes, dropout, **args)
    if kind == "multitask":
        return MultiTaskTSNHead(in_features, num_classes, dropout, **_multitask_args(args))
    raise ConfigError(f"unknown consensus {kind!r}; choose 'avg' (TSN), 'trn', 'gru', 'identity' (ECO) "
                      "or 'multitask' (EPIC verb/noun)")


#: At most this many action classes (EPIC-55 has 125 x 352 = 44,000 verb-noun pairs).
MAX_ACTIONS = 1 << 20


def _multitask_args(args: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"verbs", "nouns", "actions", "action_bias"}
    if set(args) - allowed or not {"verbs", "nouns"} <= set(args):
        raise ConfigError(f"multitask: options are {sorted(allowed)} (verbs and nouns required), got {sorted(args)}")
    verbs, nouns = args["verbs"], args["nouns"]
    for key, v in (("verbs", verbs), ("nouns", nouns)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65536:
            raise ConfigError(f"multitask: {key} must be an integer in 1..65536, got {v!r}")
    actions = args.get("actions", [])
    if not isinstance(actions, (list, tuple)) or len(actions) > MAX_ACTIONS or not all(
            isinstance(a, int) and not isinstance(a, bool) and 0 <= a < verbs * nouns for a in actions):
        raise ConfigError(f"multitask: actions must be a list of action ids verb * {nouns} + noun in "
                          f"0..{verbs * nouns - 1}")
    if len(set(actions)) != len(actions):
        raise ConfigError("multitask: actions lists an action twice")
    bias = args.get("action_bias", True)
    if not isinstance(bias, bool):
        raise ConfigError(f"multitask: action_bias must be true or false, got {bias!r}")
    return {"verbs": verbs, "nouns": nouns, "actions": list(actions), "action_bias": bias}
