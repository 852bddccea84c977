"""Eval bundles: per-clip predictions and features of one checkpoint on one split - the app's input.

Stored as a compressed ``.npz`` of plain arrays (no pickles: ``allow_pickle=False`` on load) with the
metadata as a JSON string, written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .errors import BundleError


@dataclass
class EvalBundle:
    clip_ids: list[str]
    paths: list[str]
    labels: np.ndarray  # (M,) int64, -1 = unknown
    logits: np.ndarray  # (M, K) float32
    features: np.ndarray  # (M, D) float32 pooled pre-classifier features
    class_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)  # checkpoint sha256, dataset, split, ...

    def __post_init__(self) -> None:
        m = len(self.clip_ids)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.logits = np.asarray(self.logits, dtype=np.float32)
        self.features = np.asarray(self.features, dtype=np.float32)
        if not (len(self.paths) == m == len(self.labels) == len(self.logits) == len(self.features)):
            raise BundleError("clip_ids, paths, labels, logits and features must have one row per clip")
        if self.logits.ndim != 2 or self.logits.shape[1] != len(self.class_names):
            raise BundleError(f"logits {self.logits.shape} do not match {len(self.class_names)} classes")

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        known = self.labels >= 0
        return float((self.predictions[known] == self.labels[known]).mean()) if known.any() else float("nan")

    def save(self, path: str | os.PathLike[str]) -> Path:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    clip_ids=np.array(self.clip_ids, dtype=np.str_),
                    paths=np.array(self.paths, dtype=np.str_),
                    labels=self.labels,
                    logits=self.logits,
                    features=self.features,
                    class_names=np.array(self.class_names, dtype=np.str_),
                    metadata=np.array(json.dumps(self.metadata)),
                )
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "EvalBundle":
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                return cls(
                    clip_ids=[str(s) for s in z["clip_ids"]],
                    paths=[str(s) for s in z["paths"]],
                    labels=z["labels"],
                    logits=z["logits"],
                    features=z["features"],
                    class_names=[str(s) for s in z["class_names"]],
                    metadata=json.loads(str(z["metadata"])),
                )
        except FileNotFoundError as e:
            raise BundleError(f"{p}: no such eval bundle.") from e
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
            raise BundleError(f"{p}: not a valid hfnet eval bundle ({e}). Regenerate it with `hfnet eval`.") from e
