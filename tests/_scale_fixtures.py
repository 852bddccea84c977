"""Fixtures at the paper's scale for the Feature space tests: 174-class checkpoints and eval bundles.

``make_scale_dir(d, clips)`` writes two random width-0.25 checkpoints with the 174 class names of
``synthetic_pair`` (HF-TSN and TSN, pooled features of 256 dimensions) and, next to them, ``synthetic_pair``
bundles of ``clips`` clips over the same ids (an action and its reverse = classes 2i and 2i+1, as the
bundles' metadata says). Their projection sets use the fast spec ``FAST`` (``HFNET_PROJECTION_SPEC``
points the app at it): real PCA, neighbours and silhouette; t-SNE by openTSNE (``tsne=True``) or, for
big bundles, the first two PCs; UMAP always the PCs with a turn (never umap's JIT in a test).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hfnet_core.analysis import precompute as pre
from hfnet_core.analysis.embeddings import store_coords
from hfnet_core.analysis.projection_store import ProjectionSpec, load_set
from hfnet_core.analysis.synthetic_bundles import synthetic_pair
from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.model import build_model

FAST = ProjectionSpec(tsne_early_exaggeration_iter=100, tsne_iter=150)
FAST_JSON = json.dumps(FAST.to_dict())
K = 174
FEATURE_DIM = 256  # a width-0.25 BN-Inception's pooled features


def _model(name: str, seed: int):
    torch.manual_seed(seed)
    return build_model(name, width_mult=0.25, input_size=64, num_segments=8, num_classes=K).eval()


def make_scale_dir(d: Path, clips: int, tsne: bool = True, projections: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    a, b = synthetic_pair(clips, dim=FEATURE_DIM, k=K, seed=0)
    pairs = [[c, c + 1] for c in range(0, K - 1, 2)]
    for stem, name, seed, bundle in (("hf_tsn_demo", "hf_tsn_bninception_demo", 1, a),
                                     ("tsn_demo", "tsn_bninception_demo", 2, b)):
        save_checkpoint(d / f"{stem}.safetensors", _model(name, seed), list(bundle.class_names),
                        training={"note": "random init (test fixture at the paper's scale)"})
        bundle.metadata["reversed_pairs"] = pairs
        path = d / f"{stem}.test.npz"
        bundle.save(path)
        if projections:
            store_projections(path, tsne)
    return d


def store_projections(path: Path, tsne: bool = True) -> None:
    pre.project_bundle(path, FAST, methods=("tsne", "pca") if tsne else ("pca",), parallel=False)
    ps = load_set(path, FAST)
    pcs = np.asarray(ps.coords["pca"], dtype=np.float32)
    if not tsne:
        store_coords(path, pcs, "tsne", FAST)
    store_coords(path, np.column_stack([pcs[:, 1], -pcs[:, 0]]), "umap", FAST)
