"""Attributions (IG, Saliency, Grad-CAM): shapes, ranges, IG completeness, layer choices, no side effects."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

from _app_fixtures import make_model
from hfnet_core.analysis import attributions as attr

T, S = 8, 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a shared 2-core machine two intra-op threads are 5-20x slower than one (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hf_model():
    return make_model("hf_tsn_bninception_demo", seed=1)


@pytest.fixture(scope="module")
def tsn_model():
    return make_model("tsn_bninception_demo", seed=2)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, T, 3, S, S, generator=g) * 60.0


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._full_backward_hooks if hasattr(m, "_full_backward_hooks") else {})
               for m in model.modules())


def _check_maps(maps: np.ndarray) -> None:
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32
    assert maps.shape == (T, S, S)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0


def test_layer_choices_cover_blocks_hf_outputs_and_backbone_layers(hf_model, tsn_model):
    blocks = list(hf_model.base_model.block_names)
    hf = attr.layer_choices(hf_model)
    for b in blocks:
        assert b in hf and f"hf.{b}" in hf
        assert hf.index(b) < hf.index(f"hf.{b}")  # network order: block output, then its HF output
    assert {"base_model.conv1_7x7_s2", "base_model.conv1_7x7_s2_bn", "base_model.conv1_7x7_s2_relu",
            "base_model.inception_4a_1x1_relu"} <= set(hf)
    assert hf.index("base_model.inception_3a_1x1") < hf.index("inception_3a") < hf.index("base_model.inception_3b_1x1")
    tsn = attr.layer_choices(tsn_model)
    assert not [c for c in tsn if c.startswith("hf.")] and set(blocks) <= set(tsn)
    assert len(hf) == len(tsn) + len(blocks)


def test_intermediates_come_from_the_models_own_forward(hf_model, clip):
    """Taps change nothing: the logits of forward_intermediates equal forward's, whatever is tapped."""
    with torch.inference_mode():
        ref = hf_model(clip)
        for tap in ("inception_3a:out", "hf.inception_3a", "inception_5b:out", "hf.inception_5b"):
            out = hf_model.forward_intermediates(clip, taps=[tap])
            assert torch.equal(out.logits, ref) and tap in out.intermediates


def test_grad_cam_equals_captum_layer_grad_cam(hf_model, clip):
    """Our hook-free Grad-CAM is Captum's LayerGradCam on the same activation."""
    from captum.attr import LayerAttribution, LayerGradCam

    private = copy.deepcopy(hf_model).eval()
    layer = private.base_model.inception_4a_1x1  # a module Captum can hook: the conv's output
    with torch.enable_grad():
        cam = LayerGradCam(private, layer).attribute(clip.clone().requires_grad_(True), target=2,
                                                     relu_attributions=True)
        cam = LayerAttribution.interpolate(cam.detach(), tuple(clip.shape[-2:]), "bilinear")
    ref = attr.normalise_maps(cam[:, 0], percentile=100.0)
    np.testing.assert_allclose(attr.grad_cam(hf_model, clip, 2, "base_model.inception_4a_1x1"), ref,
                               atol=1e-5)


@pytest.mark.parametrize("layer", ["inception_4a", "hf.inception_4a", "hf.inception_3b", "inception_5b",
                                   "base_model.conv2_3x3", "base_model.inception_3a_1x1_bn",
                                   "base_model.inception_3a_1x1_relu"])
def test_grad_cam_maps_for_blocks_hf_outputs_and_backbone_layers(hf_model, clip, layer):
    maps = attr.grad_cam(hf_model, clip, 3, layer)
    _check_maps(maps)
    assert maps.max() == pytest.approx(1.0)  # a random network has some positive evidence everywhere


def test_grad_cam_at_relu_is_the_rectified_bn_output(hf_model, clip):
    """The ReLU tap sees relu(BN): Grad-CAM there differs from Grad-CAM at the BN output."""
    bn = attr.grad_cam(hf_model, clip, 5, "base_model.inception_3b_3x3_bn")
    relu = attr.grad_cam(hf_model, clip, 5, "base_model.inception_3b_3x3_relu")
    _check_maps(relu)
    assert not np.allclose(bn, relu)


def test_saliency_and_integrated_gradients_maps(tsn_model, clip):
    _check_maps(attr.saliency(tsn_model, clip, 0))
    ig = attr.integrated_gradients(tsn_model, clip, 0, steps=8)
    _check_maps(ig)
    assert ig.max() == pytest.approx(1.0)


