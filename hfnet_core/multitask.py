"""Verb / noun / action: the multi-task contract shared by datasets, the model head, training and evaluation.

EPIC-Kitchens labels a clip with a verb class and a noun class; an *action* is the pair. One convention is
used everywhere in hfnet so that the one batch layout (``data/loading.py``: ``label`` int64 (N,)) and the
one-tensor model output stay as they are:

* **Label** of a multi-task clip = its action id ``verb * num_nouns + noun`` (EPIC-Kitchens-55's own action
  id, ``v * 352 + n``), -1 if unknown. ``TaskSpec.decode`` gives the verb and the noun back.
* **Model output** (``consensus = "multitask"``, ``heads.MultiTaskTSNHead``) = one tensor, the concatenation
  ``[verb scores (V) | noun scores (Nn) | action scores (A)]``; ``TaskSpec.split`` cuts it apart. The action
  classifier scores ``A`` listed action classes (the pairs seen in training), which bias the verb and noun
  scores (docs/epic.md).
* **Class names** of such a model / dataset / eval bundle = ``TaskSpec.class_names()``: ``"verb: <name>"``
  x V, ``"noun: <name>"`` x Nn, ``"action: <verb> <noun>"`` x A - one name per output column, so a
  checkpoint describes itself.

The challenge's action ranking does not use the action classifier: it multiplies the verb and noun
softmaxes (``hfnet_core/metrics_epic.py``); the action classifier acts through the bias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError

MULTITASK = "multitask"
TASKS = ("verb", "noun", "action")


@dataclass(frozen=True)
class TaskSpec:
    """The verb and noun vocabularies and the action classes of a multi-task model or dataset."""

    verb_names: tuple[str, ...]
    noun_names: tuple[str, ...]
    #: action ids (verb * num_nouns + noun) scored by the action classifier, in its output order
    actions: tuple[int, ...] = ()
    action_bias: bool = True
    #: training instances per verb / noun / action id (many-shot classes; metrics_epic.py), if known
    train_counts: Mapping[str, Mapping[int, int]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.verb_names or not self.noun_names:
            raise ConfigError("a multi-task spec needs at least one verb and one noun")
        bad = [a for a in self.actions if not 0 <= a < self.num_verbs * self.num_nouns]
        if bad:
            raise ConfigError(f"action ids {bad[:5]} are outside 0..{self.num_verbs * self.num_nouns - 1}")

    @property
    def num_verbs(self) -> int:
        return len(self.verb_names)

    @property
    def num_nouns(self) -> int:
        return len(self.noun_names)

    @property
    def num_outputs(self) -> int:
        """Width of the model output: V + Nn + A."""
        return self.num_verbs + self.num_nouns + len(self.actions)

    # --- labels ---------------------------------------------------------------------------------

    def encode(self, verb: int, noun: int) -> int:
        return int(verb) * self.num_nouns + int(noun)

    def decode(self, labels: Any) -> tuple[Any, Any]:
        """(verb, noun) of action ids (ints, numpy or torch arrays); -1 stays -1 in both."""
        if isinstance(labels, Tensor):
            known = labels >= 0
            return (torch.where(known, labels // self.num_nouns, -1), torch.where(known, labels % self.num_nouns, -1))
        lab = np.asarray(labels, dtype=np.int64)
        known = lab >= 0
        return np.where(known, lab // self.num_nouns, -1), np.where(known, lab % self.num_nouns, -1)

    def action_name(self, action_id: int) -> str:
        v, n = divmod(int(action_id), self.num_nouns)
        return self.pair_name(self.verb_names[v], self.noun_names[n])

    @staticmethod
    def pair_name(verb: str, noun: str) -> str:
        """An action's name from its verb's and noun's: "<verb> <noun>"."""
        return f"{verb} {noun}"

    def split_action_name(self, name: str) -> tuple[str, str] | None:
        """(verb, noun) names of an action name (``pair_name``'s inverse), None if it names no pair."""
        for noun in self.noun_names:
            verb = name[:-len(noun) - 1]
            if name == self.pair_name(verb, noun) and verb in self.verb_names:
                return verb, noun
        return None

    def class_names(self) -> list[str]:
        return ([f"verb: {v}" for v in self.verb_names] + [f"noun: {n}" for n in self.noun_names]
                + [f"action: {self.action_name(a)}" for a in self.actions])

    # --- model output -------------------------------------------------------------------------------

    def split(self, logits: Any) -> dict[str, Any]:
        """{"verb": (N, V), "noun": (N, Nn), "action": (N, A)} views of a model output (torch or numpy)."""
        if logits.shape[-1] != self.num_outputs:
            raise ValueError(f"multi-task output has {logits.shape[-1]} columns; this spec has "
                             f"{self.num_verbs} verbs + {self.num_nouns} nouns + {len(self.actions)} actions")
        v, n = self.num_verbs, self.num_nouns
        return {"verb": logits[..., :v], "noun": logits[..., v:v + n], "action": logits[..., v + n:]}

    def consensus_args(self) -> dict[str, Any]:
        return {"verbs": self.num_verbs, "nouns": self.num_nouns, "actions": list(self.actions),
                "action_bias": self.action_bias}

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of verb + noun (+ action, for clips whose action has a class; others add 0)."""
        parts = self.split(logits.float())
        verb, noun = self.decode(labels)
        loss = F.cross_entropy(parts["verb"], verb) + F.cross_entropy(parts["noun"], noun)
        if self.actions:
            index = torch.full((self.num_verbs * self.num_nouns,), -100, dtype=torch.long, device=labels.device)
            index[torch.tensor(self.actions, device=labels.device)] = torch.arange(len(self.actions), device=labels.device)
            target = index[labels.clamp_min(0)]
            if (target >= 0).any():
                loss = loss + F.cross_entropy(parts["action"], target, ignore_index=-100, reduction="sum") / len(labels)
        return loss

    def action_topk(self, logits: Tensor, k: int = 5) -> Tensor:
        """(N, k) action ids ranked by p(verb) * p(noun) (the challenge's action ranking)."""
        parts = self.split(logits.float())
        joint = (torch.log_softmax(parts["verb"], 1)[:, :, None] + torch.log_softmax(parts["noun"], 1)[:, None, :])
        return joint.flatten(1).topk(min(k, joint[0].numel()), dim=1).indices

    def log_metrics(self, logits: Tensor, labels: Tensor) -> tuple[float, int, int]:
        """(loss * N, action top-1 hits, action top-5 hits) for the training log."""
        top = self.action_topk(logits, 5)
        return (float(self.loss(logits, labels).item()) * len(labels), int((top[:, 0] == labels).sum().item()),
                int((top == labels[:, None]).any(1).sum().item()))

    # --- where a spec comes from --------------------------------------------------------------------

    @classmethod
    def from_model(cls, config: Any, class_names: Sequence[str] | None = None) -> "TaskSpec | None":
        """The spec of a multi-task model's config (names from its class names, else generic); None if the
        model is not multi-task."""
        if getattr(config, "consensus", None) != MULTITASK:
            return None
        args = dict(config.consensus_args)
        v, n = int(args["verbs"]), int(args["nouns"])
        names = list(class_names or [])
        verbs = [s.removeprefix("verb: ") for s in names[:v]] if len(names) >= v + n else []
        nouns = [s.removeprefix("noun: ") for s in names[v:v + n]] if len(names) >= v + n else []
        return cls(tuple(verbs or (f"verb_{i:03d}" for i in range(v))),
                   tuple(nouns or (f"noun_{i:03d}" for i in range(n))),
                   tuple(int(a) for a in args.get("actions", [])), bool(args.get("action_bias", True)))

    @classmethod
    def from_bundle(cls, bundle: Any) -> "TaskSpec | None":
        """The spec of an eval bundle of a multi-task model (``metadata["tasks"]``), else None."""
        t = (bundle.metadata or {}).get("tasks")
        if not t:
            return None
        v, n = int(t["verbs"]), int(t["nouns"])
        names = list(bundle.class_names)
        return cls(tuple(s.removeprefix("verb: ") for s in names[:v]),
                   tuple(s.removeprefix("noun: ") for s in names[v:v + n]),
                   tuple(int(a) for a in t.get("actions", [])), bool(t.get("action_bias", True)))

    def bundle_metadata(self) -> dict[str, Any]:
        return {"verbs": self.num_verbs, "nouns": self.num_nouns, "actions": list(self.actions),
                "action_bias": self.action_bias}


def is_multitask(config: Any) -> bool:
    return getattr(config, "consensus", None) == MULTITASK


def counts(values: Sequence[int]) -> dict[int, int]:
    """value -> how often it occurs (training instances per class)."""
    out: dict[int, int] = {}
    for v in values:
        out[int(v)] = out.get(int(v), 0) + 1
    return out


def spec_from_training_labels(verb_names: Sequence[str], noun_names: Sequence[str], verbs: Sequence[int],
                              nouns: Sequence[int], action_bias: bool = True) -> TaskSpec:
    """A spec whose action classes are the (verb, noun) pairs of the training clips, in id order, with the
    training counts that define many-shot classes."""
    nn_ = len(noun_names)
    ids = [int(v) * nn_ + int(n) for v, n in zip(verbs, nouns)]
    return TaskSpec(tuple(verb_names), tuple(noun_names), tuple(sorted(set(ids))), action_bias,
                    {"verb": counts(verbs), "noun": counts(nouns), "action": counts(ids)})
