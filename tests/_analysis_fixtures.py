"""Fixtures for the analysis tests: hand-made eval bundles with known answers, and an app folder.

``designed_pair()`` returns bundles A and B over the 16 SynthSomething classes (4 clips per class, ids
``synth/test/000000`` ... with label ``index % 16`` as SynthSomethingDataset numbers them) where:

* A is right on every clip except clip 0 of class 15;
* B is wrong on the first ``c % 4`` clips of class ``c``, predicting the class's reversed partner
  (``c ^ 1``), and right on the rest; clip 0 of class 15 is right in B (A's only mistake).

So class ``c`` has ``c % 4`` improved clips, except class 15: 2 improved (clips 1, 2) and 1 worsened
(clip 0). Every corrected clip of ``c`` is predicted as ``c ^ 1`` by B. Top 10 by (improved, net gain,
index): 3, 7, 11, 2, 6, 10, 14, 15, 1, 5.

``make_analysis_dir(d)`` writes the random fixture checkpoints of ``_app_fixtures`` with these bundles
and stores their projections (both methods, whole set and the top-10 subset) so the app never computes
one: the stored coordinates are just two feature dimensions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `from app.… import` inside AppTest scripts
    sys.path.insert(0, str(ROOT))

from hfnet_core.analysis.comparison import improved_clip_ids  # noqa: E402
from hfnet_core.analysis.embeddings import METHODS, store_projection  # noqa: E402
from hfnet_core.data.synthetic import SYNTH_CLASSES  # noqa: E402
from hfnet_core.eval_bundle import EvalBundle  # noqa: E402

K = len(SYNTH_CLASSES)
PER_CLASS = 4


def _logits(preds: np.ndarray, k: int, margin: float = 4.0) -> np.ndarray:
    out = np.zeros((len(preds), k), dtype=np.float32)
    out[np.arange(len(preds)), preds] = margin
    return out


def designed_pair(per_class: int = PER_CLASS, dim: int = 12) -> tuple[EvalBundle, EvalBundle]:
    m = K * per_class
    idx = np.arange(m)
    labels = idx % K
    within = idx // K  # clip number inside its class
    pred_a = labels.copy()
    pred_a[(labels == 15) & (within == 0)] = 14
    pred_b = labels.copy()
    wrong_b = within < (labels % 4)
    pred_b[wrong_b] = labels[wrong_b] ^ 1
    pred_b[(labels == 15) & (within == 0)] = 15
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (K, dim))
    feats_a = centres[labels] + rng.normal(0, 0.3, (m, dim))
    feats_b = centres[labels] * 0.3 + rng.normal(0, 1.0, (m, dim))
    ids = [f"synth/test/{i:06d}" for i in idx]
    meta = {"dataset": "synth", "split": "test", "synth_seed": 0, "synth_per_class": per_class}
    a = EvalBundle(ids, list(ids), labels, _logits(pred_a, K), feats_a, list(SYNTH_CLASSES), dict(meta))
    b = EvalBundle(ids, list(ids), labels, _logits(pred_b, K), feats_b, list(SYNTH_CLASSES), dict(meta))
    return a, b


def store_fake_projections(bundle_path: Path, bundle: EvalBundle, subsets: list[list[str] | None]) -> None:
    """Cache 'projections' (two feature columns) for every method and subset, so nothing computes."""
    for ids in subsets:
        rows = np.arange(len(bundle.clip_ids)) if ids is None else \
            np.asarray([i for i, c in enumerate(bundle.clip_ids) if c in set(ids)])
        coords = bundle.features[rows][:, :2]
        for method in METHODS:
            store_projection(bundle_path, coords, method, 0, clip_ids=ids)


def make_analysis_dir(d: Path) -> Path:
    from _app_fixtures import make_demo_dir

    make_demo_dir(d, bundles=False)
    a, b = designed_pair()
    pa, pb = d / "hf_tsn_demo.test.npz", d / "tsn_demo.test.npz"
    a.save(pa)
    b.save(pb)
    _, ids = improved_clip_ids(a, b, 10)
    store_fake_projections(pa, a, [None, ids])
    store_fake_projections(pb, b, [None, ids])
    return d


def make_mismatch_dir(d: Path) -> Path:
    """Like ``make_analysis_dir``, but model B's class list is in another order (same 16 names)."""
    from _app_fixtures import make_model

    from hfnet_core.checkpoint import save_checkpoint

    make_analysis_dir(d)
    shuffled = list(SYNTH_CLASSES[1:]) + [SYNTH_CLASSES[0]]
    save_checkpoint(d / "tsn_demo.safetensors", make_model("tsn_bninception_demo", 2), shuffled)
    _, b = designed_pair()
    b.class_names = shuffled
    b.save(d / "tsn_demo.test.npz")
    store_fake_projections(d / "tsn_demo.test.npz", b, [None])
    return d


@pytest.fixture(scope="session")
def analysis_dir(tmp_path_factory) -> Path:
    return make_analysis_dir(tmp_path_factory.mktemp("analysis"))


@pytest.fixture()
def analysis_env(analysis_dir, monkeypatch, tmp_path):
    """Point the app at the analysis fixtures; projections never computed, cache writes stay in tmp."""
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(analysis_dir))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HFNET_DATA_ROOT", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two intra-op threads on this shared 2-core machine are far slower
    yield analysis_dir
    torch.set_num_threads(before)


def page(name: str, timeout: float = 180):
    """The whole explorer (sidebar, selection) opened on page ``name``, not yet run."""
    return full_app(timeout).switch_page(f"views/{name}.py")


def full_app(timeout: float = 180):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=timeout)


def no_exceptions(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