def test_integrated_gradients_completeness(hf_model, clip):
    """Sum of IG attributions = f(x) - f(baseline) for the target logit (up to the integral's error)."""
    model = copy.deepcopy(hf_model)
    with torch.no_grad():  # a random classifier's logits barely move; scale them to a readable gap
        model.head.new_fc.weight.mul_(1e4)
    target = 2
    base = torch.full_like(clip, 5.0)
    raw, delta = attr.integrated_gradients_raw(model, clip, target, steps=16, baseline=base)
    assert raw.shape == clip.shape
    with torch.inference_mode():
        gap = float(model(clip)[0, target] - model(base)[0, target])
    total = float(raw.double().sum())
    assert abs(gap) > 0.1
    assert total == pytest.approx(gap, rel=0.05)
    assert delta == pytest.approx(total - gap, abs=1e-4 * (1 + abs(gap)))  # Captum sums in float32


def test_the_callers_model_is_untouched(hf_model, clip):
    hf_model.eval()
    state = {k: v.clone() for k, v in hf_model.state_dict().items()}
    grads_before = [p.requires_grad for p in hf_model.parameters()]
    with torch.inference_mode():
        ref = hf_model(clip)
    attr.grad_cam(hf_model, clip, 1, "hf.inception_4a")
    attr.grad_cam(hf_model, clip, 1, "base_model.inception_3a_1x1_relu")
    attr.saliency(hf_model, clip, 1)
    attr.integrated_gradients(hf_model, clip, 1, steps=8)
    assert _hooks(hf_model) == 0
    assert all(not m._forward_hooks for m in hf_model.modules())
    assert [p.requires_grad for p in hf_model.parameters()] == grads_before
    assert all(p.grad is None for p in hf_model.parameters())
    assert not hf_model.training
    for k, v in hf_model.state_dict().items():
        assert torch.equal(v, state[k]), k
    with torch.inference_mode():
        assert torch.equal(hf_model(clip), ref)


def test_concurrent_calls_on_one_shared_model_agree(hf_model, clip):
    """Two sessions attributing at once (and a third running inference) see no interference."""
    expected = attr.grad_cam(hf_model, clip, 4, "inception_4b")
    with torch.inference_mode():
        ref = hf_model(clip)
    results, errors = [], []

    def work():
        try:
            results.append(attr.grad_cam(hf_model, clip, 4, "inception_4b"))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    with torch.inference_mode():
        for _ in range(3):
            assert torch.equal(hf_model(clip), ref)
    for t in threads:
        t.join()
    assert not errors and len(results) == 2
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


def test_inputs_made_under_inference_mode_and_bad_arguments(hf_model, clip):
    with torch.inference_mode():
        x = clip.clone()
    _check_maps(attr.saliency(hf_model, x, 0))
    _check_maps(attr.grad_cam(hf_model, x[0], 0, "inception_5b"))  # (T, 3, H, W) is accepted too
    with pytest.raises(ValueError, match="not a Grad-CAM layer"):
        attr.grad_cam(hf_model, clip, 0, "inception_9z")
    with pytest.raises(ValueError, match="out of range"):
        attr.saliency(hf_model, clip, 16)
    with pytest.raises(ValueError, match=r"\(1, T, 3, H, W\)"):
        attr.saliency(hf_model, torch.zeros(2, T, 3, S, S), 0)


def test_normalise_and_overlay():
    assert not attr.normalise_maps(np.zeros((2, 4, 4))).any()
    m = attr.normalise_maps(np.array([[[0.0, 1.0], [2.0, 4.0]]]))
    np.testing.assert_allclose(m, [[[0, 0.25], [0.5, 1.0]]])
    frames = np.full((2, 8, 8, 3), 100, dtype=np.uint8)
    maps = np.zeros((2, 4, 4), dtype=np.float32)
    maps[1] = 1.0
    out = attr.overlay(frames, maps, alpha=0.6)  # maps resized to the frames
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert (out[0] == 100).all()  # no attribution: the frame shows through unchanged
    assert not (out[1] == 100).all()
    assert (attr.overlay(frames, maps, alpha=0.0) == frames).all()
    with pytest.raises(ValueError, match="3 maps for 2 frames"):
        attr.overlay(frames, np.zeros((3, 8, 8)))
