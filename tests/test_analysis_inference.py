"""hfnet_core.analysis.inference: one clip through a checkpoint; safe to share one model across threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from _app_fixtures import FRAMES, SIZE, demo_dir  # noqa: F401  (fixture)
from hfnet_core.analysis.clips import model_input
from hfnet_core.analysis.inference import ClipPrediction, run_clip, same_classes
from hfnet_core.checkpoint import load_checkpoint
from hfnet_core.data.synthetic import SYNTH_CLASSES, generate_clip


@pytest.fixture(scope="module")
def hf_ckpt(demo_dir):  # noqa: F811
    return load_checkpoint(demo_dir / "hf_tsn_demo.safetensors")


@pytest.fixture(scope="module")
def tsn_ckpt(demo_dir):  # noqa: F811
    return load_checkpoint(demo_dir / "tsn_demo.safetensors")


def _input(ckpt, cls: int = 0, seed: int = 1) -> torch.Tensor:
    frames = generate_clip(cls, seed, num_frames=16, size=SIZE)
    return model_input(frames, ckpt.config, ckpt.model.input_convention)


def test_prediction_fields(hf_ckpt):
    x = _input(hf_ckpt)
    assert x.shape == (1, FRAMES, 3, SIZE, SIZE)
    p = run_clip(hf_ckpt, x)
    assert isinstance(p, ClipPrediction)
    assert p.probs.shape == (len(SYNTH_CLASSES),)
    assert np.isclose(p.probs.sum(), 1.0, atol=1e-5)
    assert len(p.top5_names) == 5 and p.top5_probs == sorted(p.top5_probs, reverse=True)
    assert p.top1 == SYNTH_CLASSES[int(np.argmax(p.probs))]
    assert p.top5_names == [SYNTH_CLASSES[i] for i in p.top5_indices]
    assert list(p.gates) == list(hf_ckpt.model.hf_blocks)
    for g in p.gates.values():
        assert g.shape[0] == FRAMES and g.dtype == np.float32
        assert np.all(np.abs(g) <= 1.0)
        assert np.all(g[-1] == 0)  # the last frame has no successor
    assert p.pooled_features.shape == (hf_ckpt.model.feature_dim,)
    assert p.frame_features.shape == (FRAMES, hf_ckpt.model.feature_dim)


def test_matches_forward(hf_ckpt):
    x = _input(hf_ckpt, 4)
    with torch.no_grad():
        logits = hf_ckpt.model(x)[0].numpy()
    np.testing.assert_allclose(run_clip(hf_ckpt, x).logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_clip(hf_ckpt, x[0]).logits, logits, rtol=1e-5, atol=1e-5)  # (T,3,H,W)


def test_tsn_has_no_gates_and_is_order_blind(tsn_ckpt):
    frames = generate_clip(0, 3, num_frames=FRAMES, size=SIZE)
    conv = tsn_ckpt.model.input_convention
    fwd = run_clip(tsn_ckpt, model_input(frames, tsn_ckpt.config, conv))
    bwd = run_clip(tsn_ckpt, model_input(frames[::-1].copy(), tsn_ckpt.config, conv))
    assert fwd.gates == {}
    np.testing.assert_allclose(fwd.logits, bwd.logits, atol=1e-4)


def test_rejects_batches(hf_ckpt):
    with pytest.raises(ValueError, match="one clip"):
        run_clip(hf_ckpt, torch.zeros(2, FRAMES, 3, SIZE, SIZE))


def test_same_classes(hf_ckpt, tsn_ckpt):
    assert same_classes(hf_ckpt, tsn_ckpt)
    other = type("C", (), {"class_names": list(reversed(SYNTH_CLASSES))})()
    assert not same_classes(hf_ckpt, other)


def test_concurrent_calls_equal_sequential(hf_ckpt):
    """Many sessions share one cached model: threads running it at once get exactly the sequential results."""
    inputs = [_input(hf_ckpt, c, s) for c, s in [(0, 1), (1, 1), (5, 2), (9, 3), (14, 4), (15, 5)]]
    sequential = [run_clip(hf_ckpt, x) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda x: run_clip(hf_ckpt, x), inputs * 2))
    for i, p in enumerate(concurrent):
        ref = sequential[i % len(inputs)]
        np.testing.assert_allclose(p.logits, ref.logits, rtol=1e-5, atol=1e-6)
        assert p.top5_names == ref.top5_names
        for b in ref.gates:
            np.testing.assert_allclose(p.gates[b], ref.gates[b], atol=1e-5)  # float32 noise between runs, far below any race
