"""Eval bundles at the paper's scale without a dataset: class-clustered features and plausible logits.

Benchmarks and tests of the explorer need bundles shaped like a real Something-Something evaluation
(11,522 clips for v1 val, 24,777 for v2 val; 174 classes; 1024-d pooled BN-Inception features) long
before anyone has trained such a model here. ``synthetic_pair`` makes two bundles over the same clips:

* features are non-negative (they follow a ReLU and an average pool in the real network) and clustered by
  class in a low-dimensional latent space, so t-SNE / UMAP / silhouette behave as on real features;
  model A's clusters are tighter than model B's (HF-TSN vs TSN);
* class sizes are unequal (a long tail, as in Something-v2's validation split);
* logits put the true class first for about ``acc_a`` / ``acc_b`` of the clips and otherwise prefer a
  "partner" class (class ``c ^ 1``), mimicking the reversed-pair confusions of Something-Something.

Everything is seeded: the same arguments give the same arrays.
"""

from __future__ import annotations

import numpy as np

from hfnet_core.eval_bundle import EvalBundle

__all__ = ["SOMETHING_V1_VAL", "SOMETHING_V2_VAL", "synthetic_pair", "synthetic_bundle"]

SOMETHING_V1_VAL = 11_522
SOMETHING_V2_VAL = 24_777


def _class_sizes(m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Labels for ``m`` clips over ``k`` classes with a long-tailed size distribution (every class >= 2)."""
    weights = rng.lognormal(0.0, 0.6, k)
    sizes = np.maximum(2, np.floor(weights / weights.sum() * (m - 2 * k)).astype(np.int64) + 2)
    while sizes.sum() > m:
        sizes[np.argmax(sizes)] -= 1
    sizes[np.argsort(-weights)[: m - sizes.sum()]] += 1
    labels = np.repeat(np.arange(k), sizes)
    return rng.permutation(labels)


def _logits(labels: np.ndarray, k: int, acc: float, rng: np.random.Generator) -> np.ndarray:
    m = len(labels)
    logits = rng.normal(0.0, 1.0, (m, k)).astype(np.float32)
    right = rng.random(m) < acc
    partner = np.minimum(labels ^ 1, k - 1)
    wrong_to = np.where(rng.random(m) < 0.5, partner, rng.integers(0, k, m))
    wrong_to = np.where(wrong_to == labels, (labels + 1) % k, wrong_to)
    winner = np.where(right, labels, wrong_to)
    logits[np.arange(m), winner] += 6.0
    logits[np.arange(m), labels] += 2.0 * ~right  # the true class stays close behind when wrong
    return logits


def synthetic_pair(m: int = SOMETHING_V1_VAL, dim: int = 1024, k: int = 174, seed: int = 0,
                   acc_a: float = 0.45, acc_b: float = 0.40, latent: int = 32) -> tuple[EvalBundle, EvalBundle]:
    """Bundles A (tighter clusters, ``acc_a``) and B (looser, ``acc_b``) over the same ``m`` clips."""
    rng = np.random.default_rng(seed)
    labels = _class_sizes(m, k, rng)
    centres = rng.normal(0.0, 1.0, (k, latent))
    lift = rng.normal(0.0, 1.0 / np.sqrt(latent), (latent, dim))
    ids = [f"{100000 + i}" for i in range(m)]
    paths = [f"20bn-something-something-v2/{cid}.webm" for cid in ids]
    names = [f"Synthetic action {c:03d}" + (" (reversed)" if c % 2 else "") for c in range(k)]
    out = []
    for spread, acc, model in ((0.55, acc_a, "hf_tsn_bninception"), (0.9, acc_b, "tsn_bninception")):
        z = centres[labels] + rng.normal(0.0, spread, (m, latent))
        feats = np.maximum(z @ lift + rng.normal(0.0, 0.3, (m, dim)), 0.0).astype(np.float32)
        meta = {"dataset": "synthetic", "split": "val", "model_name": model, "num_clips": m,
                "checkpoint_sha256": f"synthetic-{model}-{seed}"}
        out.append(EvalBundle(ids, paths, labels, _logits(labels, k, acc, rng), feats, names, meta))
    return out[0], out[1]


def synthetic_bundle(m: int = SOMETHING_V1_VAL, dim: int = 1024, k: int = 174, seed: int = 0) -> EvalBundle:
    """Model A of ``synthetic_pair``."""
    return synthetic_pair(m, dim, k, seed)[0]
